//! The package formats through edge → shield, against a scripted origin standing in for
//! origin-adapter's npm and registry sides: packuments' tarball URLs pointed at the host the
//! client used (hit and miss, one stored copy), bodies that do not match their digest neither
//! stored nor served whole, stale copies standing in for an upstream's 429, and a tarball fetch
//! that makes the stored packument go.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::{metric_sum, raw_request, request, Canned, ScriptedOrigin, Seen, Stack};

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
    let (_dir, stack) = Stack::before(&origin);
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

/// `sha256:<hex>` of `bytes`.
fn oci_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", testkit::sha256_hex(bytes))
}

#[test]
fn bodies_that_do_not_match_their_digest_are_neither_stored_nor_served_whole() {
    let good = b"the layer as pushed".repeat(1000);
    let bad = b"the layer, corrupted".repeat(1000);
    let good_path = format!("/v2/acme/app/blobs/{}", oci_digest(&good));
    // Another repository's copy of the blob, corrupted on its way.
    let bad_path = format!("/v2/acme/bad/blobs/{}", oci_digest(&good));
    let (good_, bad_, good_path_) = (good.clone(), bad.clone(), good_path.clone());
    let repr = cdn_registry::digest::Digest::of(&good)
        .expected()
        .repr_digest();
    let origin = ScriptedOrigin::start(move |req: &Seen| {
        if req.path() == good_path_ {
            return Canned::new(200, &[], &good_);
        }
        if req.path().starts_with("/v2/acme/partial/") {
            let range = format!("bytes 0-3/{}", bad_.len());
            return Canned::new(206, &[("content-range", range.as_str())], &bad_[..4]);
        }
        match req.path() {
            // A tarball whose Repr-Digest is another body's.
            "/npm/a/-/a-1.0.0.tgz" => Canned::new(200, &[("repr-digest", repr.as_str())], &bad_),
            "/npm/a/-/a-1.1.0.tgz" => Canned::new(200, &[("repr-digest", repr.as_str())], &good_),
            "/nocache/x" => Canned::new(200, &[("repr-digest", repr.as_str())], &bad_),
            _ => Canned::new(200, &[], &bad_),
        }
    });
    let (_dir, stack) = Stack::before(&origin);
    let secret = stack.tier_header(stack.shield);
    let secret: Vec<(&str, &str)> = secret.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let failures = || metric_sum(stack.shield_admin, "cdn_integrity_failures_total");
    assert_eq!(failures(), 0.0);

    // The registry's blob whose bytes are not what its path names.
    for round in 1..=2 {
        let r = raw_request(stack.shield, "GET", &bad_path, &secret);
        let whole = r.status == 200 && r.body == bad;
        assert!(!whole, "round {round}: a complete 200 body");
        assert_eq!(origin.count(&bad_path), round, "round {round}: not a hit");
        assert_eq!(failures(), round as f64);
    }
    // Through the edge, on an npm tarball with a Repr-Digest: cut short there too, not stored.
    for round in 1..=2 {
        let r = raw_request(stack.edge, "GET", "/npm/a/-/a-1.0.0.tgz", &[]);
        let length: Option<usize> = r.header("content-length").and_then(|l| l.parse().ok());
        assert!(
            r.status != 200 || length.is_none_or(|l| r.body.len() < l),
            "round {round}: a complete 200 body"
        );
        assert_eq!(origin.count("/npm/a/-/a-1.0.0.tgz"), round);
    }
    assert_eq!(failures(), 4.0);

    // Bodies that match are stored and hit.
    for path in [good_path.as_str(), "/npm/a/-/a-1.1.0.tgz"] {
        for _ in 0..2 {
            let r = raw_request(stack.shield, "GET", path, &secret);
            assert_eq!((r.status, r.body == good), (200, true), "{path}");
        }
        assert_eq!(origin.count(path), 1, "{path}: stored, then a hit");
    }
    // Partial answers and answers to HEAD are not checked: nothing whole to hash.
    let partial_path = format!("/v2/acme/partial/blobs/{}", oci_digest(&good));
    let r = raw_request(stack.shield, "GET", &partial_path, &secret);
    assert_eq!((r.status, &r.body[..]), (206, &bad[..4]));
    let r = raw_request(stack.shield, "HEAD", "/nocache/x", &secret);
    assert_eq!(r.status, 200);
    assert!(origin
        .seen()
        .iter()
        .any(|s| s.path() == "/nocache/x" && s.method == "HEAD"));
    assert_eq!(failures(), 4.0);
    // A HEAD that misses is filled with a GET (pingora-cache): that body is checked, since it
    // is what would be stored.
    let head_path = format!("/v2/acme/head/blobs/{}", oci_digest(&good));
    let r = raw_request(stack.shield, "HEAD", &head_path, &secret);
    assert_ne!(r.status, 200);
    assert_eq!(failures(), 5.0);
}

