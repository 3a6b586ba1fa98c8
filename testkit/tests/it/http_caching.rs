//! HTTP caching by RFC 9111 through edge → shield, against a scripted origin that sends the
//! exact fields each rule is about; every assertion is on what the origin saw or on the value
//! a client got (a copy's real `Age`, a variant's body), not on a header's presence.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::{
    get, get_hashed, pattern, raw_request, request, sha256_hex, Canned, ScriptedOrigin, Seen, Stack,
};

fn age(reply: &testkit::Reply) -> u64 {
    reply
        .header("age")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no Age in {:?}", reply.headers))
}

/// Asserts an `Age` lies between the whole seconds surely passed (`since_stored`, from just
/// after the copy was made) and those that may have passed (`since_fetch`, from just before).
fn assert_age(got: u64, base: u64, since_fetch: Instant, since_stored: Instant, what: &str) {
    let low = base + since_stored.elapsed().as_secs().saturating_sub(1);
    let high = base + since_fetch.elapsed().as_secs() + 1;
    assert!(
        (low..=high).contains(&got),
        "{what}: Age {got}, expected {low}..={high}"
    );
}

#[test]
fn vary_stores_variants_apart() {
    let origin = ScriptedOrigin::start(|req: &Seen| {
        let lang = req.header("accept-language").unwrap_or("none").to_owned();
        Canned::new(
            200,
            &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
            lang.as_bytes(),
        )
    });
    let (_dir, stack) = Stack::before(&origin);
    let url = stack.url("/vary/greeting");
    for (round, lang) in ["en", "fr", "en", "fr", "", "en"].into_iter().enumerate() {
        let headers: &[(&str, &str)] = if lang.is_empty() {
            &[]
        } else {
            &[("accept-language", lang)]
        };
        let r = request("GET", &url, headers);
        let expected = if lang.is_empty() { "none" } else { lang };
        assert_eq!(&r.body[..], expected.as_bytes(), "round {round}");
        if round >= 2 && !lang.is_empty() {
            assert!(
                r.cache_status().contains("edge-pop; hit"),
                "round {round}: {}",
                r.cache_status()
            );
        }
    }
    assert_eq!(origin.count("/vary/greeting"), 3, "one fetch per variant");

    // A request field the client marks hop-by-hop (Connection) is not seen upstream, so it
    // must not pick the variant either: otherwise the default body lands under `de`.
    let sneaky = raw_request(
        stack.edge,
        "GET",
        "/vary/other",
        &[("accept-language", "de"), ("connection", "accept-language")],
    );
    assert_eq!(sneaky.body, b"none");
    let r = request(
        "GET",
        &stack.url("/vary/other"),
        &[("accept-language", "de")],
    );
    assert_eq!(&r.body[..], b"de", "the de variant is de's");
}

/// The origin's answer says whose credentials it saw; `/…/shared/…` answers are `public`.
fn whose_origin() -> ScriptedOrigin {
    ScriptedOrigin::start(|req: &Seen| {
        let whose = req
            .header("authorization")
            .unwrap_or("anonymous")
            .to_owned();
        let cc = if req.path().contains("/shared/") {
            "public, max-age=60"
        } else {
            "max-age=60"
        };
        Canned::new(200, &[("cache-control", cc)], whose.as_bytes())
    })
}

