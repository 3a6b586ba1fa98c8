//! Config loading: the shipped file loads, and each kind of mistake names line and field.

use super::*;
use crate::error::locate;
use std::path::Path;

const GOOD: &str = "\
origin:
  listen: 127.0.0.1:9000
  backend:
    local:
      root: sample
shield:
  listen: 127.0.0.1:8081
  origin: 127.0.0.1:9000
  cache:
    memory: 64MiB
edge:
  listen: 127.0.0.1:8080
  shields: [127.0.0.1:8081]
  cache:
    memory: 64MiB
    max_object: 8MiB
routes:
  - prefix: /npm/
    ttl: 5m
  - prefix: /
    ttl: 1h
    auth: true
auth:
  token_keys:
    - id: k1
      public_key: keys/k1.pub
";

/// Replaces `from` with `to` in the good config, loads it, and checks the error's
/// line, field and message.
fn check(from: &str, to: &str, line: usize, field: &str, message: &str) {
    assert!(GOOD.contains(from), "{from:?} not in the base config");
    let text = GOOD.replacen(from, to, 1);
    let err = Config::parse(Path::new("/etc/cdn/config.yaml"), &text).unwrap_err();
    let shown = err.to_string();
    assert_eq!(err.position.map(|p| p.0), Some(line), "line of: {shown}");
    assert_eq!(err.field.as_deref(), Some(field), "field of: {shown}");
    assert!(err.message.contains(message), "message of: {shown}");
    assert!(shown.starts_with("/etc/cdn/config.yaml:"), "{shown}");
}

#[test]
fn good_config_loads() {
    let c = Config::parse(Path::new("/etc/cdn/config.yaml"), GOOD).unwrap();
    assert!(
        matches!(&c.origin.backend, Backend::Local { root } if root == Path::new("/etc/cdn/sample"))
    );
    assert_eq!(c.edge.upstreams, vec!["127.0.0.1:8081".parse().unwrap()]);
    assert_eq!(c.edge.cache.max_object_bytes, 8 << 20);
    assert_eq!(
        c.shield.cache.max_object_bytes,
        64 << 20,
        "max_object defaults, capped by memory"
    );
    assert!(c
        .routes
        .policy("/npm/left-pad")
        .is_some_and(|p| !p.auth_required));
    assert!(c.routes.policy("/other").is_some_and(|p| p.auth_required));
    assert!(c.summary().contains("2 route(s)"));
}

#[test]
fn shipped_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.yaml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.routes.policy("/").is_some());
}

#[test]
fn bad_values_name_line_and_field() {
    check(
        "memory: 64MiB\nedge",
        "memory: 64XB\nedge",
        10,
        "shield.cache.memory",
        "invalid size unit",
    );
    check(
        "ttl: 5m",
        "ttl: soon",
        19,
        "routes[0].ttl",
        "invalid duration",
    );
    check(
        "listen: 127.0.0.1:8080",
        "listen: localhost",
        12,
        "edge.listen",
        "invalid socket address",
    );
    check(
        "  - prefix: /\n",
        "  - prefix: nope\n",
        20,
        "routes[1].prefix",
        "must start with '/'",
    );
    check(
        "    max_object: 8MiB",
        "    max_objekt: 8MiB",
        16,
        "edge.cache.max_objekt",
        "unknown field `max_objekt`",
    );
    check(
        "  origin: 127.0.0.1:9000\n",
        "  origin: 127.0.0.1:9000\n  secret_key: x\n",
        9,
        "shield.secret_key",
        "unknown field `secret_key`",
    );
}

#[test]
fn cross_field_mistakes_name_line_and_field() {
    check(
        "max_object: 8MiB",
        "max_object: 1GiB",
        16,
        "edge.cache.max_object",
        "larger than the memory tier",
    );
    check(
        "shields: [127.0.0.1:8081]",
        "shields: []",
        13,
        "edge.shields",
        "at least one shield",
    );
    check(
        "shields: [127.0.0.1:8081]",
        "shields: [127.0.0.1:8081]\n  health_check: 0s",
        14,
        "edge.health_check",
        "more than 0",
    );
    check(
        "listen: 127.0.0.1:8080",
        "listen: 127.0.0.1:8081",
        12,
        "edge.listen",
        "already used by `shield.listen`",
    );
    check(
        "  - prefix: /\n",
        "  - prefix: /npm/\n",
        20,
        "routes[1].prefix",
        "listed twice",
    );
    check(
        "  - prefix: /npm/\n    ttl: 5m\n",
        "  - prefix: /npm/\n    ttl: 5m\n    slice: 4KiB\n",
        20,
        "routes[0].slice",
        "at least 64KiB",
    );
    check(
        "  - prefix: /npm/\n    ttl: 5m\n",
        "  - prefix: /npm/\n    ttl: 5m\n    scope: npm\n    slice: 1MiB\n",
        21,
        "routes[0].slice",
        "only on `path` routes",
    );
    check(
        "    local:\n      root: sample",
        "    s3:\n      bucket: b\n      endpoint: http://127.0.0.1:1",
        6,
        "origin.backend.s3.endpoint",
        "allow_http",
    );
}

