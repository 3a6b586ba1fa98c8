//! Many concurrent misses for one object: one origin fetch, every waiter streaming it as it
//! fills, and a fill whose origin dies mid-body failing every client, with nothing stored.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use testkit::{download, pattern, sha256_hex, Canned, Download, ScriptedOrigin, Stack};

/// `clients` concurrent GETs of `target` at `addr`, all released at once.
fn at_once(
    addr: SocketAddr,
    target: &str,
    clients: usize,
    headers: &[(&str, &str)],
) -> Vec<Download> {
    let start = Arc::new(std::sync::Barrier::new(clients));
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let start = start.clone();
                scope.spawn(move || {
                    start.wait();
                    download(addr, target, headers)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

const MIB: usize = 1 << 20;

#[test]
fn two_hundred_misses_make_one_origin_fetch_and_stream_as_it_fills() {
    let body = pattern(10 * MIB, 17);
    let served = body.clone();
    // The origin takes about a second to send it, 256 KiB every 25 ms.
    let origin = ScriptedOrigin::start(move |_| {
        Canned::new(200, &[("Cache-Control", "max-age=3600")], &served)
            .paced(256 << 10, Duration::from_millis(25))
    });
    let (_unused, stack) = Stack::before(&origin);

    let downloads = at_once(stack.edge, "/files/big.bin", 200, &[]);
    assert_eq!(
        origin.count("/files/big.bin"),
        1,
        "one origin GET for 200 misses"
    );
    let expected = sha256_hex(&body);
    for d in &downloads {
        assert!(d.whole_200(), "{d:?}");
        assert_eq!(d.sha256, expected);
    }
    // Every waiter had its first byte before the fill's last byte reached anyone: they stream
    // it as it fills rather than wait for the whole object.
    let first_last = downloads.iter().filter_map(|d| d.last_byte).min().unwrap();
    let last_first = downloads.iter().filter_map(|d| d.first_byte).max().unwrap();
    assert!(
        last_first < first_last,
        "a client's first byte came {:?} after another's last",
        last_first - first_last
    );

    // The same at the shield alone, for a second object: 100 concurrent misses, one fetch.
    let secret = stack.tier_header(stack.shield);
    let headers: Vec<(&str, &str)> = secret.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let downloads = at_once(stack.shield, "/files/second.bin", 100, &headers);
    assert_eq!(
        origin.count("/files/second.bin"),
        1,
        "one origin GET at the shield: {:?}",
        origin.seen()
    );
    for d in &downloads {
        assert!(d.whole_200() && d.sha256 == expected, "{d:?}");
    }
}

#[test]
fn an_origin_that_dies_mid_body_fails_every_client_and_stores_nothing() {
    let body = pattern(10 * MIB, 23);
    let served = body.clone();
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let healthy_ = healthy.clone();
    let origin = ScriptedOrigin::start(move |_| {
        let canned = Canned::new(200, &[("Cache-Control", "max-age=3600")], &served)
            .paced(256 << 10, Duration::from_millis(10));
        if healthy_.load(std::sync::atomic::Ordering::SeqCst) {
            canned
        } else {
            canned.cut_at(4 * MIB)
        }
    });
    let (_unused, stack) = Stack::before(&origin);

    let downloads = at_once(stack.edge, "/files/dies.bin", 50, &[]);
    assert_eq!(origin.count("/files/dies.bin"), 1);
    for d in &downloads {
        assert!(
            !d.whole_200(),
            "a client got a 200 that looks whole from a fill that died: {d:?}"
        );
        assert!(d.body_len < body.len() as u64, "{d:?}");
    }

    // Nothing was stored at either tier: the next request goes to the origin again and gets
    // the whole object.
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let again = download(stack.edge, "/files/dies.bin", &[]);
    assert!(again.whole_200(), "{again:?}");
    assert_eq!(again.sha256, sha256_hex(&body));
    assert_eq!(
        origin.count("/files/dies.bin"),
        2,
        "the broken fill was not stored"
    );
}

#[test]
fn waiters_past_the_bound_get_503_with_retry_after() {
    let body = pattern(4 * MIB, 29);
    let served = body.clone();
    let origin = ScriptedOrigin::start(move |_| {
        Canned::new(200, &[("Cache-Control", "max-age=3600")], &served)
            .paced(256 << 10, Duration::from_millis(60))
    });
    let unused = tempfile::tempdir().unwrap();
    let mut options = testkit::StackOptions::new(testkit::Backend::Local(unused.path().to_owned()));
    options.shield_origin = Some(origin.addr);
    options.max_waiters = 10;
    let stack = Stack::start(options);

    let downloads = at_once(stack.edge, "/files/busy.bin", 40, &[]);
    assert_eq!(origin.count("/files/busy.bin"), 1);
    let expected = sha256_hex(&body);
    let (mut whole, mut busy) = (0, 0);
    for d in &downloads {
        match d.status {
            200 => {
                assert!(d.whole_200() && d.sha256 == expected, "{d:?}");
                whole += 1;
            }
            503 => {
                assert_eq!(d.header("retry-after"), Some("1"), "{d:?}");
                busy += 1;
            }
            _ => panic!("{d:?}"),
        }
    }
    // The one fetching and the ten waiting have it; the others were told to come back.
    assert!(whole >= 11, "{whole} whole, {busy} busy");
    assert!(busy >= 1, "{whole} whole, {busy} busy");
}

#[test]
fn small_objects_asked_for_twice_at_once_at_the_shield_are_fetched_once() {
    // Two at once is the hard case: the second's lookup runs while the first's fetch starts
    // (or ends), rather than long after it.
    let files: Vec<(String, Vec<u8>)> = (0..60)
        .map(|i| (format!("files/small-{i}"), pattern(16 << 10, i)))
        .collect();
    let root = testkit::origin_dir(&files);
    let stack = Stack::start(testkit::StackOptions::new(testkit::Backend::Local(
        root.path().to_owned(),
    )));
    let secret = stack.tier_header(stack.shield);
    let headers: Vec<(&str, &str)> = secret.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let before = testkit::answered(stack.origin_admin);
    for (i, (name, body)) in files.iter().enumerate() {
        let target = format!("/{name}");
        for d in at_once(stack.shield, &target, 2, &headers) {
            assert!(d.whole_200() && d.sha256 == sha256_hex(body), "{d:?}");
        }
        assert_eq!(
            testkit::answered(stack.origin_admin) - before,
            i as u64 + 1,
            "{target} fetched twice"
        );
    }
}
