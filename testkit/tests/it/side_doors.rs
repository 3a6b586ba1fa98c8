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

/// A certificate for `edge.test` from a CA of the test's own: the folder holding them, the
/// CA's certificate (for clients) and the edge's files.
fn edge_certificate() -> (tempfile::TempDir, std::path::PathBuf, testkit::TlsFiles) {
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("side doors");
    let ca_pem = ca.write(&certs.path().join("ca.pem"));
    let files = ca.issue(&["edge.test"]).write(certs.path(), "edge");
    (certs, ca_pem, files)
}

/// The stack as processes, serving `a.txt`, with a TLS listener at the edge; the folders that
/// hold the certificates and the origin, and the CA's certificate.
fn tls_stack(
    tune: impl FnOnce(&mut StackOptions),
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    tempfile::TempDir,
    Stack,
) {
    let (certs, ca_pem, files) = edge_certificate();
    let root = origin_dir(&[("a.txt", "a".repeat(1000))]);
    let mut options = StackOptions::new(Backend::Local(root.path().to_owned())).processes();
    options.tls = Some(EdgeTls::new(vec![files]));
    tune(&mut options);
    (certs, ca_pem, root, Stack::start(options))
}

fn read_stack() -> (tempfile::TempDir, Stack) {
    let root = origin_dir(&[
        ("a.txt", "a".repeat(1000)),
        ("x/b.txt", "b".repeat(10)),
        ("x/c0.txt", "c".repeat(10)),
        ("x/c1.txt", "c".repeat(10)),
    ]);
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
    // An empty body is no body, however its length is spelled (and the framing field does not
    // go on: `00` once reached origin-adapter, which took it for a body).
    for (i, zero) in ["0", "00"].iter().enumerate() {
        let head = format!(
            "GET /x/c{i}.txt HTTP/1.1\r\nHost: a\r\nContent-Length: {zero}\r\nConnection: close\r\n\r\n"
        );
        let reply = exchange(stack.edge, &head, b"", Duration::from_secs(10));
        assert!(
            reply.starts_with(b"HTTP/1.1 200"),
            "{zero}: {}",
            String::from_utf8_lossy(&reply)
        );
    }

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
    let (_certs, ca_pem, _root, stack) = tls_stack(|_| {});
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
            headers: Vec::new(),
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

/// The shipped `config.yaml`, with `/v2/` made an `auth` route, served in-process from the
/// bundled sample folder: port 0 everywhere, its key files and secrets made for the test.
struct Shipped {
    _dir: tempfile::TempDir,
    _origin: origin_adapter::RunningAdapter,
    _shield: cdn_proxy::RunningTier,
    _edge: cdn_proxy::RunningTier,
    edge: SocketAddr,
    sample: std::path::PathBuf,
}

fn shipped_with_an_auth_registry() -> Shipped {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(repo.join("config.yaml")).expect("config.yaml");
    let registry = "  - prefix: /v2/\n    ttl: 1m\n    scope: oci\n";
    assert!(text.contains(registry), "the shipped /v2/ route");
    let text = text.replacen(registry, &format!("{registry}    auth: true\n"), 1);
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["var/keys", "var/secrets"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    let (_, public) = cdn_auth::token::generate_key_pair().expect("a key pair");
    std::fs::write(dir.path().join("var/keys/local.pub.pem"), public).expect("key");
    for link in ["edge-to-shield", "shield-to-origin"] {
        let secret = cdn_auth::keys::new_key();
        std::fs::write(dir.path().join("var/secrets").join(link), secret).expect("secret");
    }
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, &text).expect("write config");
    let mut config = cdn_config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let sample = repo.join("origin-adapter/sample");
    config.origin.backend = cdn_config::Backend::Local {
        root: sample.clone(),
    };
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    for listen in [
        &mut config.origin.listen,
        &mut config.shield.listen,
        &mut config.edge.listen,
    ] {
        listen.traffic = any;
        listen.admin = Some(any);
    }
    let origin = origin_adapter::OriginAdapter::bind(&config, &testkit::S3Server::credentials())
        .expect("origin-adapter")
        .spawn()
        .expect("start origin-adapter");
    config.shield.upstreams = vec![origin.listen().traffic];
    let shield = shield::build(&config).expect("shield").spawn();
    config.edge.upstreams = vec![shield.listen().traffic];
    let edge = edge_pop::build(&config).expect("edge").spawn();
    Shipped {
        edge: edge.listen().traffic,
        _dir: dir,
        _origin: origin,
        _shield: shield,
        _edge: edge,
        sample,
    }
}

/// Every file under `dir`, as paths relative to `root`.
fn files_under(root: &std::path::Path, dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read a folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            found.extend(files_under(root, &path));
        } else {
            let rel = path.strip_prefix(root).expect("under the root");
            found.push(rel.to_string_lossy().into_owned());
        }
    }
    found
}