#[test]
fn locate_finds_nested_and_listed_fields() {
    assert_eq!(locate(GOOD, "edge.cache.memory"), Some((15, 5)));
    assert_eq!(locate(GOOD, "routes[1].ttl"), Some((21, 5)));
    assert_eq!(locate(GOOD, "routes[1]"), Some((20, 3)));
    assert_eq!(locate(GOOD, "edge.nothing"), None);
}

#[test]
fn listen_lines_read_back() {
    for line in [
        "127.0.0.1:8080, admin 127.0.0.1:9180",
        "[::1]:443, no admin",
        "127.0.0.1:8080, tls 127.0.0.1:8443, admin 127.0.0.1:9180",
        "127.0.0.1:8080, tls [::1]:8443, no admin",
    ] {
        let listen: Listen = line.parse().unwrap();
        assert_eq!(listen.to_string(), line);
    }
    let with_tls: Listen = "127.0.0.1:80, tls 127.0.0.1:443, no admin".parse().unwrap();
    assert_eq!(with_tls.tls, Some("127.0.0.1:443".parse().unwrap()));
    for bad in [
        "127.0.0.1:8080",
        "127.0.0.1:8080, admin nowhere",
        "127.0.0.1:8080, tls nowhere, no admin",
        "127.0.0.1:8080, tls 127.0.0.1:8443",
        "127.0.0.1:8080, no admin, tls 127.0.0.1:8443",
    ] {
        assert!(bad.parse::<Listen>().is_err(), "{bad}");
    }
}

/// The edge's `tls` section, inserted after its `shields` line.
fn with_edge_tls(tls: &str) -> String {
    let at = "  shields: [127.0.0.1:8081]\n";
    assert!(GOOD.contains(at));
    GOOD.replacen(at, &format!("{at}{tls}"), 1)
}

#[test]
fn edge_tls_section() {
    let c = Config::parse(Path::new("/etc/cdn/config.yaml"), GOOD).unwrap();
    assert_eq!(
        (c.edge.listen.tls, &c.edge.tls),
        (None, &None),
        "off unless set"
    );
    let text = with_edge_tls(
        "  tls:\n    listen: 127.0.0.1:8443\n    certificates:\n      - cert: certs/a.pem\n        key: certs/a.key\n      - cert: /abs/b.pem\n        key: /abs/b.key\n",
    );
    let c = Config::parse(Path::new("/etc/cdn/config.yaml"), &text).unwrap();
    assert_eq!(c.edge.listen.tls, Some("127.0.0.1:8443".parse().unwrap()));
    let tls = c.edge.tls.as_ref().unwrap();
    assert!(tls.http2, "HTTP/2 by default");
    assert_eq!(
        tls.certificates,
        vec![
            CertificateFiles {
                cert: "/etc/cdn/certs/a.pem".into(),
                key: "/etc/cdn/certs/a.key".into(),
            },
            CertificateFiles {
                cert: "/abs/b.pem".into(),
                key: "/abs/b.key".into(),
            },
        ],
        "relative paths resolve against the config file's folder"
    );
    assert!(c
        .summary()
        .contains("edge 127.0.0.1:8080 + tls 127.0.0.1:8443 (2 certificate(s), h2)"));
    assert_eq!((c.shield.listen.tls, &c.shield.tls), (None, &None));

    let h1 = with_edge_tls(
        "  tls:\n    listen: 127.0.0.1:8443\n    http2: false\n    certificates:\n      - cert: a.pem\n        key: a.key\n",
    );
    let c = Config::parse(Path::new("/etc/cdn/config.yaml"), &h1).unwrap();
    assert!(!c.edge.tls.unwrap().http2);
}

