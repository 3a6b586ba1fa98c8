//! An origin that is down or silent gives 502/504 within the configured timeout, never a hang.

use std::time::{Duration, Instant};
use testkit::{get, Backend, Refusing, Stack, StackOptions};

fn timed(url: &str) -> (u16, Duration) {
    let started = Instant::now();
    let status = get(url).status;
    (status, started.elapsed())
}

#[test]
fn s3_endpoint_refusing_connections_is_502() {
    let refusing = Refusing::new();
    let closed = format!("http://{}", refusing.addr);
    let mut options = StackOptions::new(Backend::S3 {
        endpoint: closed,
        bucket: "packages".into(),
    });
    options.origin_timeout = "2s";
    // The origin-adapter is asked directly.
    options.trust = false;
    let stack = Stack::start(options);
    let (status, took) = timed(&format!("http://{}/pkgs/a.tgz", stack.origin));
    assert_eq!(status, 502);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let (status, took) = timed(&stack.url("/pkgs/a.tgz"));
    assert_eq!(status, 502, "the edge passes the origin's 502 on");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn silent_s3_endpoint_is_504_after_the_timeout() {
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let mut options = StackOptions::new(Backend::S3 {
        endpoint,
        bucket: "packages".into(),
    });
    options.origin_timeout = "1s";
    let stack = Stack::start(options);
    let (status, took) = timed(&stack.url("/pkgs/a.tgz"));
    assert_eq!(status, 504);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    drop(silent);
}

#[test]
fn unreachable_origin_adapter_is_502_at_the_edge() {
    let root = tempfile::tempdir().unwrap();
    let mut options = StackOptions::new(Backend::Local(root.path().to_owned()));
    let refusing = Refusing::new();
    options.shield_origin = Some(refusing.addr);
    let stack = Stack::start(options);
    let started = Instant::now();
    let reply = get(&stack.url("/anything"));
    let took = started.elapsed();
    assert_eq!(reply.status, 502);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(
        reply.cache_status(),
        "shield; fwd=miss; detail=upstream-502, edge-pop; fwd=miss; fwd-status=502",
        "both tiers say what happened"
    );
    assert_eq!(reply.header("age"), Some("0"));
}
