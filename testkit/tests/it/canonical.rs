//! One canonical request at every tier: every spelling of a path gets the answer of the route
//! its canonical form names, one object is one cache entry whatever its spelling or ignored
//! query, and HTTP/1.1 as clients send it (absolute-form, pipelining) is understood.

use std::io::{Read, Write};
use testkit::{answered, get, origin_dir, raw_request, Backend, Stack, StackOptions};

fn sample() -> (tempfile::TempDir, Stack) {
    let root = origin_dir(&[
        ("private/secret.txt", "secret"),
        ("nocache/live.txt", "live"),
        ("hello.txt", "hello"),
        ("q/a.txt", "query"),
        ("npm/@acme/util/package.json", "{\"name\":\"@acme/util\"}"),
    ]);
    // Each tier is asked directly here, so the tiers' secrets are off (they are tested in
    // `auth`).
    let mut options = StackOptions::new(Backend::Local(root.path().to_owned()));
    options.trust = false;
    let stack = Stack::start(options);
    (root, stack)
}

/// Spellings of `/private/secret.txt` whose canonical form is that path.
const SAME: [&str; 13] = [
    "/private/secret.txt",
    "/%70rivate/secret.txt",
    "/%70%72%69%76%61%74%65/secret.txt",
    "/priv%61te/secret.txt",
    "/pr%69vate/secret.txt",
    "/private/secret%2etxt",
    "/private/secret%2Etxt",
    "/private/%73ecret.txt",
    "/%70rivate/s%65cret.txt",
    "http://127.0.0.1/private/secret.txt",
    "http://127.0.0.1/%70rivate/secret.txt",
    "/private/secret.txt?",
    "/private/secret.txt?token=x",
];

/// Spellings refused with 400 at every tier: they could mean another path.
const REFUSED: [&str; 17] = [
    // Host must name the target's authority (RFC 9112 §3.2.2).
    "http://example.com/private/secret.txt",
    "/private%2Fsecret.txt",
    "/private%2fsecret.txt",
    "/private%5csecret.txt",
    "/private%5Csecret.txt",
    "/public/%2e%2e/private/secret.txt",
    "/public/%2E%2E/private/secret.txt",
    "/public/.%2e/private/secret.txt",
    "/public/../private/secret.txt",
    "/./private/secret.txt",
    "/%2e/private/secret.txt",
    "/private//secret.txt",
    "/private/secret.txt%00",
    "/private/secret.txt%00.png",
    "/%c0%afprivate/secret.txt",
    "/private/%e0%80%aesecret.txt",
    "/private/%ff",
];

#[test]
fn every_spelling_gets_its_canonical_routes_answer() {
    let (_root, stack) = sample();
    for (tier, addr) in [
        ("origin", stack.origin),
        ("shield", stack.shield),
        ("edge", stack.edge),
    ] {
        let canonical = raw_request(addr, "GET", "/private/secret.txt", &[]).status;
        // The edge judges credentials on the `auth: true` route; the tiers behind it do not.
        let expected = if tier == "edge" { 401 } else { 200 };
        assert_eq!(canonical, expected, "{tier}");
        for spelling in SAME {
            let r = raw_request(addr, "GET", spelling, &[]);
            assert_eq!(r.status, expected, "{spelling} at the {tier}");
        }
        for spelling in REFUSED {
            let r = raw_request(addr, "GET", spelling, &[]);
            assert_eq!(r.status, 400, "{spelling} at the {tier}");
        }
        // Letter case is part of a path: another object, another route.
        assert_eq!(
            raw_request(addr, "GET", "/%70RIVATE/secret.txt", &[]).status,
            404,
            "{tier}"
        );
    }
    // An uncached route stays uncached in every spelling.
    for spelling in [
        "/nocache/live.txt",
        "/n%6fcache/live.txt",
        "/%6eocache/live%2etxt",
    ] {
        for _ in 0..2 {
            let r = raw_request(stack.edge, "GET", spelling, &[]);
            assert_eq!(r.status, 200, "{spelling}");
            assert_eq!(
                r.header("cache-status"),
                Some("shield; fwd=bypass; fwd-status=200, edge-pop; fwd=bypass; fwd-status=200"),
                "{spelling}"
            );
        }
    }
}