/// On a route that forwards `Authorization` (RFC 9111 §3.5 applies at every tier).
#[test]
fn authorization_is_not_served_another_clients_copy() {
    let origin = whose_origin();
    let (_dir, stack) = Stack::before(&origin);
    let url = stack.url("/forwards-auth/doc");
    assert_eq!(&get(&url).body[..], b"anonymous");
    assert_eq!(&get(&url).body[..], b"anonymous");
    assert_eq!(origin.count("/forwards-auth/doc"), 1);
    for token in ["Bearer a", "Bearer b", "Bearer a"] {
        let r = request("GET", &url, &[("authorization", token)]);
        assert_eq!(&r.body[..], token.as_bytes(), "not another client's copy");
    }
    assert_eq!(
        origin.count("/forwards-auth/doc"),
        4,
        "each went to the origin"
    );

    // What an authorized request got is not kept for anyone else.
    let first = stack.url("/forwards-auth/first");
    let r = request("GET", &first, &[("authorization", "Bearer a")]);
    assert_eq!(&r.body[..], b"Bearer a");
    assert_eq!(&get(&first).body[..], b"anonymous");
    assert_eq!(origin.count("/forwards-auth/first"), 2);

    // A response that says `public` may answer requests with credentials from the cache.
    let url = stack.url("/forwards-auth/shared/doc");
    assert_eq!(&get(&url).body[..], b"anonymous");
    let r = request("GET", &url, &[("authorization", "Bearer a")]);
    assert_eq!(&r.body[..], b"anonymous");
    assert_eq!(origin.count("/forwards-auth/shared/doc"), 1);
}

/// Regression: a credential sent on a public route went on to the shield and the origin.
/// Unless the route forwards it, the edge drops it: nothing upstream sees it, and the request
/// is answered from the copy everyone shares.
#[test]
fn authorization_on_a_public_route_stops_at_the_edge() {
    let origin = whose_origin();
    let (_dir, stack) = Stack::before(&origin);
    let url = stack.url("/public/doc");
    for token in ["Bearer a", "Basic Og==", "Bearer b"] {
        let r = request("GET", &url, &[("authorization", token)]);
        assert_eq!(&r.body[..], b"anonymous", "{token}");
    }
    assert_eq!(&get(&url).body[..], b"anonymous");
    assert_eq!(origin.count("/public/doc"), 1, "one copy for all");
    assert!(
        origin
            .seen()
            .iter()
            .all(|s| s.header("authorization").is_none()),
        "no credential reached the origin"
    );
}

#[test]
fn age_is_the_copys_real_age_through_two_tiers() {
    let origin = ScriptedOrigin::start(|_req: &Seen| {
        Canned::new(
            200,
            &[("cache-control", "max-age=100"), ("etag", "\"a1\"")],
            b"aged",
        )
    });
    let (_dir, mut stack) = Stack::before(&origin);
    let url = stack.url("/age/doc");
    let fetching = Instant::now();
    assert_eq!(get(&url).status, 200);
    let stored = Instant::now();
    std::thread::sleep(Duration::from_millis(2200));
    let r = get(&url);
    assert_age(age(&r), 0, fetching, stored, "edge hit");
    // A new edge gets the shield's copy: it is as old there as at the shield.
    let edge2 = stack.start_edge();
    for round in 0..2 {
        let r = get(&format!("http://{edge2}/age/doc"));
        assert_age(
            age(&r),
            0,
            fetching,
            stored,
            &format!("second edge, round {round}"),
        );
    }
    assert_eq!(origin.count("/age/doc"), 1);
}

#[test]
fn a_304_updates_the_copy_and_its_age() {
    let origin = ScriptedOrigin::start(|req: &Seen| {
        if req.header("if-none-match") == Some("\"r1\"") {
            Canned::new(
                304,
                &[
                    ("cache-control", "max-age=100"),
                    ("etag", "\"r1\""),
                    ("age", "30"),
                    ("x-version", "2"),
                ],
                b"",
            )
        } else {
            Canned::new(
                200,
                &[
                    ("cache-control", "max-age=1"),
                    ("etag", "\"r1\""),
                    ("x-version", "1"),
                ],
                b"body",
            )
        }
    });
    let (_dir, stack) = Stack::before(&origin);
    let url = stack.url("/reval/doc");
    assert_eq!(get(&url).header("x-version"), Some("1"));
    std::thread::sleep(Duration::from_millis(1500));
    let revalidating = Instant::now();
    for round in 0..2 {
        let r = get(&url);
        assert_eq!(&r.body[..], b"body", "round {round}");
        assert_eq!(
            r.header("x-version"),
            Some("2"),
            "round {round}: 304 fields merged"
        );
        // The 304's 30 s plus at most the time since it was asked for.
        assert_age(
            age(&r),
            30,
            revalidating,
            revalidating,
            &format!("round {round}"),
        );
    }
    let seen = origin.seen();
    assert_eq!(seen.len(), 2, "one fetch, one revalidation");
    assert_eq!(seen[1].header("if-none-match"), Some("\"r1\""));
}

