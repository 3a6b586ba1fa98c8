//! The disk tier through the real binaries: entries survive a clean stop and a SIGKILL, a
//! fill cut off by SIGKILL is never served, a corrupted entry is refetched, and a 1 GiB
//! object streams through both proxies with bounded memory.

use std::io::{Read, Write};
use std::time::Duration;
use testkit::{
    eventually, get, get_hashed, origin_dir, pattern, sha256_hex, Backend, Stack, StackOptions,
};

fn origin_requests(stack: &Stack) -> usize {
    stack.access_count("origin")
}

fn local_stack(
    files: &[(&str, &[u8])],
    options: impl FnOnce(&mut StackOptions),
) -> (tempfile::TempDir, Stack) {
    let root = origin_dir(files);
    // Signals, crashes and memory are properties of processes.
    let mut o = StackOptions::new(Backend::Local(root.path().to_owned())).processes();
    options(&mut o);
    (root, Stack::start(o))
}

#[test]
fn entries_survive_clean_stop_and_sigkill() {
    // 20 MiB is past the small-entry limit: it lives in a segment of its own.
    let objects = [
        ("a.bin", pattern(1 << 10, 1)),
        ("b.bin", pattern(1 << 20, 2)),
        ("c.bin", pattern(20 << 20, 3)),
    ];
    let files: Vec<(&str, &[u8])> = objects.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    let (_root, mut stack) = local_stack(&files, |_| {});
    for (name, data) in &objects {
        let r = get(&stack.url(&format!("/{name}")));
        assert_eq!(sha256_hex(&r.body), sha256_hex(data));
    }
    let fetched = origin_requests(&stack);
    for signal in ["INT", "KILL"] {
        stack.restart("edge", signal);
        stack.restart("shield", signal);
        for (name, data) in &objects {
            let r = get(&stack.url(&format!("/{name}")));
            assert_eq!(
                sha256_hex(&r.body),
                sha256_hex(data),
                "{name} after SIG{signal}"
            );
            assert!(
                r.cache_status().starts_with("edge-pop; hit"),
                "{name} after SIG{signal}: {}",
                r.cache_status()
            );
        }
    }
    assert_eq!(origin_requests(&stack), fetched, "nothing was refetched");
    assert!(stack.log("edge").contains("disk cache index rebuilt"));
}

#[test]
fn a_fill_cut_off_by_sigkill_is_never_served() {
    // A client reads the first MiB and stops reading, so the edge's fill usually stalls
    // part-way with its segment file open, and the edge is killed then. The fill sometimes
    // finishes first (at the upstream's pace, into the cache); that copy is whole and may be
    // served. So each attempt, on an object of its own, checks that whatever survived the kill
    // is served whole, and at least one attempt must have cut a fill off.
    const ATTEMPTS: usize = 5;
    let data = pattern(64 << 20, 9);
    let names: Vec<String> = (0..ATTEMPTS).map(|i| format!("big-{i}.bin")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &data[..])).collect();
    let (_root, mut stack) = local_stack(&files, |o| o.disk = Some("1GiB"));
    let edge_cache = stack.cache_dir("edge");
    let objs = || {
        std::fs::read_dir(&edge_cache)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "obj"))
            .count()
    };
    let mut cut_off = 0;
    for name in &names {
        let before = objs();
        let mut client = std::net::TcpStream::connect(stack.edge).unwrap();
        write!(client, "GET /{name} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut first = vec![0u8; 1 << 20];
        client.read_exact(&mut first).unwrap();
        eventually("the edge to start writing the object to disk", || {
            (objs() > before).then_some(())
        });
        // Killed soon after: fills read their spilled part faster than they did, and a
        // 200 ms wait let every attempt's fill finish on a fast run.
        std::thread::sleep(Duration::from_millis(20));
        stack.restart("edge", "KILL");
        drop(client);

        let survived = objs() - before;
        let (status, cache_status, len, hash) = get_hashed(&stack.url(&format!("/{name}")));
        assert_eq!(status, 200, "{name}");
        assert_eq!(
            (len, hash.as_str()),
            (data.len() as u64, sha256_hex(&data).as_str()),
            "{name}: the whole object, whatever survived the kill"
        );
        if survived == 1 {
            // The fill had finished before the kill: a whole copy, served from disk.
            assert!(
                cache_status.starts_with("edge-pop; hit"),
                "{name}: a segment that survived the kill is a whole, served copy: {cache_status}"
            );
            continue;
        }
        assert_eq!(
            survived, 0,
            "{name}: the torn entry's file is removed at start-up"
        );
        cut_off += 1;
        assert!(
            cache_status.contains("edge-pop; fwd=miss"),
            "{name}: a cut-off fill is refetched: {cache_status}"
        );
    }
    assert!(cut_off > 0, "no attempt cut a fill off");
    // Every torn file was removed at start-up: what is left is one whole copy per object.
    assert_eq!(objs(), ATTEMPTS, "one segment per object, none torn");
}

