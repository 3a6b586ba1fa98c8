//! What a client from outside can send to reach past the gates or hold a tier's resources:
//! bodies on reads, internal headers, the health path, the internal prefix. Each test counts
//! what the tiers hold (descriptors, origin requests), not only the statuses they answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use testkit::h2::{self, H2Request};
use testkit::{eventually, get, origin_dir, Backend, EdgeTls, Stack, StackOptions, TestCa};

/// Descriptors a process has open now.
pub fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits until the edge's and the shield's descriptor counts are back within a few of
/// `before` (pooled upstream connections and timers may come and go).
pub fn descriptors_back(stack: &Stack, before: (usize, usize), what: &str) {
    let (edge, shield) = (stack.pid("edge"), stack.pid("shield"));
    eventually(&format!("descriptors back after {what}"), || {
        let now = (descriptors(edge), descriptors(shield));
        (now.0 <= before.0 + 8 && now.1 <= before.1 + 8).then_some(())
    });
}

/// Sends `head` and `body` on a connection of its own, then reads whatever comes back until
/// the server closes the connection or `wait` passes; returns it.
fn exchange(addr: SocketAddr, head: &str, body: &[u8], wait: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(wait)).expect("timeout");
    stream.write_all(head.as_bytes()).expect("head");
    let _ = stream.write_all(body);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    reply
}

fn read_stack() -> (tempfile::TempDir, Stack) {
    let root = origin_dir(&[("a.txt", "a".repeat(1000)), ("x/b.txt", "b".repeat(10))]);
    let stack = Stack::start(StackOptions::new(Backend::Local(root.path().to_owned())).processes());
    (root, stack)
}

/// Regression: a GET or HEAD whose body was cut short left a session and about two descriptors
/// open at the edge and at the shield for good (the fill went on, its upstream request body
/// never finished); ten thousand of them took about 20,000 descriptors from the shield every
/// edge shares.
#[test]
fn reads_with_a_body_are_refused_and_hold_nothing() {
    let (_root, stack) = read_stack();
    assert_eq!(get(&stack.url("/a.txt")).status, 200);
    let before = (
        descriptors(stack.pid("edge")),
        descriptors(stack.pid("shield")),
    );

    // Whole ones first: 400, and the connection closes (nothing after the body is read as a
    // request, even a body that looks like one).
    for method in ["GET", "HEAD"] {
        let smuggled = "GET /x/b.txt HTTP/1.1\r\nHost: a\r\n\r\n";
        let head = format!(
            "{method} /a.txt HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            smuggled.len()
        );
        for addr in [stack.edge, stack.shield, stack.origin] {
            let reply = exchange(addr, &head, smuggled.as_bytes(), Duration::from_secs(10));
            let text = String::from_utf8_lossy(&reply);
            assert!(
                text.starts_with("HTTP/1.1 400"),
                "{method} at {addr}: {text}"
            );
            assert_eq!(
                text.matches("HTTP/1.1").count(),
                1,
                "{method} at {addr}: {text}"
            );
        }
        let chunked =
            format!("{method} /a.txt HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        let reply = exchange(
            stack.edge,
            &chunked,
            b"5\r\nAAAAA\r\n0\r\n\r\n",
            Duration::from_secs(10),
        );
        assert!(reply.starts_with(b"HTTP/1.1 400"), "{method} chunked");
    }
    // An empty body is no body.
    let reply = exchange(
        stack.edge,
        "GET /a.txt HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        b"",
        Duration::from_secs(10),
    );
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    // Ten thousand cut short, on distinct objects (each a miss), from four clients at once;
    // and writes cut short on a route that passes them (their bodies are forwarded).
    let edge = stack.edge;
    let clients: Vec<_> = (0..4)
        .map(|c| {
            std::thread::spawn(move || {
                for i in 0..3000 {
                    let head = if i < 2500 {
                        format!("GET /anything-{c}-{i} HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
                    } else {
                        format!("PUT /writes/{c}-{i} HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
                    };
                    let mut stream = TcpStream::connect(edge).expect("connect");
                    stream.write_all(head.as_bytes()).expect("head");
                    let _ = stream.write_all(b"AAAAAAAAAA");
                    // Gone before the body is whole.
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client");
    }
    descriptors_back(
        &stack,
        before,
        "10,000 GETs and 2,000 PUTs with a body cut short",
    );
    assert_eq!(get(&stack.url("/x/b.txt")).status, 200, "still serving");
}

/// The same over HTTP/2 (TLS, ALPN h2): ten thousand streams that announce a body and never
/// finish it, a hundred to a connection, each connection dropped with its streams open.
#[test]
fn http2_reads_with_a_body_are_refused_and_hold_nothing() {
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("side doors");
    let ca_pem = ca.write(&certs.path().join("ca.pem"));
    let files = ca.issue(&["edge.test"]).write(certs.path(), "edge");
    let root = origin_dir(&[("a.txt", "a".repeat(1000))]);
    let mut options = StackOptions::new(Backend::Local(root.path().to_owned())).processes();
    options.tls = Some(EdgeTls::new(vec![files]));
    let stack = Stack::start(options);
    let tls = stack.edge_tls.expect("a TLS listener");
    let wait = Duration::from_secs(10);
    let statuses = h2::exchange(
        tls,
        "edge.test",
        &ca_pem,
        vec![H2Request::get("/a.txt")],
        wait,
    );
    assert_eq!(statuses, [200]);
    let before = (
        descriptors(stack.pid("edge")),
        descriptors(stack.pid("shield")),
    );

    // Whole bodies, and a length announced with no body sent yet: 400 each.
    fn body(path: &str, length: Option<u64>, body: &[u8], end: bool) -> H2Request {
        H2Request {
            method: "GET",
            path: path.to_owned(),
            content_length: length,
            body: body.to_vec(),
            end,
        }
    }
    let statuses = h2::exchange(
        tls,
        "edge.test",
        &ca_pem,
        vec![
            body("/a.txt", Some(5), b"AAAAA", true),
            body("/a.txt", None, b"AAAAA", true),
            body("/a.txt", Some(100_000), b"", false),
            H2Request {
                method: "HEAD",
                ..body("/a.txt", Some(5), b"AAAAA", true)
            },
        ],
        wait,
    );
    assert_eq!(statuses, [400, 400, 400, 400]);

    let streams = |c: usize| -> Vec<H2Request> {
        (0..100)
            .map(|i| {
                body(
                    &format!("/anything-{c}-{i}"),
                    Some(100_000),
                    b"AAAAAAAAAA",
                    false,
                )
            })
            .collect()
    };
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let ca_pem = ca_pem.clone();
            std::thread::spawn(move || {
                for c in 0..25 {
                    let statuses = h2::exchange(
                        tls,
                        "edge.test",
                        &ca_pem,
                        streams(t * 25 + c),
                        Duration::from_millis(500),
                    );
                    assert!(statuses.iter().all(|&s| s == 400 || s == 0), "{statuses:?}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client");
    }
    descriptors_back(&stack, before, "10,000 HTTP/2 GETs with a body cut short");
    let statuses = h2::exchange(
        tls,
        "edge.test",
        &ca_pem,
        vec![H2Request::get("/a.txt")],
        wait,
    );
    assert_eq!(statuses, [200], "still serving");
}