#[test]
fn no_cache_revalidates_and_must_revalidate_beats_stale_if_error() {
    let down = Arc::new(AtomicBool::new(false));
    let down_ = down.clone();
    let origin = ScriptedOrigin::start(move |req: &Seen| {
        if down_.load(Ordering::SeqCst) {
            return Canned::new(503, &[], b"down");
        }
        match req.path() {
            "/nc/doc" if req.header("if-none-match").is_some() => Canned::new(
                304,
                &[("cache-control", "no-cache"), ("etag", "\"n\"")],
                b"",
            ),
            "/nc/doc" => Canned::new(
                200,
                &[("cache-control", "no-cache"), ("etag", "\"n\"")],
                b"nc",
            ),
            "/sie/must" => Canned::new(
                200,
                &[
                    ("cache-control", "max-age=1, must-revalidate"),
                    ("etag", "\"m\""),
                ],
                b"must",
            ),
            _ => Canned::new(
                200,
                &[("cache-control", "max-age=1"), ("etag", "\"p\"")],
                b"plain",
            ),
        }
    });
    let (_dir, stack) = Stack::before(&origin);
    for round in 0..3 {
        let r = get(&stack.url("/nc/doc"));
        assert_eq!((r.status, &r.body[..]), (200, &b"nc"[..]), "round {round}");
    }
    let seen = origin.seen();
    assert_eq!(seen.len(), 3, "every use revalidated");
    assert!(seen[1..]
        .iter()
        .all(|s| s.header("if-none-match") == Some("\"n\"")));

    assert_eq!(get(&stack.url("/sie/plain")).status, 200);
    assert_eq!(get(&stack.url("/sie/must")).status, 200);
    down.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    let plain = get(&stack.url("/sie/plain"));
    assert_eq!(
        (plain.status, &plain.body[..]),
        (200, &b"plain"[..]),
        "stale if error"
    );
    let must = get(&stack.url("/sie/must"));
    assert_eq!(must.status, 503, "must-revalidate: no stale copy");
}

#[test]
fn targeted_cache_control_cookies_and_hop_fields() {
    let origin = ScriptedOrigin::start(|req: &Seen| {
        if req.path() == "/cookie/doc" {
            return Canned::new(
                200,
                &[("cache-control", "max-age=60"), ("set-cookie", "session=1")],
                b"cookie",
            );
        }
        Canned::new(
            200,
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=60"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
            ],
            b"cdn",
        )
    });
    let (_dir, stack) = Stack::before(&origin);
    let url = stack.url("/cdn/doc");
    let first = get(&url);
    let second = get(&url);
    assert!(
        second.cache_status().contains("edge-pop; hit"),
        "{}",
        second.cache_status()
    );
    for r in [&first, &second] {
        assert_eq!(
            r.header("cache-control"),
            Some("no-store"),
            "clients' rules unchanged"
        );
        assert_eq!(r.header("cdn-cache-control"), None, "not past the edge");
        assert_eq!(r.header("x-hop"), None, "listed in Connection");
    }
    assert_eq!(origin.count("/cdn/doc"), 1);
    // One client's cookie is never stored for the next.
    for _ in 0..2 {
        let r = get(&stack.url("/cookie/doc"));
        assert_eq!(r.header("set-cookie"), Some("session=1"));
    }
    assert_eq!(origin.count("/cookie/doc"), 2);
}