/// Regression: with `/v2/` an auth route, the catch-all over the bucket's root handed out
/// every tag link, manifest and layer of the registry layout by its key path.
#[test]
fn the_shipped_routes_keep_the_registry_behind_its_auth() {
    let s = shipped_with_an_auth_registry();
    let layout = files_under(&s.sample, &s.sample.join("registry"));
    assert!(layout.len() > 5, "the sample image: {layout:?}");
    let ask = |target: &str| testkit::raw_request(s.edge, "GET", target, &[]);
    for key in &layout {
        let spellings = [
            format!("/{key}"),
            format!("/{}", key.replacen("registry", "%72egistry", 1)),
            format!("http://127.0.0.1/{key}"),
            format!("/files/../{key}"),
            format!("/npm/../{key}"),
            format!("/_cdn/%2e%2e/{key}"),
        ];
        for target in spellings {
            let reply = ask(&target);
            assert_ne!(reply.status, 200, "{target} served the layout");
            let stored = std::fs::read(s.sample.join(key)).expect("a sample file");
            assert!(
                reply.body.len() < stored.len().max(8)
                    || !reply.body.windows(stored.len()).any(|w| w == stored),
                "{target} carried {key}'s bytes"
            );
        }
    }
    // Through its own route, a credential is asked for.
    let manifest = ask("/v2/demo/hello/manifests/1.0");
    assert_eq!(manifest.status, 401);
    assert_eq!(
        ask("/hello.txt").status,
        200,
        "the catch-all serves its own folder"
    );
}

/// Regression: the edge answered the health probe's path to anyone, before its rate limits
/// and with no log line; proxied, the shield would answer it for the edge. Now it is answered
/// only to the tier in front (with its secret), and a client at the edge gets a logged 404.
#[test]
fn the_health_path_is_the_tiers_own() {
    let root = origin_dir(&[("a.txt", "a")]);
    let stack = Stack::start(StackOptions::new(Backend::Local(root.path().to_owned())));
    let path = "/.well-known/cdn-health";
    let answered = testkit::answered(stack.edge_admin);
    for target in [
        path.to_owned(),
        format!("http://127.0.0.1{path}"),
        "/.well-known/cdn%2Dhealth".into(),
    ] {
        let r = testkit::raw_request(stack.edge, "GET", &target, &[]);
        assert_eq!(r.status, 404, "{target}");
        assert_ne!(r.body, b"ok", "{target}");
    }
    assert_eq!(
        testkit::answered(stack.edge_admin),
        answered + 3,
        "counted and logged"
    );
    for addr in [stack.shield, stack.origin] {
        assert_eq!(
            testkit::raw_request(addr, "GET", path, &[]).status,
            403,
            "{addr}"
        );
        let secret = stack.tier_header(addr);
        let headers: Vec<(&str, &str)> = secret.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let probe = testkit::raw_request(addr, "GET", path, &headers);
        assert_eq!((probe.status, &probe.body[..]), (200, &b"ok"[..]), "{addr}");
    }
}

