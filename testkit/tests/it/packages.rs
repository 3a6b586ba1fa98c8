//! The package formats through edge → shield, against a scripted origin standing in for
//! origin-adapter's npm and registry sides: packuments' tarball URLs pointed at the host the
//! client used (hit and miss, one stored copy).

use testkit::{raw_request, request, Backend, Canned, ScriptedOrigin, Seen, Stack, StackOptions};

fn stack_before(origin: &ScriptedOrigin) -> (tempfile::TempDir, Stack) {
    let unused = tempfile::tempdir().unwrap();
    let mut options = StackOptions::new(Backend::Local(unused.path().to_owned()));
    options.shield_origin = Some(origin.addr);
    let stack = Stack::start(options);
    (unused, stack)
}

/// A packument as origin-adapter writes it: compact JSON, tarball URLs path-absolute.
fn packument(versions: &[&str]) -> Vec<u8> {
    let mut doc = serde_json::json!({"name": "@acme/util", "versions": {}});
    for v in versions {
        doc["versions"][*v] = serde_json::json!({
            "name": "@acme/util",
            "version": v,
            "dist": {"tarball": format!("/npm/@acme/util/-/util-{v}.tgz")},
        });
    }
    serde_json::to_vec(&doc).unwrap()
}

fn tarballs(body: &[u8]) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_slice(body).expect("JSON");
    let mut urls: Vec<String> = doc["versions"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v["dist"]["tarball"].as_str().unwrap().to_owned())
        .collect();
    urls.sort();
    urls
}

/// A chunked body's data (RFC 9112 §7.1); panics if it does not end with the last chunk.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap(), 16)
            .expect("a chunk size");
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[test]
fn tarball_urls_lead_back_through_the_edge() {
    let origin = ScriptedOrigin::start(|req: &Seen| match req.path() {
        "/npm/@acme/util" => Canned::new(
            200,
            &[("content-type", "application/json"), ("vary", "Accept")],
            &packument(&["1.0.0", "1.1.0"]),
        ),
        "/npm/@acme/util/1.0.0" => Canned::new(
            200,
            &[("content-type", "application/json")],
            br#"{"dist":{"tarball":"/npm/@acme/util/-/util-1.0.0.tgz"}}"#,
        ),
        _ => Canned::new(404, &[], b"no"),
    });
    let (_dir, stack) = stack_before(&origin);
    let url = stack.url("/npm/@acme%2futil");
    let expected = |origin: &str| {
        vec![
            format!("{origin}/npm/@acme/util/-/util-1.0.0.tgz"),
            format!("{origin}/npm/@acme/util/-/util-1.1.0.tgz"),
        ]
    };
    // A miss, then a hit: the client's own host either way.
    for round in ["miss", "hit"] {
        let r = request("GET", &url, &[("host", "cdn.example:8080")]);
        assert_eq!(r.status, 200, "{round}");
        assert!(
            r.cache_status().contains(&format!(
                "edge-pop; {}",
                if round == "hit" { "hit" } else { "fwd=miss" }
            )),
            "{round}: {}",
            r.cache_status()
        );
        assert_eq!(r.header("content-length"), None, "{round}");
        assert_eq!(
            tarballs(&r.body),
            expected("http://cdn.example:8080"),
            "{round}"
        );
    }
    // Another host, the same stored copy, its own URLs.
    let other = request("GET", &url, &[("host", "mirror.example")]);
    assert_eq!(tarballs(&other.body), expected("http://mirror.example"));
    assert_eq!(
        origin.count("/npm/@acme/util"),
        1,
        "one copy for every host"
    );
    let raw = raw_request(stack.edge, "GET", "/npm/@acme/util", &[]);
    assert_eq!(raw.header("transfer-encoding"), Some("chunked"));
    assert_eq!(tarballs(&dechunk(&raw.body)), expected("http://127.0.0.1"));
    // The shield keeps and sends path-absolute URLs.
    let headers = stack.tier_header(stack.shield);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let shield = raw_request(stack.shield, "GET", "/npm/@acme/util", &headers);
    assert_eq!(tarballs(&shield.body), expected(""));
    // HEAD: no body, no length that would not hold.
    let head = raw_request(stack.edge, "HEAD", "/npm/@acme/util", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), None);
    assert!(head.body.is_empty());
    // A version document is not a packument: left as it is.
    let version = request(
        "GET",
        &stack.url("/npm/@acme/util/1.0.0"),
        &[("host", "cdn.example")],
    );
    assert_eq!(
        &version.body[..],
        br#"{"dist":{"tarball":"/npm/@acme/util/-/util-1.0.0.tgz"}}"#
    );
}
