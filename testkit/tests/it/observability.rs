//! Metrics, Server-Timing, Cache-Status, request ids, health and readiness, through the real
//! binaries; the Prometheus files checked by promtool; the dashboard's queries checked against
//! what the binaries export.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::{eventually, get, origin_dir, request_counts, Backend, Mode, Stack, StackOptions};

fn stack_with(
    files: &[(&str, &str)],
    options: impl FnOnce(&mut StackOptions),
) -> (tempfile::TempDir, Stack) {
    let root = origin_dir(files);
    let mut o = StackOptions::new(Backend::Local(root.path().to_owned()));
    options(&mut o);
    (root, Stack::start(o))
}

fn counts(pairs: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
    pairs
        .iter()
        .map(|(t, c, n)| ((t.to_string(), c.to_string()), *n))
        .collect()
}

/// Waits until a tier's request counts are exactly `expected` (they are recorded after the
/// response is sent, so a moment behind the client).
fn expect_counts(admin: std::net::SocketAddr, expected: BTreeMap<(String, String), u64>) {
    let mut last = BTreeMap::new();
    let matched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually("request counts to settle", || {
            last = request_counts(admin);
            (last == expected).then_some(())
        })
    }));
    assert!(
        matched.is_ok(),
        "at {admin}: expected {expected:?}, got {:?}",
        request_counts(admin)
    );
}