#[test]
fn missing_objects_are_cached_briefly() {
    let origin = ScriptedOrigin::start(|_req: &Seen| Canned::new(404, &[], b"no"));
    let (_dir, stack) = Stack::before(&origin);
    for _ in 0..5 {
        assert_eq!(get(&stack.url("/nothing/here")).status, 404);
    }
    assert_eq!(origin.count("/nothing/here"), 1, "negative_ttl");
}

#[test]
fn a_successful_write_invalidates_the_copy() {
    let origin = ScriptedOrigin::start(|req: &Seen| match req.method.as_str() {
        "GET" => Canned::new(200, &[("cache-control", "max-age=60")], b"v"),
        _ => Canned::new(200, &[], b"written"),
    });
    let (_dir, stack) = Stack::before(&origin);
    // What reaches the origin is the canonical target, with only the query the route keeps.
    get(&stack.url("/writes/d%6fc?utm=x"));
    assert_eq!(origin.seen()[0].target, "/writes/doc");
    get(&stack.url("/q/%78?utm=1&v=%32"));
    assert_eq!(origin.seen()[1].target, "/q/x?v=2");
    let url = stack.url("/writes/doc");
    get(&url);
    get(&url);
    assert_eq!(origin.count("/writes/doc"), 1);
    let r = request("POST", &url, &[("content-type", "text/plain")]);
    assert_eq!((r.status, &r.body[..]), (200, &b"written"[..]));
    let r = get(&url);
    assert!(
        r.cache_status().contains("fwd=miss"),
        "{}",
        r.cache_status()
    );
    let methods: Vec<String> = origin.seen().into_iter().map(|s| s.method).collect();
    assert_eq!(methods, ["GET", "GET", "POST", "GET"]);
    // Routes that do not pass writes refuse them.
    assert_eq!(request("POST", &stack.url("/other"), &[]).status, 405);
}

#[test]
fn revalidating_a_large_object_keeps_its_body() {
    let data = Arc::new(pattern(64 << 20, 9));
    let body = data.clone();
    let origin = ScriptedOrigin::start(move |req: &Seen| {
        if req.header("if-none-match") == Some("\"big\"") {
            Canned::new(
                304,
                &[("cache-control", "max-age=100"), ("etag", "\"big\"")],
                b"",
            )
        } else {
            Canned::new(
                200,
                &[("cache-control", "max-age=1"), ("etag", "\"big\"")],
                &body,
            )
        }
    });
    let (_dir, mut stack) = Stack::before(&origin);
    let url = stack.url("/big.bin");
    let whole = (200, data.len() as u64, sha256_hex(&data));
    let (status, _, len, hash) = get_hashed(&url);
    assert_eq!((status, len, hash), whole);
    // Both copies (large entries on disk) go stale; the origin answers the revalidation 304.
    std::thread::sleep(Duration::from_millis(1500));
    let (status, cache_status, len, hash) = get_hashed(&url);
    assert_eq!((status, len, hash), whole, "{cache_status}");
    let (status, cache_status, len, hash) = get_hashed(&url);
    assert_eq!((status, len, hash), whole);
    assert!(
        cache_status.starts_with("edge-pop; hit"),
        "edge kept it: {cache_status}"
    );
    // A new edge finds the shield's copy kept as well.
    let edge2 = stack.start_edge();
    let (status, cache_status, len, hash) = get_hashed(&format!("http://{edge2}/big.bin"));
    assert_eq!((status, len, hash), whole);
    assert!(
        cache_status.starts_with("shield; hit"),
        "shield kept it: {cache_status}"
    );
    let seen = origin.seen();
    assert_eq!(
        seen.len(),
        2,
        "one fetch and one revalidation, no body refetched"
    );
    assert_eq!(seen[1].header("if-none-match"), Some("\"big\""));
}