#[test]
fn edge_tls_mistakes_name_line_and_field() {
    let check_tls = |tls: &str, line: usize, field: &str, message: &str| {
        let text = with_edge_tls(tls);
        let err = Config::parse(Path::new("/etc/cdn/config.yaml"), &text).unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.position.map(|p| p.0), Some(line), "line of: {shown}");
        assert_eq!(err.field.as_deref(), Some(field), "field of: {shown}");
        assert!(err.message.contains(message), "message of: {shown}");
    };
    // The tls section starts on line 14.
    check_tls(
        "  tls:\n    listen: 127.0.0.1:8443\n    certificates: []\n",
        16,
        "edge.tls.certificates",
        "at least one certificate",
    );
    check_tls(
        "  tls:\n    listen: 127.0.0.1:8081\n    certificates:\n      - cert: a.pem\n        key: a.key\n",
        15,
        "edge.tls.listen",
        "already used by `shield.listen`",
    );
    check_tls(
        "  tls:\n    listen: 127.0.0.1:8443\n    certificates:\n      - cert: a.pem\n",
        17,
        "edge.tls.certificates[0]",
        "missing field `key`",
    );
    check_tls(
        "  tls:\n    listen: 127.0.0.1:8443\n    certificates:\n      - cert: a.pem\n        key: a.key\n        chain: c.pem\n",
        19,
        "edge.tls.certificates[0].chain",
        "unknown field `chain`",
    );
    check_tls(
        "  tls:\n    listen: 127.0.0.1:8443\n    http2: maybe\n    certificates:\n      - cert: a.pem\n        key: a.key\n",
        16,
        "edge.tls.http2",
        "invalid",
    );
}

#[test]
fn route_caching_rules() {
    let text = GOOD.replacen(
        "    ttl: 5m\n",
        "    ttl: 5m\n    query: [v, lang]\n    heuristic: last_modified\n    negative_ttl: 30s\n    pass_writes: true\n",
        1,
    );
    let c = Config::parse(Path::new("/etc/cdn/config.yaml"), &text).unwrap();
    let npm = c.routes.policy("/npm/x").unwrap();
    assert_eq!(
        npm.query,
        QueryPolicy::Only(vec!["v".into(), "lang".into()])
    );
    assert!(npm.query.keeps("lang") && !npm.query.keeps("utm"));
    assert_eq!(npm.heuristic, Heuristic::LastModified);
    assert_eq!(npm.negative_ttl, Duration::from_secs(30));
    assert!(npm.pass_writes);
    let other = c.routes.policy("/other").unwrap();
    assert_eq!(
        (other.query.clone(), other.heuristic, other.pass_writes),
        (QueryPolicy::Ignore, Heuristic::Ttl, false),
        "defaults"
    );
    let keep = GOOD.replacen("    ttl: 5m\n", "    ttl: 5m\n    query: keep\n", 1);
    let c = Config::parse(Path::new("/etc/cdn/config.yaml"), &keep).unwrap();
    assert_eq!(c.routes.policy("/npm/x").unwrap().query, QueryPolicy::Keep);

    check(
        "    ttl: 5m\n",
        "    ttl: 5m\n    heuristic: sometimes\n",
        20,
        "routes[0].heuristic",
        "unknown variant `sometimes`",
    );
    check(
        "    ttl: 5m\n",
        "    ttl: 5m\n    query: all\n",
        20,
        "routes[0].query",
        "query must be `ignore`, `keep` or a list of parameter names, not \"all\"",
    );
    check(
        "  - prefix: /\n",
        "  - prefix: /%70rivate/\n",
        20,
        "routes[1].prefix",
        "plain decoded path",
    );
}

/// Regression: a catch-all over the bucket's root read the registry layout of an `auth` route
/// by its key paths, with no credential.
#[test]
fn routes_whose_keys_meet_are_refused_naming_both() {
    let registry = "  - prefix: /v2/\n    ttl: 1m\n    auth: true\n    scope: oci\n    source:\n      prefix: registry\n";
    let public = GOOD.replacen("    auth: true\n", "", 1);
    let text = public.replacen("  - prefix: /\n", &format!("{registry}  - prefix: /\n"), 1);
    let err = Config::parse(Path::new("/etc/cdn/config.yaml"), &text).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("routes[2].prefix"), "{err}");
    assert_eq!(err.position.map(|p| p.0), Some(26), "{err}");
    for part in [
        "route \"/\"",
        "route \"/v2/\"",
        "\"/registry/\"",
        "the keys under /etc/cdn/sample/registry/;",
    ] {
        assert!(err.message.contains(part), "{part} in {err}");
    }
    // A source of its own for the catch-all keeps them apart.
    let apart = text.replacen(
        "  - prefix: /\n    ttl: 1h\n",
        "  - prefix: /\n    ttl: 1h\n    source:\n      prefix: files\n",
        1,
    );
    Config::parse(Path::new("/etc/cdn/config.yaml"), &apart).unwrap_or_else(|e| panic!("{e}"));
    // A package route over the whole bucket meets every other route.
    check(
        "  - prefix: /npm/\n    ttl: 5m\n",
        "  - prefix: /npm/\n    ttl: 5m\n    scope: npm\n",
        21,
        "routes[1].prefix",
        "can read what route \"/npm/\" (routes[0]) serves: its path \"/\" reaches the keys under /etc/cdn/sample/;",
    );
}