fn timing_names(server_timing: &str) -> Vec<String> {
    server_timing
        .split(',')
        .map(|e| e.trim().split(';').next().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn a_scripted_sequence_moves_each_tiers_metrics_exactly() {
    // Processes: each tier's access log is a file of its own.
    let (_root, mut stack) = stack_with(
        &[("obj.txt", "object"), ("short/s.txt", "short-lived")],
        |o| o.mode = Mode::Processes,
    );

    // 1. Cold miss through all three tiers.
    let cold = get(&stack.url("/obj.txt"));
    assert_eq!(
        timing_names(cold.header("server-timing").unwrap()),
        ["origin", "shield", "edge"]
    );
    assert!(
        cold.cache_status().starts_with("shield; fwd=miss")
            && cold.cache_status().contains(", edge-pop; fwd=miss")
    );
    let id = cold
        .header("x-request-id")
        .expect("a request id")
        .to_owned();
    eventually("the request id in every tier's access log", || {
        ["origin", "shield", "edge"]
            .iter()
            .all(|t| stack.log(t).contains(&id))
            .then_some(())
    });

    // 2. L2 hit through a fresh edge.
    let edge2 = stack.start_edge();
    let l2 = get(&format!("http://{edge2}/obj.txt"));
    assert_eq!(
        timing_names(l2.header("server-timing").unwrap()),
        ["shield", "edge"]
    );
    assert!(
        l2.cache_status().starts_with("shield; hit"),
        "{}",
        l2.cache_status()
    );

    // 3. L1 hit.
    let l1 = get(&stack.url("/obj.txt"));
    assert_eq!(timing_names(l1.header("server-timing").unwrap()), ["edge"]);
    assert!(l1.cache_status().starts_with("edge-pop; hit"));

    // 4. A 404, from the origin (then stored briefly: the route's negative_ttl).
    let missing = get(&stack.url("/missing"));
    assert_eq!(missing.status, 404);
    assert_eq!(
        timing_names(missing.header("server-timing").unwrap()),
        ["origin", "shield", "edge"]
    );

    // 5. A short-TTL object, then the origin goes down and the stale copy is served.
    assert_eq!(&get(&stack.url("/short/s.txt")).body[..], b"short-lived");
    expect_counts(stack.origin_admin, counts(&[("origin", "bypass", 3)]));
    std::thread::sleep(Duration::from_millis(2100));
    stack.stop("origin");
    let stale = get(&stack.url("/short/s.txt"));
    assert_eq!((stale.status, &stale.body[..]), (200, &b"short-lived"[..]));
    assert!(
        stale
            .cache_status()
            .starts_with("shield; hit; detail=stale"),
        "{}",
        stale.cache_status()
    );
    assert_eq!(
        timing_names(stale.header("server-timing").unwrap()),
        ["shield", "edge"]
    );

    // The edge's own copy had expired too: it revalidated with the shield, which answered
    // its conditional request from the stale copy with a 304.
    expect_counts(
        stack.edge_admin,
        counts(&[
            ("edge", "hit", 1),
            ("edge", "miss", 3),
            ("edge", "revalidated", 1),
        ]),
    );
    expect_counts(stack.admin_of("edge-2"), counts(&[("edge", "miss", 1)]));
    expect_counts(
        stack.shield_admin,
        counts(&[
            ("shield", "hit", 1),
            ("shield", "miss", 3),
            ("shield", "stale", 1),
        ]),
    );

    let edge_metrics = String::from_utf8(
        get(&format!("http://{}/metrics", stack.edge_admin))
            .body
            .to_vec(),
    )
    .unwrap();
    assert!(
        edge_metrics.contains(r#"cdn_requests_total{code_class="2xx",tier="edge"} 4"#),
        "{edge_metrics}"
    );
    assert!(edge_metrics.contains(r#"cdn_requests_total{code_class="4xx",tier="edge"} 1"#));
    assert!(edge_metrics.contains(r#"cdn_upstream_requests_total{result="ok",tier="edge"} 4"#));
    assert!(
        edge_metrics.contains(r#"cdn_cache_objects{medium="disk",tier="edge"} 3"#),
        "{edge_metrics}"
    );
}

#[test]
fn health_and_readiness_follow_the_upstream() {
    let (_root, mut stack) = stack_with(&[("a.txt", "a")], |_| {});
    for admin in [stack.origin_admin, stack.shield_admin, stack.edge_admin] {
        assert_eq!(get(&format!("http://{admin}/healthz")).status, 200);
        assert_eq!(get(&format!("http://{admin}/readyz")).status, 200);
        assert_eq!(get(&format!("http://{admin}/nothing-here")).status, 404);
    }
    let readyz = format!("http://{}/readyz", stack.shield_admin);
    stack.stop("origin");
    let down = eventually("the shield to turn unready", || {
        Some(get(&readyz)).filter(|r| r.status == 503)
    });
    assert!(String::from_utf8_lossy(&down.body).contains("no upstream reachable"));
    assert_eq!(
        get(&format!("http://{}/healthz", stack.shield_admin)).status,
        200,
        "alive all the same"
    );
    stack.start_again("origin");
    eventually("the shield to be ready again", || {
        (get(&readyz).status == 200).then_some(())
    });
}

#[test]
fn access_logs_can_be_json() {
    let (_root, stack) = stack_with(&[("a.txt", "a")], |o| {
        o.log_format = "json";
        o.mode = Mode::Processes;
    });
    let reply = get(&stack.url("/a.txt"));
    let id = reply.header("x-request-id").unwrap().to_owned();
    let line = eventually("a JSON access-log line", || {
        stack
            .log("edge")
            .lines()
            .find(|l| l.contains(&id) && l.contains("\"target\":\"access\""))
            .map(str::to_owned)
    });
    let entry: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(entry["request_id"], id.as_str());
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["path"], "/a.txt");
    assert!(entry["cache_status"]
        .as_str()
        .unwrap()
        .contains("edge-pop; fwd=miss"));
}

fn promtool(args: &[&str], stdin: Option<&[u8]>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; deploy/local/setup.sh installs it)");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn deploy(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
        .display()
        .to_string()
}

#[test]
fn promtool_accepts_live_metrics_and_the_shipped_rules() {
    let (_root, stack) = stack_with(&[("a.txt", "a")], |_| {});
    get(&stack.url("/a.txt"));
    for admin in [stack.origin_admin, stack.shield_admin, stack.edge_admin] {
        let body = get(&format!("http://{admin}/metrics")).body;
        let (ok, out) = promtool(&["check", "metrics"], Some(&body));
        assert!(ok, "promtool check metrics on {admin}: {out}");
    }
    let (ok, out) = promtool(
        &["check", "config", &deploy("prometheus/prometheus.yml")],
        None,
    );
    assert!(ok, "{out}");
    let (ok, out) = promtool(
        &[
            "check",
            "rules",
            &deploy("prometheus/rules/recording.yml"),
            &deploy("prometheus/rules/alerts.yml"),
        ],
        None,
    );
    assert!(ok, "{out}");
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let (_root, stack) = stack_with(&[("a.txt", "a")], |_| {});
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/dashboard.json")).unwrap())
            .expect("dashboard JSON parses");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    assert!(exprs.len() >= 8, "the dashboard has its panels");
    let mut exported = String::new();
    for admin in [stack.origin_admin, stack.shield_admin, stack.edge_admin] {
        exported.push_str(&String::from_utf8_lossy(
            &get(&format!("http://{admin}/metrics")).body,
        ));
    }
    for expr in &exprs {
        for (at, _) in expr.match_indices("cdn_") {
            let name: String = expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(
                exported.contains(&format!("# TYPE {family} ")),
                "the dashboard queries {name}, which no tier exports"
            );
        }
    }
}
