//! Property: whatever request head a client sends the edge — any method, target, header fields
//! and body framing, whole or cut short — the edge never panics, answers (or closes) within its
//! timeouts, and keeps no descriptor once the connection is gone. Cases are drawn from pools of
//! what attackers and broken clients send (encoded dots and slashes, internal headers, framing
//! that disagrees with itself) with a fixed seed, so a run is repeatable; `HEAD_CASES` sets how
//! many (default 300), and `HEAD_SEED` (a number) draws another sequence.

use crate::side_doors::{descriptors, descriptors_back};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use testkit::{get, origin_dir, pattern, Backend, Stack, StackOptions};

/// A request as bytes, and whether its body is whole by its own framing (a reply is owed).
#[derive(Debug, Clone)]
struct Case {
    bytes: Vec<u8>,
    whole: bool,
}

fn method() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PURGE",
        "get", "FOO", "G\tET", "",
    ])
    .prop_map(str::to_owned)
}

fn target() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(vec![
        "a.txt",
        "big.bin",
        "x",
        "..",
        "%2e%2e",
        ".",
        "%2f",
        "%5c",
        "%00",
        "%ff",
        "%",
        "%zz",
        "private",
        "%70rivate",
        "_cdn",
        "entitlements.json",
        ".well-known",
        "cdn-health",
        "npm",
        "@acme%2futil",
        "@acme",
        "-",
        "v2",
        "demo",
        "manifests",
        "blobs",
        "tags",
        "list",
        "sha256:00",
        "writes",
        "sliced",
        "s.bin",
        "nocache",
        "q",
        "é",
        "a b",
        "",
    ]);
    let path = prop::collection::vec(segment, 0..6).prop_map(|s| format!("/{}", s.join("/")));
    let query = prop::option::of(prop::sample::select(vec![
        "v=1",
        "cachebust=7",
        "a=%00",
        "=&&=",
        "v=1&v=2",
    ]));
    let form = prop::sample::select(vec!["origin", "absolute", "star", "raw"]);
    (path, query, form).prop_map(|(path, query, form)| {
        let mut t = path;
        if let Some(q) = query {
            t = format!("{t}?{q}");
        }
        match form {
            "absolute" => format!("http://127.0.0.1{t}"),
            "star" => "*".to_owned(),
            "raw" => t.replace('/', "\\"),
            _ => t,
        }
    })
}