#[test]
fn a_corrupted_entry_is_refetched_not_served() {
    let data = pattern(1 << 20, 5);
    let (_root, mut stack) = local_stack(&[("pkg.tgz", &data)], |_| {});
    assert_eq!(
        sha256_hex(&get(&stack.url("/pkg.tgz")).body),
        sha256_hex(&data)
    );
    // Stop the edge so its memory tier is empty, flip a byte inside the stored body, start again.
    let segment = std::fs::read_dir(stack.cache_dir("edge"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment file");
    stack.restart("edge", "INT");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&segment)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 600_000).unwrap();
        f.write_all_at(&[!b[0]], 600_000).unwrap();
    }
    stack.restart("edge", "INT");
    let r = get(&stack.url("/pkg.tgz"));
    assert_eq!(
        sha256_hex(&r.body),
        sha256_hex(&data),
        "never the flipped byte"
    );
    let status = r.cache_status();
    assert!(
        status.starts_with("shield; hit") && status.contains(", edge-pop; fwd=miss"),
        "refetched from the shield: {status}"
    );
    assert!(stack.log("edge").contains("corrupt cache entry dropped"));
    let again = get(&stack.url("/pkg.tgz"));
    assert!(
        again.cache_status().starts_with("edge-pop; hit"),
        "{}",
        again.cache_status()
    );
    assert_eq!(sha256_hex(&again.body), sha256_hex(&data));
}

#[test]
fn a_gib_object_streams_through_with_bounded_memory() {
    const GIB: usize = 1 << 30;
    /// Peak RSS each proxy may reach: its baseline plus its small memory tier and buffers.
    const BOUND: u64 = 128 << 20;
    let root = tempfile::tempdir().unwrap();
    {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(root.path().join("gib.bin")).unwrap());
        for i in 0..(GIB / (8 << 20)) {
            f.write_all(&pattern(8 << 20, i as u64)).unwrap();
        }
    }
    let expected = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for i in 0..(GIB / (8 << 20)) {
            h.update(pattern(8 << 20, i as u64));
        }
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let mut o = StackOptions::new(Backend::Local(root.path().to_owned())).processes();
    o.memory = "64MiB";
    o.max_object = "1536MiB";
    o.disk = Some("3GiB");
    let stack = Stack::start(o);
    for round in ["miss", "hit"] {
        let (status, cache_status, len, hash) = get_hashed(&stack.url("/gib.bin"));
        assert_eq!(status, 200, "{round}");
        assert_eq!(
            (len, hash.as_str()),
            (GIB as u64, expected.as_str()),
            "{round}"
        );
        if round == "hit" {
            assert!(cache_status.starts_with("edge-pop; hit"), "{cache_status}");
        }
    }
    for tier in ["edge", "shield"] {
        let peak = stack.peak_rss(tier);
        eprintln!("{tier}: peak RSS {} MiB after 1 GiB twice", peak >> 20);
        assert!(peak < BOUND, "{tier} peaked at {} MiB", peak >> 20);
    }
}