#[test]
fn spellings_and_ignored_queries_are_one_entry() {
    let (_root, stack) = sample();
    let before = answered(stack.origin_admin);
    for spelling in [
        "/hello.txt",
        "/hell%6f.txt",
        "/hello.txt?",
        "/%68ello.txt?x=1",
    ] {
        let r = raw_request(stack.edge, "GET", spelling, &[]);
        assert_eq!(r.status, 200, "{spelling}");
    }
    assert_eq!(answered(stack.origin_admin) - before, 1, "one origin GET");

    // 1,000 distinct query strings on a route that ignores them: still that one GET.
    for i in 0..1000 {
        let r = get(&stack.url(&format!("/hello.txt?cachebust={i}")));
        assert_eq!(&r.body[..], b"hello");
    }
    assert_eq!(answered(stack.origin_admin) - before, 1, "queries ignored");

    // A route that keeps `v`: one entry per `v`, other parameters neither split nor forwarded.
    let before = answered(stack.origin_admin);
    for query in ["v=1", "v=1&utm=a", "utm=b&v=1", "v=2", "v=2&x=y"] {
        let r = get(&stack.url(&format!("/q/a.txt?{query}")));
        assert_eq!(r.status, 200, "{query}");
    }
    assert_eq!(
        answered(stack.origin_admin) - before,
        2,
        "one GET per kept value"
    );
}

#[test]
fn scoped_npm_names_are_one_entry() {
    let (_root, stack) = sample();
    let before = answered(stack.origin_admin);
    for spelling in ["/npm/@acme%2futil", "/npm/@acme/util", "/npm/@acme%2Futil"] {
        let r = raw_request(stack.edge, "GET", spelling, &[]);
        assert_eq!(r.status, 200, "{spelling}");
        // (Chunked at the edge: an npm route's packuments have their length changed there.)
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.contains(r#"{"name":"@acme/util"}"#),
            "{spelling}: {body}"
        );
    }
    assert_eq!(answered(stack.origin_admin) - before, 1, "one origin GET");
    for spelling in ["/npm/@acme%2f..", "/npm/@%2futil", "/npm/acme%2futil"] {
        for addr in [stack.origin, stack.shield, stack.edge] {
            let r = raw_request(addr, "GET", spelling, &[]);
            assert_eq!(r.status, 400, "{spelling} at {addr}");
        }
    }
}

#[test]
fn absolute_form_and_pipelining() {
    let (_root, stack) = sample();
    for addr in [stack.origin, stack.shield, stack.edge] {
        let r = raw_request(addr, "GET", "http://127.0.0.1/hello.txt", &[]);
        assert_eq!(r.status, 200, "absolute-form at {addr}");
    }
    for addr in [stack.shield, stack.edge] {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(testkit::patience())).unwrap();
        let mut requests = String::new();
        for i in 0..100 {
            let path = if i % 2 == 0 {
                "/hello.txt"
            } else {
                "/q/a.txt?v=1"
            };
            requests.push_str(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        }
        requests.push_str("GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(requests.as_bytes()).unwrap();
        let mut replies = Vec::new();
        stream.read_to_end(&mut replies).unwrap();
        let text = String::from_utf8_lossy(&replies);
        let bodies: Vec<&str> = text
            .split("HTTP/1.1 ")
            .skip(1)
            .map(|reply| reply.rsplit("\r\n\r\n").next().unwrap_or(""))
            .collect();
        assert_eq!(
            bodies.len(),
            101,
            "every pipelined request answered at {addr}"
        );
        for (i, body) in bodies.iter().enumerate() {
            let expected = if i % 2 == 0 { "hello" } else { "query" };
            assert_eq!(*body, expected, "reply {i} in order at {addr}");
        }
    }
}