#[test]
fn auth_trust_and_rate_limits() {
    let text = GOOD.replacen(
        "  - prefix: /\n",
        "  - prefix: /v2/\n    ttl: 1m\n    auth: true\n    scope: oci\n    source:\n      prefix: v2\n    rate_limit:\n      per_client_ip: 50/s\n      per_credential: 6000/m\n  - prefix: /_cdn/\n    ttl: 1s\n    cache: false\n  - prefix: /\n",
        1,
    ) + "  api_keys:\n    document: /_cdn/entitlements.json\n    ttl: 2m\ntrust:\n  edge_to_shield: secrets/e.key\n  shield_to_origin: /run/s.key\n";
    let c =
        Config::parse(Path::new("/etc/cdn/config.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let v2 = c.routes.policy("/v2/a/manifests/1").unwrap();
    assert_eq!(v2.naming, Naming::Oci);
    assert_eq!(
        v2.rate_limit.per_client_ip,
        Some(Rate {
            count: 50,
            per: Duration::from_secs(1)
        })
    );
    assert_eq!(
        v2.rate_limit.per_credential.map(|r| r.per),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        c.routes.policy("/x").unwrap().rate_limit,
        RateLimit::default()
    );
    let auth = c.auth.unwrap();
    assert_eq!(auth.realm, "cdn");
    assert_eq!(
        auth.token_keys,
        [TokenKey {
            id: "k1".into(),
            public_key: "/etc/cdn/keys/k1.pub".into()
        }]
    );
    let keys = auth.api_keys.unwrap();
    assert_eq!(
        (keys.document.as_str(), keys.ttl),
        ("/_cdn/entitlements.json", Duration::from_secs(120))
    );
    assert_eq!(keys.negative_ttl, Duration::from_secs(30), "default");
    let trust = c.trust.unwrap();
    assert_eq!(trust.edge_to_shield, Path::new("/etc/cdn/secrets/e.key"));
    assert_eq!(trust.shield_to_origin, Path::new("/run/s.key"));

    // An auth route with no `auth` section.
    let no_auth = GOOD.split("auth:\n  token_keys").next().unwrap().to_owned();
    let err = Config::parse(Path::new("/c.yaml"), &no_auth).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("routes[1].auth"), "{err}");
    assert_eq!(err.position.map(|p| p.0), Some(22), "{err}");
    check(
        "      public_key: keys/k1.pub\n",
        "      public_key: keys/k1.pub\n    - id: k1\n      public_key: keys/k2.pub\n",
        27,
        "auth.token_keys[1]",
        "listed twice",
    );
    check(
        "    ttl: 5m\n",
        "    ttl: 5m\n    rate_limit:\n      per_client_ip: lots\n",
        21,
        "routes[0].rate_limit.per_client_ip",
        "invalid rate",
    );
    check(
        "    ttl: 5m\n",
        "    ttl: 5m\n    scope: maven\n",
        20,
        "routes[0].scope",
        "unknown variant `maven`",
    );
    // The document must be read fresh: under a route that does not cache; and never served to
    // clients: under the internal prefix.
    check(
        "      public_key: keys/k1.pub\n",
        "      public_key: keys/k1.pub\n  api_keys:\n    document: /_cdn/keys.json\n",
        28,
        "auth.api_keys.document",
        "cache: false",
    );
    check(
        "      public_key: keys/k1.pub\n",
        "      public_key: keys/k1.pub\n  api_keys:\n    document: /_cdn/keys.json\n    ttl: 5m\n    max_stale: 1m\n",
        30,
        "auth.api_keys.max_stale",
        "at least `ttl`",
    );
    check(
        "      public_key: keys/k1.pub\n",
        "      public_key: keys/k1.pub\n  api_keys:\n    document: /npm/keys.json\n",
        28,
        "auth.api_keys.document",
        "must be under /_cdn/",
    );
    check(
        "    ttl: 5m\n",
        "    ttl: 5m\n    rate_limit:\n      ipv6_prefix: 0\n",
        21,
        "routes[0].rate_limit.ipv6_prefix",
        "must be 1 to 128",
    );
    check(
        "    auth: true\n",
        "    auth: true\n    forward_authorization: true\n",
        23,
        "routes[1].forward_authorization",
        "never passed on",
    );
}

#[test]
fn package_routes_name_their_source() {
    let text = GOOD
        .replacen(
            "      root: sample\n",
            "      root: sample\n  backends:\n    images:\n      s3:\n        bucket: images\n        endpoint: http://127.0.0.1:9100\n        allow_http: true\n",
            1,
        )
        .replacen(
            "  - prefix: /npm/\n    ttl: 5m\n",
            "  - prefix: /npm/\n    ttl: 5m\n    scope: npm\n    source:\n      prefix: /verdaccio/storage/\n  - prefix: /v2/\n    ttl: 1m\n    scope: oci\n    stale_while_revalidate: 5s\n    source:\n      backend: images\n",
            1,
        )
        .replacen(
            "  - prefix: /\n    ttl: 1h\n",
            "  - prefix: /\n    ttl: 1h\n    source:\n      prefix: files\n",
            1,
        );
    let c = Config::parse(Path::new("/etc/cdn/config.yaml"), &text).unwrap();
    assert!(
        matches!(c.origin.backends.get("images"), Some(Backend::S3(s3)) if s3.bucket == "images")
    );
    let (_, npm) = c.routes.find("/npm/left-pad").unwrap();
    assert_eq!(npm.source.prefix, "verdaccio/storage");
    assert_eq!(npm.source.backend, None);
    assert_eq!(npm.policy.naming, Naming::Npm);
    assert_eq!(
        npm.policy.stale_while_revalidate,
        std::time::Duration::from_secs(60)
    );
    let (_, v2) = c.routes.find("/v2/acme/app/manifests/1").unwrap();
    assert_eq!(v2.source.backend.as_deref(), Some("images"));
    assert_eq!(
        v2.policy.stale_while_revalidate,
        std::time::Duration::from_secs(5)
    );
    let (_, files) = c.routes.find("/other").unwrap();
    assert_eq!(
        files.policy.stale_while_revalidate,
        std::time::Duration::ZERO
    );

    let bad = |from: &str, to: &str| {
        let text = GOOD.replacen(from, to, 1);
        Config::parse(Path::new("/etc/cdn/config.yaml"), &text).unwrap_err()
    };
    let err = bad(
        "    ttl: 5m\n",
        "    ttl: 5m\n    source:\n      backend: nowhere\n",
    );
    assert_eq!(
        err.field.as_deref(),
        Some("routes[0].source.backend"),
        "{err}"
    );
    assert!(err.message.contains("origin.backends"), "{err}");
    assert_eq!(err.position.map(|p| p.0), Some(21), "{err}");
    let err = bad("    ttl: 5m\n", "    ttl: 5m\n    scope: oci\n");
    assert_eq!(err.field.as_deref(), Some("routes[0].scope"), "{err}");
    assert!(err.message.contains("/v2/"), "{err}");
}

/// Regression: the check compared backends by name, so a second name for the bucket let a
/// public route read the registry layout again.
#[test]
fn a_second_name_for_one_store_is_the_same_keys() {
    let text = GOOD
        .replacen(
            "      root: sample\n",
            "      root: sample\n  backends:\n    alias:\n      local:\n        root: ./sample/../sample\n",
            1,
        )
        .replacen(
            "  - prefix: /npm/\n    ttl: 5m\n",
            "  - prefix: /npm/\n    ttl: 5m\n  - prefix: /v2/\n    ttl: 5m\n    auth: true\n    scope: oci\n    source:\n      prefix: registry\n  - prefix: /registry/\n    ttl: 5m\n    source:\n      backend: alias\n",
            1,
        )
        .replacen("  - prefix: /\n    ttl: 1h\n", "  - prefix: /\n    ttl: 1h\n    source:\n      prefix: files\n", 1);
    let err = Config::parse(Path::new("/etc/cdn/config.yaml"), &text).unwrap_err();
    assert!(
        err.message
            .contains("route \"/registry/\" (routes[2]) can read what route \"/v2/\" (routes[1])"),
        "{err}"
    );
}