#[test]
fn a_stale_copy_stands_in_for_an_upstream_429() {
    let shedding = Arc::new(AtomicBool::new(false));
    let shedding_ = shedding.clone();
    let origin = ScriptedOrigin::start(move |req: &Seen| {
        if shedding_.load(Ordering::SeqCst) {
            return Canned::new(429, &[("retry-after", "30")], b"slow down");
        }
        match req.path() {
            "/sie/must" => Canned::new(
                200,
                &[("cache-control", "max-age=1, must-revalidate")],
                b"must",
            ),
            _ => Canned::new(200, &[("cache-control", "max-age=1")], b"plain"),
        }
    });
    let (_dir, stack) = Stack::before(&origin);
    assert_eq!(request("GET", &stack.url("/sie/plain"), &[]).status, 200);
    assert_eq!(request("GET", &stack.url("/sie/must"), &[]).status, 200);
    shedding.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    let plain = request("GET", &stack.url("/sie/plain"), &[]);
    assert_eq!(
        (plain.status, &plain.body[..]),
        (200, &b"plain"[..]),
        "stale if error: {}",
        plain.cache_status()
    );
    assert!(origin.count("/sie/plain") >= 2, "revalidation was tried");
    // No stale copy allowed: the 429 goes on as it came.
    let must = request("GET", &stack.url("/sie/must"), &[]);
    assert_eq!(must.status, 429);
    assert_eq!(must.header("retry-after"), Some("30"));
}

#[test]
fn a_new_version_is_seen_at_once() {
    let published = Arc::new(AtomicUsize::new(1));
    let published_ = published.clone();
    let origin = ScriptedOrigin::start(move |req: &Seen| {
        let versions: &[&str] = if published_.load(Ordering::SeqCst) == 1 {
            &["1.0.0"]
        } else {
            &["1.0.0", "2.0.0"]
        };
        match req.path() {
            "/npm/@acme/util" => {
                let abbreviated = req
                    .header("accept")
                    .is_some_and(|a| a.contains("install-v1"));
                let mut body = packument(versions);
                if abbreviated {
                    body.extend_from_slice(b" ");
                }
                Canned::new(
                    200,
                    &[("content-type", "application/json"), ("vary", "Accept")],
                    &body,
                )
            }
            "/npm/@acme/util/-/util-2.0.0.tgz" => Canned::new(200, &[], b"tarball 2"),
            _ => Canned::new(404, &[], b"no"),
        }
    });
    let (_dir, stack) = Stack::before(&origin);
    let url = stack.url("/npm/@acme/util");
    let full = ("accept", "application/json");
    let abbreviated = ("accept", "application/vnd.npm.install-v1+json");
    for accept in [full, abbreviated] {
        for _ in 0..2 {
            let r = request("GET", &url, &[accept]);
            assert_eq!(tarballs(&r.body).len(), 1, "{accept:?}");
        }
    }
    assert_eq!(
        origin.count("/npm/@acme/util"),
        2,
        "one fetch per variant, then hits"
    );
    published.store(2, Ordering::SeqCst);
    // Still the stored copy: its TTL (1h) is far off.
    assert_eq!(tarballs(&request("GET", &url, &[full]).body).len(), 1);
    // The new version's tarball is fetched: every tier drops the packument, every variant.
    let tarball = request("GET", &stack.url("/npm/@acme/util/-/util-2.0.0.tgz"), &[]);
    assert_eq!(
        (tarball.status, &tarball.body[..]),
        (200, &b"tarball 2"[..])
    );
    for accept in [abbreviated, full] {
        let r = request("GET", &url, &[accept]);
        assert_eq!(
            tarballs(&r.body).len(),
            2,
            "{accept:?}: {}",
            r.cache_status()
        );
    }
    assert_eq!(origin.count("/npm/@acme/util"), 4);
}
