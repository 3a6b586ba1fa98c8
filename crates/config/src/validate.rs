//! The second stage of loading: what spans fields is checked, relative paths are resolved, and
//! the file as serde read it becomes the domain types the tiers use.

use crate::error::{locate, ConfigError};
use crate::key_spaces;
use crate::units::ByteSize;
use crate::{
    raw, ApiKeysConfig, AuthConfig, Backend, CacheConfig, CertificateFiles, Config, DiskConfig,
    Heuristic, Listen, Naming, OriginConfig, ProxyConfig, QueryPolicy, RateLimit, Route,
    RoutePolicy, Routes, S3Backend, TlsConfig, TokenKey, TrustConfig,
};
use std::path::Path;

/// Largest cached object when the config does not say.
const DEFAULT_MAX_OBJECT: u64 = 128 << 20;
/// Smallest disk tier: eight segments of the smallest size.
const MIN_DISK: u64 = 8 << 20;

pub(crate) fn validate(path: &Path, text: &str, file: raw::File) -> Result<Config, ConfigError> {
    let fail = |field: &str, message: String| ConfigError {
        file: path.to_owned(),
        position: locate(text, field),
        field: Some(field.to_owned()),
        message,
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let absolute = |p: &Path| {
        if p.is_absolute() {
            p.to_owned()
        } else {
            base.join(p)
        }
    };

    let backend_at = |raw: raw::Backend, field: &str| -> Result<Backend, ConfigError> {
        Ok(match raw {
            raw::Backend::Local { root } => Backend::Local {
                root: absolute(&root),
            },
            raw::Backend::S3(s3) => {
                if s3.bucket.is_empty() {
                    return Err(fail(
                        &format!("{field}.s3.bucket"),
                        "must not be empty".into(),
                    ));
                }
                if let Some(endpoint) = &s3.endpoint {
                    let http = endpoint.starts_with("http://");
                    if !http && !endpoint.starts_with("https://") {
                        return Err(fail(
                            &format!("{field}.s3.endpoint"),
                            format!("{endpoint:?} must start with http:// or https://"),
                        ));
                    }
                    if http && !s3.allow_http {
                        return Err(fail(
                            &format!("{field}.s3.endpoint"),
                            "a plain http:// endpoint needs `allow_http: true`".into(),
                        ));
                    }
                }
                Backend::S3(S3Backend {
                    endpoint: s3.endpoint,
                    bucket: s3.bucket,
                    region: s3.region,
                    path_style: s3.path_style,
                    allow_http: s3.allow_http,
                    prefix: s3.prefix.trim_matches('/').to_owned(),
                })
            }
        })
    };
    let backend = backend_at(file.origin.backend, "origin.backend")?;
    let mut backends = std::collections::BTreeMap::new();
    for (name, raw::NamedBackend(b)) in file.origin.backends {
        let built = backend_at(b, &format!("origin.backends.{name}"))?;
        backends.insert(name, built);
    }
    if file.origin.timeout.0.is_zero() {
        return Err(fail("origin.timeout", "must be more than zero".into()));
    }
    let origin = OriginConfig {
        listen: Listen {
            traffic: file.origin.listen,
            tls: None,
            admin: file.origin.admin,
        },
        backend,
        backends,
        timeout: file.origin.timeout.0,
    };

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cache = |tier: &str, c: raw::Cache| -> Result<CacheConfig, ConfigError> {
        let disk = c.disk.map(|d| DiskConfig {
            path: absolute(&d.path),
            size_bytes: d.size.0,
        });
        if c.memory.0 == 0 && disk.is_none() {
            return Err(fail(
                &format!("{tier}.cache.memory"),
                "is 0 and no disk tier is configured: nothing would be cached".into(),
            ));
        }
        if let Some(d) = &disk {
            if d.size_bytes < MIN_DISK {
                return Err(fail(
                    &format!("{tier}.cache.disk.size"),
                    format!("must be at least {}", ByteSize(MIN_DISK)),
                ));
            }
        }
        // The largest object must fit the tier that will hold it: half the disk, or the memory.
        let room = disk.as_ref().map_or(c.memory.0, |d| d.size_bytes / 2);
        let max_object = c
            .max_object
            .unwrap_or(ByteSize(DEFAULT_MAX_OBJECT.min(room)));
        if max_object.0 > room {
            let holder = if disk.is_some() {
                "half the disk tier"
            } else {
                "the memory tier"
            };
            return Err(fail(
                &format!("{tier}.cache.max_object"),
                format!("{max_object} is larger than {holder} ({})", ByteSize(room)),
            ));
        }
        if c.max_variants == 0 {
            return Err(fail(
                &format!("{tier}.cache.max_variants"),
                "must be at least 1".into(),
            ));
        }
        Ok(CacheConfig {
            memory_bytes: c.memory.0,
            max_object_bytes: max_object.0,
            disk,
            max_variants: c.max_variants,
        })
    };
    let threads = |tier: &str, t: Option<usize>| match t {
        Some(0) => Err(fail(
            &format!("{tier}.threads"),
            "must be at least 1".into(),
        )),
        Some(n) => Ok(n),
        None => Ok(cores),
    };

    let s = file.shield;
    for (field, every) in [
        ("shield.health_check", s.health_check.0),
        ("edge.health_check", file.edge.health_check.0),
        ("shield.send_timeout", s.send_timeout.0),
        ("edge.send_timeout", file.edge.send_timeout.0),
        ("shield.idle_timeout", s.idle_timeout.0),
        ("edge.idle_timeout", file.edge.idle_timeout.0),
    ] {
        if every.is_zero() {
            return Err(fail(field, "must be more than 0".into()));
        }
    }
    let shield = ProxyConfig {
        listen: Listen {
            traffic: s.listen,
            tls: None,
            admin: s.admin,
        },
        tls: None,
        trust_request_id: true,
        upstreams: vec![s.origin],
        cache: cache("shield", s.cache)?,
        connect_timeout: s.connect_timeout.0,
        upstream_timeout: s.upstream_timeout.0,
        health_check: s.health_check.0,
        send_timeout: s.send_timeout.0,
        idle_timeout: s.idle_timeout.0,
        min_send_rate: s.min_send_rate.map(|r| r.0),
        max_waiters: s.max_waiters,
        threads: threads("shield", s.threads)?,
        grace_period: s.grace_period.0,
    };
    let e = file.edge;
    if e.shields.is_empty() {
        return Err(fail("edge.shields", "list at least one shield".into()));
    }
    let edge_tls = match e.tls {
        None => None,
        Some(tls) => {
            if tls.certificates.is_empty() {
                return Err(fail(
                    "edge.tls.certificates",
                    "list at least one certificate (`cert` and `key` files)".into(),
                ));
            }
            let certificates = tls
                .certificates
                .into_iter()
                .map(|c| CertificateFiles {
                    cert: absolute(&c.cert),
                    key: absolute(&c.key),
                })
                .collect();
            Some((
                tls.listen,
                TlsConfig {
                    certificates,
                    http2: tls.http2,
                },
            ))
        }
    };
    let (edge_tls_listen, edge_tls) = edge_tls.unzip();
    let edge = ProxyConfig {
        listen: Listen {
            traffic: e.listen,
            tls: edge_tls_listen,
            admin: e.admin,
        },
        tls: edge_tls,
        trust_request_id: e.trust_request_id,
        upstreams: e.shields,
        cache: cache("edge", e.cache)?,
        connect_timeout: e.connect_timeout.0,
        upstream_timeout: e.upstream_timeout.0,
        health_check: e.health_check.0,
        send_timeout: e.send_timeout.0,
        idle_timeout: e.idle_timeout.0,
        min_send_rate: e.min_send_rate.map(|r| r.0),
        max_waiters: e.max_waiters,
        threads: threads("edge", e.threads)?,
        grace_period: e.grace_period.0,
    };

    let mut listeners = vec![
        ("origin.listen", origin.listen.traffic),
        ("shield.listen", shield.listen.traffic),
        ("edge.listen", edge.listen.traffic),
    ];
    listeners.extend(edge.listen.tls.map(|a| ("edge.tls.listen", a)));
    for (field, admin) in [
        ("origin.admin", origin.listen.admin),
        ("shield.admin", shield.listen.admin),
        ("edge.admin", edge.listen.admin),
    ] {
        listeners.extend(admin.map(|a| (field, a)));
    }
    for (i, (field, addr)) in listeners.iter().enumerate() {
        if addr.port() == 0 {
            continue;
        }
        if let Some((other, _)) = listeners[..i].iter().find(|(_, a)| a == addr) {
            return Err(fail(field, format!("{addr} is already used by `{other}`")));
        }
    }

    if file.routes.is_empty() {
        return Err(fail(
            "routes",
            "list at least one route (`prefix: /` covers everything)".into(),
        ));
    }
    let mut routes: Vec<Route> = Vec::with_capacity(file.routes.len());
    for (i, r) in file.routes.into_iter().enumerate() {
        if routes.iter().any(|seen| seen.prefix == r.prefix.0) {
            return Err(fail(
                &format!("routes[{i}].prefix"),
                format!("{:?} is listed twice", r.prefix.0),
            ));
        }
        if r.auth && file.auth.is_none() {
            return Err(fail(
                &format!("routes[{i}].auth"),
                "needs an `auth` section saying which credentials are accepted".into(),
            ));
        }
        if let Some(name) = &r.source.backend {
            if !origin.backends.contains_key(name) {
                return Err(fail(
                    &format!("routes[{i}].source.backend"),
                    format!("{name:?} is not listed in origin.backends"),
                ));
            }
        }
        let naming = match r.scope {
            raw::Naming::Path => Naming::Path,
            raw::Naming::Npm => Naming::Npm,
            raw::Naming::Oci => Naming::Oci,
        };
        if naming == Naming::Oci && r.prefix.0 != "/v2/" {
            return Err(fail(
                &format!("routes[{i}].scope"),
                "an `oci` route must have the prefix /v2/, where registry clients look".into(),
            ));
        }
        if r.slice.is_some_and(|s| s.0 < 64 << 10) {
            return Err(fail(
                &format!("routes[{i}].slice"),
                "must be at least 64KiB".into(),
            ));
        }
        if r.slice.is_some() && !matches!(r.scope, raw::Naming::Path) {
            return Err(fail(
                &format!("routes[{i}].slice"),
                "only on `path` routes: npm and oci bodies are checked whole against their digest"
                    .into(),
            ));
        }
        if r.forward_authorization && r.auth {
            return Err(fail(
                &format!("routes[{i}].forward_authorization"),
                "an `auth` route's credentials are the edge's to check, never passed on".into(),
            ));
        }
        let rate_limit = match r.rate_limit {
            None => RateLimit::default(),
            Some(l) if !(1..=128).contains(&l.ipv6_prefix) => {
                return Err(fail(
                    &format!("routes[{i}].rate_limit.ipv6_prefix"),
                    format!("{} must be 1 to 128 (bits)", l.ipv6_prefix),
                ));
            }
            Some(l) => RateLimit {
                per_client_ip: l.per_client_ip,
                per_credential: l.per_credential,
                ipv6_prefix: l.ipv6_prefix,
            },
        };
        let stale_while_revalidate = match (r.stale_while_revalidate, naming) {
            (Some(d), _) => d.0,
            (None, Naming::Path) => std::time::Duration::ZERO,
            (None, Naming::Npm | Naming::Oci) => std::time::Duration::from_secs(60),
        };
        routes.push(Route {
            prefix: r.prefix.0,
            source: crate::Source {
                backend: r.source.backend,
                prefix: r.source.prefix.trim_matches('/').to_owned(),
            },
            policy: RoutePolicy {
                ttl: r.ttl.0,
                cacheable: r.cache,
                auth_required: r.auth,
                stale_if_error: r.stale_if_error.0,
                heuristic: match r.heuristic {
                    raw::Heuristic::Ttl => Heuristic::Ttl,
                    raw::Heuristic::LastModified => Heuristic::LastModified,
                    raw::Heuristic::None => Heuristic::None,
                },
                negative_ttl: r.negative_ttl.0,
                query: match r.query {
                    raw::Query::Ignore => QueryPolicy::Ignore,
                    raw::Query::Keep => QueryPolicy::Keep,
                    raw::Query::Only(names) => QueryPolicy::Only(names),
                },
                pass_writes: r.pass_writes,
                naming,
                stale_while_revalidate,
                rate_limit,
                slice: r.slice.map(|s| s.0),
                forward_authorization: r.forward_authorization,
            },
        });
    }
    let reads: Vec<_> = routes
        .iter()
        .map(|r| key_spaces::Reads::of(r, &origin))
        .collect();
    if let Some(o) = key_spaces::first_overlap(&reads) {
        let (reader, owner) = (&routes[o.reader], &routes[o.owner]);
        let keys = o.keys.strip_prefix("file:").unwrap_or(&o.keys);
        return Err(fail(
            &format!("routes[{}].prefix", o.reader),
            format!(
                "route {:?} (routes[{}]) can read what route {:?} (routes[{}]) serves: its path {:?} reaches the keys under {keys}; give one of them a `source` (prefix or backend) of its own",
                reader.prefix, o.reader, owner.prefix, o.owner, o.path
            ),
        ));
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    let routes = Routes(routes);

    let auth = match file.auth {
        None => None,
        Some(a) => {
            let mut token_keys: Vec<TokenKey> = Vec::with_capacity(a.token_keys.len());
            for (i, k) in a.token_keys.into_iter().enumerate() {
                let field = format!("auth.token_keys[{i}]");
                if k.id.is_empty() || k.id.chars().any(|c| c.is_control() || c == '"') {
                    return Err(fail(&field, "must be a non-empty plain name".into()));
                }
                if token_keys.iter().any(|seen| seen.id == k.id) {
                    return Err(fail(&field, format!("{:?} is listed twice", k.id)));
                }
                token_keys.push(TokenKey {
                    id: k.id,
                    public_key: absolute(&k.public_key),
                });
            }
            let api_keys = match a.api_keys {
                None => None,
                Some(k) => {
                    let document = k.document.0;
                    if !document.starts_with(crate::INTERNAL_PREFIX) {
                        return Err(fail(
                            "auth.api_keys.document",
                            format!("{document:?} must be under {} (the edge never serves that prefix to clients)", crate::INTERNAL_PREFIX),
                        ));
                    }
                    if k.ttl.0.is_zero() || k.negative_ttl.0.is_zero() {
                        return Err(fail("auth.api_keys.ttl", "must be more than zero".into()));
                    }
                    if k.max_stale.0 < k.ttl.0 {
                        return Err(fail(
                            "auth.api_keys.max_stale",
                            "must be at least `ttl`, the time between two reads".into(),
                        ));
                    }
                    let covered = routes.policy(&document);
                    if !covered.is_some_and(|p| !p.cacheable && !p.auth_required) {
                        return Err(fail(
                            "auth.api_keys.document",
                            format!("{document:?} must be under a route with `cache: false` and no `auth`, so every fetch reads the current document"),
                        ));
                    }
                    Some(ApiKeysConfig {
                        document,
                        ttl: k.ttl.0,
                        negative_ttl: k.negative_ttl.0,
                        max_stale: k.max_stale.0,
                    })
                }
            };
            if token_keys.is_empty() && api_keys.is_none() {
                return Err(fail(
                    "auth",
                    "list `token_keys`, `api_keys`, or both".into(),
                ));
            }
            Some(AuthConfig {
                realm: a.realm,
                token_keys,
                api_keys,
            })
        }
    };
    let trust = file.trust.map(|t| TrustConfig {
        edge_to_shield: absolute(&t.edge_to_shield),
        shield_to_origin: absolute(&t.shield_to_origin),
    });

    Ok(Config {
        source: path.to_owned(),
        origin,
        shield,
        edge,
        routes,
        log_format: file.logging.format,
        auth,
        trust,
    })
}