/// Header fields, each `name: value` as sent (framing fields apart, below).
fn fields() -> impl Strategy<Value = Vec<String>> {
    let field = prop::sample::select(vec![
        "Host: 127.0.0.1",
        "Host: other.example",
        "Host:",
        "Range: bytes=0-9",
        "Range: bytes=-5",
        "Range: bytes=999999999-",
        "Range: bytes=5-1",
        "Range: bytes=0-1,3-4",
        "Range: pages=1",
        "If-None-Match: *",
        "If-None-Match: \"x\"",
        "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT",
        "If-Range: \"x\"",
        "Accept: application/vnd.npm.install-v1+json",
        "Accept: x/bust-1, */*",
        "Authorization: Bearer x.y.z",
        "Authorization: Basic Og==",
        "Authorization: Negotiate ====",
        "Cache-Control: no-cache",
        "Cache-Control: max-age=0, only-if-cached",
        "Pragma: no-cache",
        "cdn-internal: x.self",
        "cdn-tier-secret: guess",
        "cdn-slice: 0/65536",
        "cdn-slice-total: 5",
        "X-Request-Id: ../../etc",
        "Connection: close",
        "Connection: keep-alive, Authorization",
        "Connection: Range",
        "Expect: 100-continue",
        "Upgrade: websocket",
        "Via: 1.1 loop",
        "X-Forwarded-For: 10.0.0.1",
        "Bad Name: x",
        "X-Empty:",
        "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ]);
    prop::collection::vec(field.prop_map(str::to_owned), 0..6)
}

/// How the body is framed and sent.
#[derive(Debug, Clone, Copy)]
enum Framing {
    None,
    /// `Content-Length: n`, and `sent` bytes of body.
    Length {
        declared: u32,
        sent: u32,
    },
    /// A chunked body, whole or cut before its last chunk.
    Chunked {
        whole: bool,
    },
    /// Both at once (a request smuggler's favourite).
    Both,
    /// `Content-Length` that is no number, or two that disagree.
    BadLength(&'static str),
    /// A transfer coding other than chunked.
    OtherCoding,
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        3 => Just(Framing::None),
        2 => (0u32..64, 0u32..64).prop_map(|(declared, sent)| Framing::Length { declared, sent }),
        1 => any::<bool>().prop_map(|whole| Framing::Chunked { whole }),
        1 => Just(Framing::Both),
        1 => prop::sample::select(vec!["-1", "abc", "5, 6", "99999999999999999999"])
            .prop_map(Framing::BadLength),
        1 => Just(Framing::OtherCoding),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (method(), target(), fields(), framing(), any::<bool>()).prop_map(
        |(method, target, fields, framing, http10)| {
            let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
            let mut head = format!("{method} {target} {version}\r\n");
            for field in &fields {
                head.push_str(field);
                head.push_str("\r\n");
            }
            if !fields.iter().any(|f| f.starts_with("Host")) {
                head.push_str("Host: 127.0.0.1\r\n");
            }
            let (framing_fields, body, whole) = match framing {
                Framing::None => (String::new(), Vec::new(), true),
                Framing::Length { declared, sent } => (
                    format!("Content-Length: {declared}\r\n"),
                    vec![b'A'; sent as usize],
                    sent >= declared,
                ),
                Framing::Chunked { whole } => (
                    "Transfer-Encoding: chunked\r\n".to_owned(),
                    if whole {
                        b"5\r\nAAAAA\r\n0\r\n\r\n".to_vec()
                    } else {
                        b"5\r\nAAAAA\r\n".to_vec()
                    },
                    whole,
                ),
                Framing::Both => (
                    "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n".to_owned(),
                    b"0\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                    true,
                ),
                Framing::BadLength(value) => (
                    format!("Content-Length: {value}\r\n"),
                    b"AAAAA".to_vec(),
                    true,
                ),
                Framing::OtherCoding => (
                    "Transfer-Encoding: gzip\r\n".to_owned(),
                    b"AAAAA".to_vec(),
                    true,
                ),
            };
            head.push_str(&framing_fields);
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(&body);
            Case { bytes, whole }
        },
    )
}

/// How long a whole request may wait for the first byte of its answer (or the close): the
/// tiers' upstream timeout in the stack, and some.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// Sends one case; a whole one must be answered (or its connection closed) in time.
fn send(edge: SocketAddr, case: &Case) -> Result<(), String> {
    let mut stream = TcpStream::connect(edge).map_err(|e| format!("connect: {e}"))?;
    let _ = stream.write_all(&case.bytes);
    if !case.whole {
        // A client that leaves before its body is whole.
        return Ok(());
    }
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 8192];
    let mut got = 0usize;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if got > 0 {
                    // Answered; a kept-alive connection stays open, which is the client's to end.
                    return Ok(());
                }
                if started.elapsed() > ANSWER_WITHIN {
                    return Err(format!(
                        "no answer within {ANSWER_WITHIN:?} to {:?}",
                        String::from_utf8_lossy(&case.bytes)
                    ));
                }
            }
            Err(_) => return Ok(()),
        }
    }
}

#[test]
fn any_request_head_is_answered_in_time_and_holds_nothing() {
    let root = origin_dir(&[
        ("a.txt", pattern(1000, 1)),
        ("big.bin", pattern(300_000, 2)),
        ("private/x", pattern(10, 3)),
        ("sliced/s.bin", pattern(200_000, 4)),
    ]);
    let mut options = StackOptions::new(Backend::Local(root.path().to_owned())).processes();
    options.upstream_timeout = "5s";
    let stack = Stack::start(options);
    assert_eq!(get(&stack.url("/a.txt")).status, 200);
    let before = (
        descriptors(stack.pid("edge")),
        descriptors(stack.pid("shield")),
    );

    let cases = std::env::var("HEAD_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = match std::env::var("HEAD_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(seed) => {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
        }
        None => TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let edge = stack.edge;
    let result = runner.run(&case(), |case| {
        send(edge, &case).map_err(TestCaseError::fail)?;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let log = stack.log("edge");
    assert!(!log.contains("panicked"), "the edge panicked:\n{log}");
    descriptors_back(&stack, before, "every request head");
    assert_eq!(get(&stack.url("/a.txt")).status, 200, "still serving");
}
