//! HEAD, ranges, preconditions, 404, refused methods and paths, through the edge and at the
//! origin-adapter itself.

use testkit::{
    get, origin_dir, pattern, raw_status, request, sha256_hex, Backend, Stack, StackOptions,
};

fn sample_stack() -> (tempfile::TempDir, Stack, Vec<u8>) {
    let data = pattern(100_000, 3);
    let root = origin_dir(&[
        ("file.bin", &data[..]),
        ("private/secret.txt", b"secret"),
        ("nocache/live.txt", b"live"),
    ]);
    // The origin-adapter is asked directly here, so the tiers' secrets are off (they are
    // tested in `auth`).
    let mut options = StackOptions::new(Backend::Local(root.path().to_owned()));
    options.trust = false;
    let stack = Stack::start(options);
    (root, stack, data)
}

#[test]
fn head_range_and_not_modified() {
    let (_root, stack, data) = sample_stack();
    let origin = format!("http://{}", stack.origin);
    for base in [origin.as_str(), &stack.url("")] {
        let url = format!("{base}/file.bin");
        // HEAD first, so at the edge the range below also meets a cold cache.
        let head = request("HEAD", &url, &[]);
        assert_eq!(head.status, 200, "{url}");
        assert_eq!(head.header("content-length"), Some("100000"), "{url}");
        assert!(head.body.is_empty());
        let etag = head.header("etag").expect("etag").to_owned();
        assert!(head.header("last-modified").is_some());
        assert_eq!(head.header("cache-control"), Some("public, max-age=3600"));

        for round in ["miss", "hit"] {
            let r = request("GET", &url, &[("range", "bytes=10-19")]);
            assert_eq!(r.status, 206, "{url} {round}");
            assert_eq!(&r.body[..], &data[10..20], "{url} {round}");
            assert_eq!(
                r.header("content-range"),
                Some("bytes 10-19/100000"),
                "{url} {round}"
            );
            let r = request("GET", &url, &[("range", "bytes=-5")]);
            assert_eq!(&r.body[..], &data[data.len() - 5..], "{url} suffix {round}");
        }
        let r = request("GET", &url, &[("range", "bytes=200000-")]);
        assert_eq!(r.status, 416, "{url}");
        assert_eq!(r.header("content-range"), Some("bytes */100000"), "{url}");

        let r = request("GET", &url, &[("if-none-match", &etag)]);
        assert_eq!(r.status, 304, "{url}");
        assert!(r.body.is_empty());
        let r = request("GET", &url, &[("if-none-match", "\"something-else\"")]);
        assert_eq!(r.status, 200, "{url}");
        assert_eq!(sha256_hex(&r.body), sha256_hex(&data));
        let last_modified = head.header("last-modified").unwrap().to_owned();
        assert_eq!(
            request("GET", &url, &[("if-modified-since", &last_modified)]).status,
            304,
            "{url}"
        );

        let missing = get(&format!("{base}/no/such/object"));
        assert_eq!(missing.status, 404, "{url}");
    }
    // A 404 is stored for the route's negative_ttl (10 s by default): asking again is a hit.
    let again = get(&stack.url("/no/such/object"));
    assert_eq!(again.status, 404);
    assert!(
        again.cache_status().starts_with("edge-pop; hit"),
        "{}",
        again.cache_status()
    );
    let at_origin = get(&format!("{origin}/no/such/object"));
    assert_eq!(
        at_origin.header("cache-control"),
        Some("public, max-age=10")
    );
}

#[test]
fn traversal_in_any_spelling_is_400() {
    let (_root, stack, _) = sample_stack();
    let spellings = [
        "/../etc/passwd",
        "/a/../../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/%2E%2E/%2e%2e/etc/passwd",
        "/.%2e/etc/passwd",
        "/..%2fetc%2fpasswd",
        "/..%2Fetc",
        "/..%5cetc%5cpasswd",
        "/..\\etc\\passwd",
        "/file.bin%00.txt",
    ];
    for addr in [stack.origin, stack.shield, stack.edge] {
        for path in spellings {
            assert_eq!(raw_status(addr, "GET", path), 400, "{path} at {addr}");
        }
    }
}

#[test]
fn routes_methods_and_auth() {
    let (_root, stack, _) = sample_stack();
    // Routes that need a credential are closed to a request without one.
    let r = get(&stack.url("/private/secret.txt"));
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"cdn\""));
    assert_eq!(raw_status(stack.edge, "POST", "/file.bin"), 405);
    assert_eq!(raw_status(stack.origin, "DELETE", "/file.bin"), 405);
    // A route with `cache: false` is passed through every time, never stored.
    for _ in 0..2 {
        let r = get(&stack.url("/nocache/live.txt"));
        assert_eq!(&r.body[..], b"live");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(
            r.cache_status(),
            "shield; fwd=bypass; fwd-status=200, edge-pop; fwd=bypass; fwd-status=200"
        );
    }
}