/// Regression: the token that let a tier's own slice requests past its gate was the
/// edge-to-shield secret plus `.self`; whoever learnt the secret read every `auth` route and
/// the entitlement document without a credential, over HTTP/1.1 and HTTP/2. Slices are now
/// asked inside the process: no header a client sends means anything of the kind.
#[test]
fn internal_headers_give_a_client_nothing() {
    let (_certs, ca_pem, files) = edge_certificate();
    let sliced = testkit::pattern(150 << 10, 8);
    let root = origin_dir(&[
        ("private/secret.txt", b"secret".to_vec()),
        ("sliced-private/s.bin", sliced.clone()),
        ("sliced/s.bin", sliced),
        ("_cdn/entitlements.json", br#"{"keys":[]}"#.to_vec()),
    ]);
    let mut options = StackOptions::new(Backend::Local(root.path().to_owned()));
    options.tls = Some(EdgeTls::new(vec![files]));
    let stack = Stack::start(options);
    let tls = stack.edge_tls.expect("a TLS listener");
    let secret = stack.tier_header(stack.shield)[0].1.clone();
    let values = [
        format!("{secret}.self"),
        secret.clone(),
        "self".into(),
        "0".into(),
    ];
    let paths = [
        "/private/secret.txt",
        "/sliced-private/s.bin",
        "/_cdn/entitlements.json",
        "/sliced/s.bin",
    ];
    for path in paths {
        let plain = testkit::raw_request(stack.edge, "GET", path, &[]);
        assert!(
            matches!(plain.status, 200 | 401 | 404),
            "{path}: {}",
            plain.status
        );
        let plain_h2 = h2::exchange(
            tls,
            "edge.test",
            &ca_pem,
            vec![H2Request::get(path)],
            Duration::from_secs(10),
        );
        assert_eq!(plain_h2, [plain.status], "{path} over HTTP/2");
        for value in &values {
            let headers = [("cdn-internal", value.as_str()), ("cdn-slice", "0/65536")];
            let r = testkit::raw_request(stack.edge, "GET", path, &headers);
            assert_eq!(
                (r.status, &r.body),
                (plain.status, &plain.body),
                "{path} with {value}"
            );
            let asked = H2Request::get(path)
                .header("cdn-internal", value)
                .header("cdn-slice", "0/65536");
            let statuses = h2::exchange(
                tls,
                "edge.test",
                &ca_pem,
                vec![asked],
                Duration::from_secs(10),
            );
            assert_eq!(statuses, [plain.status], "{path} with {value} over HTTP/2");
        }
    }
}

/// Regression: `Vary: Accept` split packuments without bound: 2,000 requests with invented
/// `Accept` values made 2,000 origin fetches and 2,000 stored variants at each tier. Every
/// `Accept` now comes down to the two packuments origin-adapter makes.
#[test]
fn invented_accept_values_make_two_packuments_at_most() {
    let packument = r#"{"name":"left-pad","dist-tags":{"latest":"1.0.0"},"versions":{"1.0.0":{"name":"left-pad","version":"1.0.0","dist":{"tarball":"https://registry.example/left-pad/-/left-pad-1.0.0.tgz"}}}}"#;
    // The private route: kept for an hour, so nothing is revalidated during the test.
    let root = origin_dir(&[("npm-private/left-pad/package.json", packument)]);
    let stack = Stack::start(StackOptions::new(Backend::Local(root.path().to_owned())));
    let bearer = format!("Bearer {}", stack.mint("k1", "ci", "npm:*", 600));
    let before = testkit::answered(stack.origin_admin);
    let url = stack.url("/npm-private/left-pad");
    for i in 0..2000 {
        let (accept, expected) = if i % 10 == 0 {
            (
                format!("{}, x/bust-{i}", cdn_registry::npm::ABBREVIATED),
                cdn_registry::npm::ABBREVIATED,
            )
        } else {
            (format!("application/json, x/bust-{i}"), "application/json")
        };
        let r = testkit::request(
            "GET",
            &url,
            &[("accept", &accept), ("authorization", &bearer)],
        );
        assert_eq!(r.status, 200, "{accept}");
        assert_eq!(r.header("content-type"), Some(expected), "{accept}");
    }
    let fetched = testkit::answered(stack.origin_admin) - before;
    assert!(fetched <= 2, "{fetched} origin fetches for one packument");
}

/// A response that varies on a field clients invent is stored for at most `max_variants`
/// values of it (16 by default); past that, new values are served uncached, and counted.
#[test]
fn variants_past_the_bound_are_served_uncached_and_counted() {
    let origin = testkit::ScriptedOrigin::start(|seen: &testkit::Seen| {
        let flavour = seen.header("x-flavour").unwrap_or("none").to_owned();
        testkit::Canned::new(
            200,
            &[("cache-control", "max-age=600"), ("vary", "X-Flavour")],
            flavour.as_bytes(),
        )
    });
    let (_dir, stack) = Stack::before(&origin);
    let url = stack.url("/varies/doc");
    let ask = |flavour: usize| {
        let value = format!("f{flavour}");
        let r = testkit::request("GET", &url, &[("x-flavour", &value)]);
        assert_eq!(&r.body[..], value.as_bytes());
        r
    };
    for flavour in 0..40 {
        ask(flavour);
    }
    assert_eq!(origin.count("/varies/doc"), 40);
    let hit = ask(3);
    assert!(
        hit.cache_status().starts_with("edge-pop; hit"),
        "{}",
        hit.cache_status()
    );
    assert_eq!(origin.count("/varies/doc"), 40, "a stored variant");
    ask(30);
    assert_eq!(
        origin.count("/varies/doc"),
        41,
        "past the bound: not stored"
    );
    let refused = |admin| testkit::metric_total(admin, "cdn_cache_variants_refused_total{");
    assert_eq!(refused(stack.edge_admin), 25);
    assert_eq!(refused(stack.shield_admin), 25);
}

/// Regression: a kept-alive connection stayed open for as long as its client held it, over
/// HTTP/1.1 and HTTP/2, so one client could take every descriptor the edge has. An idle
/// connection is now closed after `idle_timeout`.
#[test]
fn idle_connections_are_closed() {
    let (_certs, ca_pem, _root, stack) = tls_stack(|o| o.idle_timeout = "5s");
    assert_eq!(get(&stack.url("/a.txt")).status, 200);
    let before = (
        descriptors(stack.pid("edge")),
        descriptors(stack.pid("shield")),
    );
    // Two hundred kept-alive connections, each after one request, left idle.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut stream = TcpStream::connect(stack.edge).expect("connect");
            stream
                .write_all(b"GET /a.txt HTTP/1.1\r\nHost: a\r\n\r\n")
                .expect("request");
            let mut reply = vec![0u8; 4096];
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let n = stream.read(&mut reply).expect("an answer");
            assert!(reply[..n].starts_with(b"HTTP/1.1 200"));
            stream
        })
        .collect();
    assert!(
        descriptors(stack.pid("edge")) >= before.0 + 150,
        "the connections are open (those opened first may be closed already)"
    );
    descriptors_back(&stack, before, "200 idle HTTP/1.1 connections");
    for mut stream in idle {
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(
            rest.len() < 4096,
            "closed, with at most the rest of the answer"
        );
    }
    let tls = stack.edge_tls.expect("a TLS listener");
    assert!(
        h2::closed_when_idle(tls, "edge.test", &ca_pem, "/a.txt", Duration::from_secs(10)),
        "an idle HTTP/2 connection is closed"
    );
}

/// Regression: a path segment longer than a file name, or thousands of nested segments, made
/// origin-adapter's folder fail with a 502 that was never stored, so every such request went
/// to the origin. No object can have such a path: 414 at the edge.
#[test]
fn paths_no_object_can_have_are_414_at_the_edge() {
    let root = origin_dir(&[("a.txt", "a")]);
    let stack = Stack::start(StackOptions::new(Backend::Local(root.path().to_owned())));
    let before = testkit::answered(stack.origin_admin);
    let targets = [
        format!("/{}", "a".repeat(256)),
        format!("/{}", vec!["a"; 3000].join("/")),
        format!("/files/{}", "%C3%A9".repeat(200)),
    ];
    for target in &targets {
        for _ in 0..3 {
            assert_eq!(
                testkit::raw_status(stack.edge, "GET", target),
                414,
                "{}",
                &target[..40]
            );
        }
    }
    assert_eq!(
        testkit::answered(stack.origin_admin),
        before,
        "nothing reached the origin"
    );
}
