//! Who may have what, through the whole stack: every outcome of a credential check with its
//! status and challenge, copies shared by entitled callers and refused to everyone else, every
//! spelling of a protected path, key rotation, revocation through the entitlement document,
//! rate limits under concurrent load, and inner tiers that answer only the tier in front.

use base64::Engine;
use cdn_auth::keys::{hash_key, new_key};
use cdn_registry::digest::Digest;
use std::time::{Duration, Instant};
use testkit::stack::ENTITLEMENTS;
use testkit::{eventually, origin_dir, raw_request, request, Backend, Stack, StackOptions};

const REALM: &str = "Bearer realm=\"cdn\"";

/// The entitlement document listing `keys`: (key, subject, scopes).
fn document(keys: &[(&str, &str, &[&str])]) -> String {
    let entries: Vec<serde_json::Value> = keys
        .iter()
        .map(|(key, subject, scopes)| {
            serde_json::json!({"sha256": hash_key(key), "subject": subject, "scopes": scopes})
        })
        .collect();
    serde_json::json!({ "keys": entries }).to_string()
}

fn basic(secret: &str) -> String {
    let pair = format!("any-user:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

/// (status, WWW-Authenticate) of a GET at the edge with this `Authorization`, if any.
fn ask(stack: &Stack, path: &str, authorization: Option<&str>) -> (u16, Option<String>) {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    let r = request("GET", &stack.url(path), &headers);
    (r.status, r.header("www-authenticate").map(str::to_owned))
}

struct Fixture {
    _root: tempfile::TempDir,
    stack: Stack,
    /// An API key listed for `path:/private/*` and `oci:acme/*`.
    key: String,
}

fn fixture(tune: impl FnOnce(&mut StackOptions)) -> Fixture {
    let key = new_key();
    let doc = document(&[(&key, "ci", &["path:/private/*", "oci:acme/*"])]);
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
    let digest = Digest::of(manifest);
    let layout = cdn_registry::oci::Layout::new("v2");
    let (blob, acme, other) = (
        layout.blob_data(&digest),
        layout.tag_link("acme/app", "latest"),
        layout.tag_link("other/app", "latest"),
    );
    let linked = digest.to_string();
    let root = origin_dir(&[
        ("private/secret.txt", "secret".as_bytes()),
        ("private/team/plan.txt", b"plan"),
        ("hello.txt", b"hello"),
        (
            "npm-private/@acme/util/package.json",
            br#"{"name":"@acme/util","versions":{}}"#,
        ),
        (
            "npm-private/left-pad/package.json",
            br#"{"name":"left-pad","versions":{}}"#,
        ),
        (&blob, manifest),
        (&acme, linked.as_bytes()),
        (&other, linked.as_bytes()),
        ("limited/a.txt", b"a"),
        ("metered/a.txt", b"a"),
        (&ENTITLEMENTS[1..], doc.as_bytes()),
        ("_cdn/other.json", br#"{"keys":[]}"#),
    ]);
    let mut options = StackOptions::new(Backend::Local(root.path().to_owned()));
    options.token_keys = &["k1", "k2"];
    options.api_keys = true;
    tune(&mut options);
    let stack = Stack::start(options);
    // The edge reads the document as it starts; an API key is answered 503 until then.
    eventually("the entitlement document", || {
        (ask(&stack, "/private/secret.txt", Some(&basic(&key))).0 == 200).then_some(())
    });
    Fixture {
        _root: root,
        stack,
        key,
    }
}

#[test]
fn each_outcome_has_its_status_and_challenge() {
    let Fixture { stack, key, _root } = fixture(|_| {});
    let path = "/private/secret.txt";
    let s = &stack;
    let invalid = Some(format!("{REALM}, error=\"invalid_token\""));
    let good = s.mint("k1", "alice", "path:/private/*", 60);
    let other = s.mint("k1", "mallory", "path:/private/*", 60);
    let parts: Vec<&str> = good.split('.').collect();
    let other_body = other.split('.').nth(1).unwrap();
    let forged = format!("{}.{other_body}.{}", parts[0], parts[2]);

    assert_eq!(
        ask(s, path, None),
        (401, Some(REALM.into())),
        "no credential"
    );
    for malformed in [
        "Bearer",
        "Digest user=x",
        "Bearer a b",
        "Basic !!!",
        "Basic eHl6",
    ] {
        assert_eq!(
            ask(s, path, Some(malformed)),
            (401, Some(format!("{REALM}, error=\"invalid_request\""))),
            "malformed: {malformed}"
        );
    }
    assert_eq!(
        ask(s, path, Some(&bearer(&forged))),
        (401, invalid.clone()),
        "bad signature"
    );
    let unknown_id = s.mint("k3", "alice", "path:/private/*", 60);
    assert_eq!(
        ask(s, path, Some(&bearer(&unknown_id))),
        (401, invalid.clone()),
        "unknown key id"
    );
    let expired = s.mint("k1", "alice", "path:/private/*", -120);
    assert_eq!(
        ask(s, path, Some(&bearer(&expired))),
        (401, invalid.clone()),
        "expired"
    );
    let elsewhere = s.mint("k1", "alice", "path:/public/*", 60);
    assert_eq!(
        ask(s, path, Some(&bearer(&elsewhere))),
        (403, Some(format!("{REALM}, error=\"insufficient_scope\""))),
        "wrong scope"
    );
    assert_eq!(
        ask(s, path, Some(&bearer("cdnk_not-a-listed-key"))),
        (401, invalid),
        "unknown API key"
    );
    assert_eq!(ask(s, "/hello.txt", None), (200, None), "public route");

    // What is accepted: a token (Bearer, as npm sends it; Basic, as docker and skopeo do)
    // and an API key either way.
    for authorization in [bearer(&good), basic(&good), bearer(&key), basic(&key)] {
        let r = request("GET", &s.url(path), &[("authorization", &authorization)]);
        assert_eq!((r.status, &r.body[..]), (200, &b"secret"[..]));
    }
    // Rotation: while both key ids are configured, tokens signed by either verify.
    let rotated = s.mint("k2", "alice", "path:/private/*", 60);
    assert_eq!(
        ask(s, path, Some(&bearer(&rotated))).0,
        200,
        "the new key id"
    );
    assert_eq!(ask(s, path, Some(&bearer(&good))).0, 200, "the old key id");

    // Package names: npm packages and registry repositories, by scope.
    let npm = s.mint("k1", "dev", "npm:@acme/*", 60);
    assert_eq!(
        ask(s, "/npm-private/@acme/util", Some(&bearer(&npm))).0,
        200
    );
    assert_eq!(
        ask(s, "/npm-private/left-pad", Some(&bearer(&npm))).0,
        403,
        "another package"
    );
    // The registry challenges with Basic, which docker and skopeo answer with --creds.
    let registry = Some("Basic realm=\"cdn\"".to_owned());
    assert_eq!(
        ask(s, "/v2/acme/app/manifests/latest", None),
        (401, registry.clone())
    );
    assert_eq!(
        ask(s, "/v2/acme/app/manifests/latest", Some(&basic("cdnk_x"))),
        (401, registry)
    );
    assert_eq!(
        ask(s, "/v2/acme/app/manifests/latest", Some(&basic(&key))).0,
        200
    );
    assert_eq!(
        ask(s, "/v2/other/app/manifests/latest", Some(&basic(&key))),
        (403, None),
        "a repository out of the key's scopes"
    );
    // The registry's own error form on its route, every other field kept; plain text elsewhere.
    for (path, authorization, status, code) in [
        ("/v2/acme/app/manifests/latest", None, 401, "UNAUTHORIZED"),
        (
            "/v2/other/app/manifests/latest",
            Some(basic(&key)),
            403,
            "DENIED",
        ),
        (
            "/v2/acme/%2e%2e/x/manifests/latest",
            None,
            400,
            "NAME_INVALID",
        ),
    ] {
        let headers: Vec<(&str, &str)> = authorization
            .as_deref()
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        let r = raw_request(s.edge, "GET", path, &headers);
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        assert_eq!(
            r.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "{path}"
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON body");
        assert_eq!(body["errors"][0]["code"], code, "{path}: {body}");
        if status == 401 {
            assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"cdn\""));
        }
    }
    let plain = raw_request(s.edge, "GET", "/private/secret.txt", &[]);
    assert_eq!(plain.status, 401);
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

#[test]
fn a_copy_is_shared_by_the_entitled_and_refused_to_everyone_else() {
    let Fixture { stack, key, _root } = fixture(|_| {});
    let path = "/private/team/plan.txt";
    let alice = bearer(&stack.mint("k1", "alice", "path:/private/team/*", 60));
    let first = request("GET", &stack.url(path), &[("authorization", &alice)]);
    assert_eq!(first.status, 200);
    assert!(
        first.cache_status().contains("edge-pop; fwd=miss"),
        "{}",
        first.cache_status()
    );
    // Another caller, another credential kind: the same copy (credentials are not in the key).
    let second = request("GET", &stack.url(path), &[("authorization", &basic(&key))]);
    assert_eq!((second.status, &second.body[..]), (200, &b"plan"[..]));
    assert_eq!(
        second.header("cache-control"),
        Some("private, max-age=3600"),
        "no shared cache past the edge may keep it"
    );
    assert!(
        second.cache_status().starts_with("edge-pop; hit"),
        "{}",
        second.cache_status()
    );
    // Stored at the edge, and still refused to a caller who may not have it.
    assert_eq!(ask(&stack, path, None).0, 401);
    let outsider = bearer(&stack.mint("k1", "bob", "path:/private/other/*", 60));
    assert_eq!(ask(&stack, path, Some(&outsider)).0, 403);
    let expired = bearer(&stack.mint("k1", "alice", "path:/private/team/*", -120));
    assert_eq!(ask(&stack, path, Some(&expired)).0, 401);
}

#[test]
fn every_spelling_of_a_protected_path_needs_a_credential() {
    let Fixture { stack, key, _root } = fixture(|_| {});
    let spellings = [
        "/private/secret.txt",
        "/%70rivate/secret.txt",
        "/%70%72%69%76%61%74%65/secret.txt",
        "/PRIVATE/../private/secret.txt",
        "/private/secret%2Etxt",
        "//private/secret.txt",
        "http://127.0.0.1/private/secret.txt",
        "/private/secret.txt?x=1",
    ];
    for target in spellings {
        let r = raw_request(stack.edge, "GET", target, &[]);
        assert!(
            matches!(r.status, 400 | 401),
            "{target} without a credential: {}",
            r.status
        );
        let authorization = basic(&key);
        let r = raw_request(
            stack.edge,
            "GET",
            target,
            &[("authorization", &authorization)],
        );
        assert!(
            matches!(r.status, 200 | 400),
            "{target} with one: {}",
            r.status
        );
        if r.status == 200 {
            assert_eq!(r.body, b"secret", "{target}");
        }
    }
    // The document of keys is not the clients' to read, however it is spelled, nor is
    // anything else under the internal prefix (regression: only the document's exact path was
    // hidden).
    for target in [
        ENTITLEMENTS,
        "/_cdn/%65ntitlements.json",
        "/_cdn/other.json",
        "/_cdn/",
        "/%5fcdn/other.json",
    ] {
        for authorization in [None, Some(basic(&key))] {
            let headers: Vec<(&str, &str)> = authorization
                .as_deref()
                .map(|a| ("authorization", a))
                .into_iter()
                .collect();
            let r = raw_request(stack.edge, "GET", target, &headers);
            assert_eq!(r.status, 404, "{target}");
            assert!(!r.body.windows(4).any(|w| w == b"keys"), "{target}");
        }
    }
}

/// Regression: the last entitlement document read stayed in force for good while no newer one
/// could be read, so a revoked API key worked for as long as the shields were down. Now the
/// document is trusted for `max_stale` at most: a revoked key is refused by then at the latest.
#[test]
fn a_revoked_key_is_refused_within_the_max_staleness_while_the_shields_are_down() {
    let Fixture {
        mut stack,
        key,
        _root,
    } = fixture(|o| {
        o.entitlements_ttl = "1s";
        o.entitlements_negative_ttl = "1s";
        o.entitlements_max_stale = "3s";
    });
    let path = "/private/secret.txt";
    let file = _root.path().join(&ENTITLEMENTS[1..]);
    std::fs::write(&file, document(&[])).unwrap();
    stack.stop("shield");
    let down = Instant::now();
    eventually("the revoked key to be refused", || {
        let (status, _) = ask(&stack, path, Some(&basic(&key)));
        assert!(matches!(status, 200 | 503), "{status}");
        (status == 503).then_some(())
    });
    assert!(
        down.elapsed() < Duration::from_secs(3 + 1 + 2),
        "refused after {:?}",
        down.elapsed()
    );
    // Signed tokens need no document: the copy the edge holds is still served to them.
    let token = stack.mint("k1", "alice", "path:/private/*", 60);
    assert_eq!(ask(&stack, path, Some(&bearer(&token))).0, 200);
}

/// A document that stops being readable (broken JSON) fails closed the same way, and the
/// edge's `/readyz` says so while it lasts; a good one puts the keys back.
#[test]
fn a_broken_document_fails_closed_and_readyz_says_so() {
    let Fixture { stack, key, _root } = fixture(|o| {
        o.entitlements_ttl = "1s";
        o.entitlements_negative_ttl = "1s";
        o.entitlements_max_stale = "2s";
    });
    let path = "/private/secret.txt";
    let file = _root.path().join(&ENTITLEMENTS[1..]);
    let good = std::fs::read(&file).unwrap();
    let readyz = || testkit::get(&format!("http://{}/readyz", stack.edge_admin));
    assert_eq!(&readyz().body[..], b"ready\n");
    std::fs::write(&file, b"{ not json").unwrap();
    eventually("keys refused once the document is too old", || {
        (ask(&stack, path, Some(&basic(&key))).0 == 503).then_some(())
    });
    let r = readyz();
    assert_eq!(r.status, 200, "still serving what needs no API key");
    let said = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        said.starts_with("degraded: ") && said.contains("API keys"),
        "{said}"
    );
    std::fs::write(&file, good).unwrap();
    eventually("the key accepted again", || {
        (ask(&stack, path, Some(&basic(&key))).0 == 200).then_some(())
    });
    assert_eq!(&readyz().body[..], b"ready\n");
}

#[test]
fn keys_are_revoked_and_issued_through_the_entitlement_document() {
    let ttl = Duration::from_secs(4);
    let Fixture { stack, key, _root } = fixture(|o| {
        o.entitlements_ttl = "4s";
        o.entitlements_negative_ttl = "1s";
    });
    let file = _root.path().join(&ENTITLEMENTS[1..]);
    let path = "/private/secret.txt";
    let fresh = new_key();
    assert_eq!(
        ask(&stack, path, Some(&basic(&fresh))).0,
        401,
        "not issued yet"
    );

    // Issued: an unknown key makes the edge read the document again, at most once per
    // negative_ttl, so a new key works well before the document's ttl is up.
    std::fs::write(
        &file,
        document(&[
            (&key, "ci", &["path:/private/*"]),
            (&fresh, "new", &["path:/private/*"]),
        ]),
    )
    .unwrap();
    let issued = Instant::now();
    eventually("the new key to be accepted", || {
        (ask(&stack, path, Some(&basic(&fresh))).0 == 200).then_some(())
    });
    assert!(issued.elapsed() < ttl, "took {:?}", issued.elapsed());

    // Revoked: refused once the edge's copy of the document is older than its ttl, never
    // later (plus the time a fetch takes).
    std::fs::write(&file, document(&[(&fresh, "new", &["path:/private/*"])])).unwrap();
    let revoked = Instant::now();
    eventually("the revoked key to be refused", || {
        let (status, challenge) = ask(&stack, path, Some(&basic(&key)));
        (status == 401).then_some(challenge)
    });
    let took = revoked.elapsed();
    assert!(
        took <= ttl + Duration::from_millis(1500),
        "revocation took {took:?}"
    );
    assert_eq!(
        ask(&stack, path, Some(&basic(&fresh))).0,
        200,
        "the other key stays"
    );
}

/// Sends `total` GETs from `threads` threads at once; returns the statuses and the time taken.
fn header<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

fn burst(
    stack: &Stack,
    path: &str,
    authorization: Option<&str>,
    threads: usize,
    total: usize,
) -> (Vec<u16>, Duration, Vec<String>) {
    let started = Instant::now();
    let results: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    (0..total / threads)
                        .map(|_| {
                            let headers: Vec<(&str, &str)> = authorization
                                .map(|a| ("authorization", a))
                                .into_iter()
                                .collect();
                            let r = raw_request(stack.edge, "GET", path, &headers);
                            (r.status, r.header("retry-after").map(str::to_owned))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let took = started.elapsed();
    let retry_after = results.iter().filter_map(|(_, r)| r.clone()).collect();
    (
        results.into_iter().map(|(s, _)| s).collect(),
        took,
        retry_after,
    )
}

/// How many of a burst a limit of `count` per `period` may let through in `took`: the burst,
/// the allowance earned meanwhile, and one for rounding.
fn allowed(count: u32, period: Duration, took: Duration) -> usize {
    let earned = took.as_secs_f64() / (period.as_secs_f64() / f64::from(count));
    count as usize + earned.ceil() as usize + 1
}

#[test]
fn rate_limits_hold_under_concurrent_load() {
    let Fixture { stack, _root, .. } = fixture(|_| {});
    // `/limited/`: 40 per minute per client address.
    let (statuses, took, retry_after) = burst(&stack, "/limited/a.txt", None, 8, 200);
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(ok + limited, 200, "only 200s and 429s: {statuses:?}");
    assert!(ok >= 40, "the burst is let through: {ok}");
    assert!(
        ok <= allowed(40, Duration::from_secs(60), took),
        "{ok} in {took:?}"
    );
    assert_eq!(retry_after.len(), limited, "every 429 says when to retry");
    assert!(
        retry_after
            .iter()
            .all(|r| r.parse::<u64>().is_ok_and(|s| (1..=2).contains(&s))),
        "{retry_after:?}"
    );
    // Other routes are not limited.
    assert_eq!(ask(&stack, "/hello.txt", None).0, 200);

    // `/metered/`: 20 per minute per credential; each credential has its own allowance.
    let a = bearer(&stack.mint("k1", "a", "path:/metered/*", 60));
    let b = bearer(&stack.mint("k1", "b", "path:/metered/*", 60));
    for who in [&a, &b] {
        let (statuses, took, _) = burst(&stack, "/metered/a.txt", Some(who), 4, 60);
        let ok = statuses.iter().filter(|&&s| s == 200).count();
        assert!(
            statuses.iter().all(|&s| s == 200 || s == 429),
            "{statuses:?}"
        );
        assert!(
            ok >= 20 && ok <= allowed(20, Duration::from_secs(60), took),
            "{ok} in {took:?}"
        );
    }
    // A refused request does not count against a credential: none was presented.
    assert_eq!(ask(&stack, "/metered/a.txt", None).0, 401);
}

#[test]
fn inner_tiers_answer_only_the_tier_in_front() {
    let Fixture { stack, _root, .. } = fixture(|_| {});
    let path = "/hello.txt";
    let edge_secret = stack.tier_header(stack.shield);
    let shield_secret = stack.tier_header(stack.origin);

    for addr in [stack.shield, stack.origin] {
        assert_eq!(
            raw_request(addr, "GET", path, &[]).status,
            403,
            "no secret at {addr}"
        );
        assert_eq!(
            raw_request(
                addr,
                "GET",
                path,
                &[("cdn-tier-secret", "guess-guess-guess-guess")]
            )
            .status,
            403,
            "a wrong secret at {addr}"
        );
        // Refused before anything else is judged: not even a path's existence shows.
        assert_eq!(raw_request(addr, "GET", "/no/such/thing", &[]).status, 403);
    }
    assert_eq!(
        raw_request(stack.shield, "GET", path, &header(&edge_secret)).status,
        200
    );
    assert_eq!(
        raw_request(stack.origin, "GET", path, &header(&shield_secret)).status,
        200
    );
    assert_eq!(
        raw_request(stack.origin, "GET", path, &header(&edge_secret)).status,
        403,
        "an edge cannot skip its shield"
    );
    // A client cannot pass a secret through the edge either: the edge sends its own.
    assert_eq!(
        raw_request(
            stack.edge,
            "GET",
            "/private/secret.txt",
            &header(&edge_secret)
        )
        .status,
        401
    );
}

/// Regression: with `RUST_LOG=…,pingora_proxy=debug` the tier secret and clients'
/// `Authorization` were written to the log (Pingora prints the headers it reads and sends).
/// Whatever `RUST_LOG` asks for, no credential and no secret reaches a log line.
#[test]
fn no_credential_reaches_a_log_line() {
    let key = new_key();
    let root = origin_dir(&[
        ("private/secret.txt", "secret"),
        (
            &ENTITLEMENTS[1..],
            document(&[(&key, "ci", &["path:/private/*"])]).as_str(),
        ),
    ]);
    let mut options = StackOptions::new(Backend::Local(root.path().to_owned())).processes();
    options.api_keys = true;
    options.rust_log = "trace";
    let stack = Stack::start(options);
    let token = stack.mint("k1", "alice", "path:/private/*", 60);
    // A credential sent where no route needs one, and a miss that goes to the origin.
    ask(&stack, "/hello.txt", Some("Bearer public-route-credential"));
    let expired = stack.mint("k1", "alice", "path:/private/*", -60);
    eventually("the entitlement document", || {
        (ask(&stack, "/private/secret.txt", Some(&basic(&key))).0 == 200).then_some(())
    });
    for authorization in [
        bearer(&token),
        basic(&token),
        bearer(&expired),
        bearer("cdnk_wrong-key-value"),
        basic(&key),
    ] {
        ask(&stack, "/private/secret.txt", Some(&authorization));
        ask(
            &stack,
            "/private/secret.txt?token=leaky-query-value",
            Some(&authorization),
        );
    }
    let edge_secret = stack.tier_header(stack.shield)[0].1.clone();
    let shield_secret = stack.tier_header(stack.origin)[0].1.clone();
    let secrets = [
        &token,
        &expired,
        &key,
        "cdnk_wrong-key-value",
        &basic(&key)[6..],
        "public-route-credential",
        &edge_secret,
        &shield_secret,
    ];
    for name in ["edge", "shield", "origin"] {
        let log = stack.log(name);
        assert!(log.contains("access: request"), "{name} logged requests");
        if name != "origin" {
            assert!(log.contains("DEBUG"), "{name} logs below info");
        }
        for secret in secrets {
            assert!(!log.contains(secret), "a credential in {name}'s log");
        }
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !log.contains(signature),
            "a token's signature in {name}'s log"
        );
    }
}

#[test]
fn arbitrary_authorization_bytes_get_a_4xx() {
    let Fixture { stack, _root, .. } = fixture(|_| {});
    // Header values as a client could send them (no CR or LF, which end the field), from a
    // fixed seed so a failure repeats.
    for seed in 0..300u64 {
        let len = (seed as usize * 7) % 200 + 1;
        let bytes: Vec<u8> = testkit::pattern(len, seed)
            .into_iter()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b })
            .collect();
        let value = String::from_utf8_lossy(&bytes).into_owned();
        let prefixed = [
            value.clone(),
            format!("Bearer {value}"),
            format!("Basic {value}"),
        ];
        for v in &prefixed {
            let r = raw_request(
                stack.edge,
                "GET",
                "/private/secret.txt",
                &[("authorization", v)],
            );
            assert!(matches!(r.status, 400 | 401), "seed {seed}: {}", r.status);
        }
    }
}

/// Regression: the scope took the last `manifests|blobs|tags` keyword of a path for the
/// repository, origin-adapter the segment before the operation; with a key for `oci:acme/*`,
/// `/v2/acme/tags/list` was 403 while `/v2/acme/manifests/manifests` handed out repository
/// `acme`. Now both read the path one way: every shape, tags named like operations included,
/// is allowed exactly for the repositories the key covers.
#[test]
fn oci_scopes_cover_the_repository_origin_adapter_serves() {
    let layout = cdn_registry::oci::Layout::new("v2");
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
    let layer = b"a layer's bytes".to_vec();
    let (digest, layer_digest) = (Digest::of(manifest), Digest::of(&layer));
    let key = new_key();
    let doc = document(&[(&key, "ci", &["oci:acme/*"])]);
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (layout.blob_data(&digest), manifest.to_vec()),
        (layout.blob_data(&layer_digest), layer.clone()),
        (ENTITLEMENTS[1..].to_owned(), doc.into_bytes()),
    ];
    let tags = ["manifests", "blobs", "tags", "list"];
    for repo in ["acme", "acme/app"] {
        for tag in tags {
            files.push((layout.tag_link(repo, tag), digest.to_string().into_bytes()));
        }
        files.push((
            layout.manifest_link(repo, &digest),
            digest.to_string().into_bytes(),
        ));
        files.push((
            layout.layer_link(repo, &layer_digest),
            layer_digest.to_string().into_bytes(),
        ));
    }
    let root = origin_dir(&files);
    let mut options = StackOptions::new(Backend::Local(root.path().to_owned()));
    options.api_keys = true;
    let stack = Stack::start(options);
    let creds = basic(&key);
    eventually("the entitlement document", || {
        (ask(&stack, "/v2/acme/app/tags/list", Some(&creds)).0 == 200).then_some(())
    });

    let mut shapes: Vec<String> = tags.iter().map(|t| format!("manifests/{t}")).collect();
    shapes.push(format!("manifests/{digest}"));
    shapes.push(format!("blobs/{layer_digest}"));
    shapes.push("tags/list".into());
    let at_origin = |path: &str| {
        let headers = stack.tier_header(stack.origin);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        request("GET", &format!("http://{}{path}", stack.origin), &headers).status
    };
    for shape in &shapes {
        let outside = format!("/v2/acme/{shape}");
        assert_eq!(
            at_origin(&outside),
            200,
            "{outside}: origin-adapter serves `acme`"
        );
        assert_eq!(ask(&stack, &outside, Some(&creds)).0, 403, "{outside}");
        let inside = format!("/v2/acme/app/{shape}");
        assert_eq!(ask(&stack, &inside, Some(&creds)).0, 200, "{inside}");
    }
}
