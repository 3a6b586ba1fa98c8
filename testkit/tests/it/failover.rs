//! Several shields behind the edges, as real processes: every edge sends an object to the same
//! home shield (consistent hashing of its key), and a shield that is killed or hangs is
//! skipped within a second, its objects taken over by the next shield on the ring.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use testkit::{download, origin_dir, pattern, sha256_hex, Backend, Stack, StackOptions};

const SIZE: usize = 16 << 10;

fn body(i: usize) -> Vec<u8> {
    pattern(SIZE, i as u64)
}

/// GETs `path` from `addr`; `Err` says what went wrong (a status other than 200, a body cut
/// short or not the object's bytes).
fn fetch(addr: SocketAddr, path: &str, expected: &[u8]) -> Result<(), String> {
    let got = download(addr, path, &[]);
    if got.whole_200() && got.sha256 == sha256_hex(expected) {
        Ok(())
    } else {
        Err(format!("{got:?}"))
    }
}

/// How many GETs of each path a member's access log holds (`misses`: only those it fetched
/// from its upstream).
fn gets(stack: &Stack, member: &str, misses: bool) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in stack.log(member).lines() {
        if !line.contains(" access: request") || !line.contains("method=GET") {
            continue;
        }
        if misses && !line.contains("cache=\"miss\"") {
            continue;
        }
        if let Some(path) = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("path="))
        {
            *counts.entry(path.to_owned()).or_default() += 1;
        }
    }
    counts
}

/// One request under load: when it started after the failures (zero if before), what, and
/// how it went.
type Outcome = (Duration, String, Result<(), String>);

fn path(i: usize) -> String {
    format!("/files/o{i}")
}

#[test]
fn a_killed_and_a_hung_shield_cost_no_client_an_error_and_no_second_origin_fetch() {
    let files: Vec<(String, Vec<u8>)> =
        (0..300).map(|i| (format!("files/o{i}"), body(i))).collect();
    let root = origin_dir(&files);
    let mut options = StackOptions::new(Backend::Local(root.path().to_owned())).processes();
    options.upstream_timeout = "2s";
    let mut stack = Stack::start(options);
    let shields = [stack.shield, stack.start_shield(), stack.start_shield()];
    let edges = [
        stack.start_edge_before(&shields),
        stack.start_edge_before(&shields),
    ];

    // All three up: objects 0..150 through both edges. Both edges pick the same home for each,
    // so the origin sends each object once, and every shield is home to some.
    for i in 0..150 {
        for edge in edges {
            fetch(edge, &path(i), &body(i)).unwrap_or_else(|e| panic!("{}: {e}", path(i)));
        }
    }
    let origin = gets(&stack, "origin", false);
    for i in 0..150 {
        assert_eq!(origin.get(&path(i)), Some(&1), "{} fetched twice", path(i));
    }
    let homes: Vec<BTreeMap<String, usize>> = ["shield", "shield-2", "shield-3"]
        .iter()
        .map(|s| gets(&stack, s, false))
        .collect();
    for (name, home) in ["shield", "shield-2", "shield-3"].iter().zip(&homes) {
        assert!(
            (20..=80).contains(&home.len()),
            "{name} is home to {} of 150 objects",
            home.len()
        );
        assert!(
            home.values().all(|n| *n == 2),
            "{name}: both edges miss each object once, and both at its home"
        );
    }
    let survivor_had: BTreeSet<String> = homes[2].keys().cloned().collect();

    // Under load from a third, empty edge (every request a miss there, a hit at the home
    // shield), the first shield is killed and the second made to hang; then both other edges
    // ask for objects 150..300, new everywhere.
    let fresh = stack.start_edge_before(&shields);
    let results: Mutex<Vec<Outcome>> = Mutex::default();
    let failed_at: Mutex<Option<Instant>> = Mutex::default();
    // Objects 150.. are asked of both edges, one after the other.
    let work: Vec<(&[SocketAddr], usize)> = (0..150)
        .map(|i| (std::slice::from_ref(&fresh), i))
        .chain((150..300).map(|i| (&edges[..], i)))
        .collect();
    let work = Mutex::new(work.into_iter());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let Some((edge, i)) = work.lock().unwrap().next() else {
                    return;
                };
                // Objects 150.. are first asked for after the failures.
                while i >= 150 && failed_at.lock().unwrap().is_none() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                for edge in edge {
                    let started = Instant::now();
                    let result = fetch(*edge, &path(i), &body(i));
                    let after = failed_at
                        .lock()
                        .unwrap()
                        .map_or(Duration::ZERO, |t| started.saturating_duration_since(t));
                    results.lock().unwrap().push((after, path(i), result));
                }
                std::thread::sleep(Duration::from_millis(5));
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        stack.stop("shield");
        let hung = stack.pid("shield-2").to_string();
        let stopped = Command::new("kill").args(["-STOP", &hung]).status();
        assert!(stopped.is_ok_and(|s| s.success()), "SIGSTOP shield-2");
        *failed_at.lock().unwrap() = Some(Instant::now());
    });
    let results = results.into_inner().unwrap();
    assert_eq!(results.len(), 450);
    let late_errors: Vec<_> = results
        .iter()
        .filter(|(after, _, r)| *after > Duration::from_secs(1) && r.is_err())
        .collect();
    assert!(
        late_errors.is_empty(),
        "errors a second after the failures: {late_errors:?}"
    );
    let early_errors = results.iter().filter(|(_, _, r)| r.is_err()).count();
    assert!(
        early_errors <= 8,
        "{early_errors} errors around the failures, in flight at the killed shield"
    );

    // The survivor fetched each object at most once (the new ones exactly once, asked for by
    // two edges); what it already held, not at all. (A fetch the killed or hung shield had in
    // flight may have reached the origin too; it is not the survivors'.)
    let survivor_fetched = gets(&stack, "shield-3", true);
    for i in 0..300 {
        let p = path(i);
        let before = usize::from(survivor_had.contains(&p));
        let fetched = survivor_fetched.get(&p).copied().unwrap_or(0) - before;
        match (i < 150, survivor_had.contains(&p)) {
            (true, true) => assert_eq!(fetched, 0, "{p}: the survivor held it"),
            (true, false) => assert!(fetched <= 1, "{p}: fetched {fetched} times"),
            (false, _) => assert_eq!(
                fetched,
                1,
                "{p}: one fetch for both edges; the survivor's log:\n{}",
                ["shield-3", "edge-4", "edge-5", "edge-6"]
                    .iter()
                    .map(|m| stack.log(m))
                    .collect::<Vec<_>>()
                    .iter()
                    .flat_map(|log| log.lines())
                    .filter(|l| l.contains(&format!("path={p} ")) || l.contains("WARN"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }
    let _ = Command::new("kill")
        .args(["-CONT", &stack.pid("shield-2").to_string()])
        .status();
}
