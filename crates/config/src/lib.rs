//! The one configuration file every tier reads (`config.yaml`): loading, validation, the
//! domain types the tiers use, and the command line every binary shares.
//!
//! Reading happens in two stages: `raw` is the file as serde sees it (unknown fields rejected,
//! values such as sizes and durations parsed where they stand, so serde_yaml can say where a bad
//! one is); `validate` then checks what spans fields and builds the types below.
//!
//! This crate is the only one that knows YAML or serde; the types it hands out carry neither.
//! It knows nothing of HTTP, caching or metrics.

pub mod cli;

/// Paths the tiers read for themselves (the entitlement document) and the edge never serves to
/// clients, whatever route covers them.
pub const INTERNAL_PREFIX: &str = "/_cdn/";
mod error;
mod key_spaces;
mod raw;
mod units;
mod validate;

pub use error::ConfigError;
pub use raw::LogFormat;
pub use units::{ByteSize, Rate};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every tier's settings, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file this was read from.
    pub source: PathBuf,
    pub origin: OriginConfig,
    pub shield: ProxyConfig,
    pub edge: ProxyConfig,
    pub routes: Routes,
    pub log_format: LogFormat,
    /// Credentials the edge accepts; `None` when no route needs any.
    pub auth: Option<AuthConfig>,
    /// The secrets that let each tier answer only the tier in front of it; `None`: every
    /// tier answers whoever reaches it (development only).
    pub trust: Option<TrustConfig>,
}

/// What the edge checks credentials against.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub realm: String,
    /// Ed25519 public keys (PEM files) by key id; several during a rotation.
    pub token_keys: Vec<TokenKey>,
    pub api_keys: Option<ApiKeysConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenKey {
    pub id: String,
    pub public_key: PathBuf,
}

/// The entitlement document: where it is and how long a copy is used.
#[derive(Clone, Debug)]
pub struct ApiKeysConfig {
    /// Its canonical path, fetched through the shield; never served to clients.
    pub document: String,
    pub ttl: Duration,
    pub negative_ttl: Duration,
    /// The last document read is trusted this long at most; then API keys are refused.
    pub max_stale: Duration,
}

/// Files holding the secret each tier presents to the one behind it.
#[derive(Clone, Debug)]
pub struct TrustConfig {
    pub edge_to_shield: PathBuf,
    pub shield_to_origin: PathBuf,
}

#[derive(Clone, Debug)]
pub struct OriginConfig {
    pub listen: Listen,
    pub backend: Backend,
    /// More backends, by name, for routes' `source`.
    pub backends: std::collections::BTreeMap<String, Backend>,
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub enum Backend {
    /// A directory, already made absolute against the config file's folder.
    Local {
        root: PathBuf,
    },
    S3(S3Backend),
}

/// An S3-compatible bucket. Credentials are not here: they come from the environment.
#[derive(Clone, Debug)]
pub struct S3Backend {
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub path_style: bool,
    pub allow_http: bool,
    pub prefix: String,
}

/// Where a tier listens: its traffic, its TLS listener if any (the edge's HTTPS), and its
/// admin listener (`/metrics`, `/healthz`, `/readyz`) if any. Port 0 means any free port; a
/// started tier reports the ports it got in the same type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen {
    pub traffic: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.traffic)?;
        if let Some(tls) = self.tls {
            write!(f, ", tls {tls}")?;
        }
        match self.admin {
            Some(admin) => write!(f, ", admin {admin}"),
            None => write!(f, ", no admin"),
        }
    }
}

impl std::str::FromStr for Listen {
    type Err = String;

    /// Reads back what `Display` writes (`127.0.0.1:8080, admin 127.0.0.1:9180`, or with TLS
    /// `127.0.0.1:8080, tls 127.0.0.1:8443, admin 127.0.0.1:9180`).
    fn from_str(s: &str) -> Result<Listen, String> {
        let bad = || format!("not a listen line: {s:?}");
        let mut parts = s.split(", ").map(str::trim);
        let traffic = parts.next().and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        let mut next = parts.next().ok_or_else(bad)?;
        let tls = match next.strip_prefix("tls ") {
            Some(tls) => {
                let tls = tls.parse().map_err(|_| bad())?;
                next = parts.next().ok_or_else(bad)?;
                Some(tls)
            }
            None => None,
        };
        let admin = match next {
            "no admin" => None,
            other => Some(
                other
                    .strip_prefix("admin ")
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(bad)?,
            ),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Listen {
            traffic,
            tls,
            admin,
        })
    }
}

/// TLS on a tier's TLS listener (`Listen::tls`): which certificates it serves and which
/// protocols it offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// One per set of names, in the file's order: a client's SNI picks the one whose own names
    /// cover it, and the first answers a client that sends no name or an unknown one.
    pub certificates: Vec<CertificateFiles>,
    /// ALPN offers `h2` before `http/1.1`; otherwise `http/1.1` only.
    pub http2: bool,
}

/// A certificate and its key, as PEM files (paths already made absolute against the config
/// file's folder). They are read when the tier starts and again on every reload, not when the
/// config is loaded: the one config file is shared by tiers that may not have them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Settings of one caching proxy tier (the shield or the edge).
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub listen: Listen,
    /// TLS on `listen.tls` (the edge only; set exactly when `listen.tls` is).
    pub tls: Option<TlsConfig>,
    /// Keep a request id the client sent (edge only; a shield always keeps its edge's).
    pub trust_request_id: bool,
    /// Where misses go: each object's home by consistent hashing, then the next on the ring.
    pub upstreams: Vec<SocketAddr>,
    pub cache: CacheConfig,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    /// How often each upstream is probed (a probe's timeout is twice this).
    pub health_check: Duration,
    /// How long one write to a client may wait; then the client is dropped.
    pub send_timeout: Duration,
    /// How long a client's connection may stay open with no request in progress.
    pub idle_timeout: Duration,
    /// The slowest a client may read (bytes per second, HTTP/1.1), if set.
    pub min_send_rate: Option<u64>,
    /// Requests that may stream one object while it fills; past it, 503 with Retry-After.
    pub max_waiters: usize,
    pub threads: usize,
    pub grace_period: Duration,
}

#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub memory_bytes: u64,
    pub max_object_bytes: u64,
    pub disk: Option<DiskConfig>,
    /// Most `Vary` variants stored under one object (at least 1).
    pub max_variants: usize,
}

#[derive(Clone, Debug)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub size_bytes: u64,
}

/// What a route says about the objects under its prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePolicy {
    pub ttl: Duration,
    pub cacheable: bool,
    pub auth_required: bool,
    /// Served past freshness for this long when the upstream fails.
    pub stale_if_error: Duration,
    /// The freshness given to responses that state none of their own.
    pub heuristic: Heuristic,
    /// Freshness of a 404 or 410 that states none, so a flood of missing names does not
    /// become one origin request each.
    pub negative_ttl: Duration,
    /// What of the query string is part of the object's name (and forwarded).
    pub query: QueryPolicy,
    /// Methods other than GET and HEAD (POST, PUT, PATCH, DELETE, others but CONNECT and
    /// TRACE) pass through to the upstream, uncached; one that succeeds invalidates the
    /// stored copies of its target.
    pub pass_writes: bool,
    /// What the paths under the route name: for the scopes of credentials, and for how
    /// origin-adapter reads them.
    pub naming: Naming,
    /// Served past freshness for this long while one request refreshes the copy.
    pub stale_while_revalidate: Duration,
    /// Requests allowed at the edge per client address and per credential.
    pub rate_limit: RateLimit,
    /// Objects are fetched and cached as slices of this many bytes, if set.
    pub slice: Option<u64>,
    /// The edge passes a client's `Authorization` on upstream (a route without `auth`, for an
    /// origin that reads it); otherwise it is dropped at the edge.
    pub forward_authorization: bool,
}

/// How a route's paths name what they hold: as credentials' scopes name it, and as
/// origin-adapter finds it in storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Naming {
    /// A plain path (`path:/private/*`); the object key is the path.
    #[default]
    Path,
    /// An npm package (`npm:@acme/*`), its tarballs included: the npm registry API, read
    /// from Verdaccio's storage layout.
    Npm,
    /// A Docker/OCI repository (`oci:acme/*`), under `/v2/`: the registry API v2, read from
    /// registry:2's storage layout.
    Oci,
}

/// Where origin-adapter reads a route's objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    /// A name in `origin.backends`; `None`: `origin.backend`.
    pub backend: Option<String>,
    /// Key prefix in that backend (no leading or trailing `/`): the served tree, Verdaccio's
    /// storage folder or registry:2's root directory.
    pub prefix: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_client_ip: Option<Rate>,
    pub per_credential: Option<Rate>,
    /// IPv6 clients are counted by this many leading bits of their address (1 to 128).
    pub ipv6_prefix: u8,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_client_ip: None,
            per_credential: None,
            ipv6_prefix: 64,
        }
    }
}

/// Heuristic freshness (RFC 9111 §4.2.2): what a route gives a response that states no
/// freshness of its own, if its status is cacheable by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Heuristic {
    /// The route's `ttl` (`negative_ttl` for 404 and 410): the operator knows the objects.
    #[default]
    Ttl,
    /// A tenth of the time since its `Last-Modified`, at most `ttl`; nothing without one.
    LastModified,
    /// None: such responses are not stored.
    None,
}

/// Which query parameters name an object: the others are neither in the cache key nor
/// forwarded, so a query can neither split the cache nor flush it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum QueryPolicy {
    /// The path alone names the object (the default: objects are files).
    #[default]
    Ignore,
    /// The whole query is kept.
    Keep,
    /// Only these parameters are kept.
    Only(Vec<String>),
}

impl QueryPolicy {
    /// Whether a parameter of this (decoded) name is kept.
    pub fn keeps(&self, name: &str) -> bool {
        match self {
            QueryPolicy::Ignore => false,
            QueryPolicy::Keep => true,
            QueryPolicy::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Route {
    pub prefix: String,
    pub policy: RoutePolicy,
    pub source: Source,
}

impl Route {
    /// What a path this route covers names below it: the canonical path after the prefix
    /// (`left-pad/-/left-pad-1.0.0.tgz` of `/npm/left-pad/-/left-pad-1.0.0.tgz`). The one
    /// reading every tier makes: the edge's scopes, the shield's digests and origin-adapter's
    /// layouts all start from it.
    pub fn rest<'a>(&self, path: &'a str) -> &'a str {
        path.strip_prefix(self.prefix.as_str()).unwrap_or_default()
    }
}

/// Routes, longest prefix first, so the first match is the most specific.
#[derive(Clone, Debug)]
pub struct Routes(Vec<Route>);

impl Routes {
    /// The policy for a request path, or `None` when no route covers it.
    pub fn policy(&self, path: &str) -> Option<&RoutePolicy> {
        self.find(path).map(|(_, r)| &r.policy)
    }

    /// The route covering a request path and its place in `iter`, or `None`.
    pub fn find(&self, path: &str) -> Option<(usize, &Route)> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, r)| path.starts_with(r.prefix.as_str()))
    }

    /// Every route, most specific first.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            position: None,
            field: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Validates `text` as if read from `path` (relative paths in it resolve against its folder).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file: raw::File =
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
                .map_err(|e| error::from_yaml(path, text, e))?;
        validate::validate(path, text, file)
    }

    /// One line saying what this config starts, for `--check`.
    pub fn summary(&self) -> String {
        let backend = match &self.origin.backend {
            Backend::Local { root } => format!("local {}", root.display()),
            Backend::S3(s3) => format!(
                "s3 bucket {} at {}",
                s3.bucket,
                s3.endpoint.as_deref().unwrap_or("AWS")
            ),
        };
        let edge_tls = match (self.edge.listen.tls, &self.edge.tls) {
            (Some(addr), Some(tls)) => format!(
                " + tls {addr} ({} certificate(s){})",
                tls.certificates.len(),
                if tls.http2 { ", h2" } else { "" }
            ),
            _ => String::new(),
        };
        format!(
            "{}: ok: origin-adapter {} ({backend}); shield {} -> {}, memory {}; edge {}{edge_tls} -> {} shield(s), memory {}; {} route(s); admin: origin {}, shield {}, edge {}",
            self.source.display(),
            self.origin.listen.traffic,
            self.shield.listen.traffic,
            self.shield
                .upstreams
                .first()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
            ByteSize(self.shield.cache.memory_bytes),
            self.edge.listen.traffic,
            self.edge.upstreams.len(),
            ByteSize(self.edge.cache.memory_bytes),
            self.routes.len(),
            admin(self.origin.listen.admin),
            admin(self.shield.listen.admin),
            admin(self.edge.listen.admin),
        )
    }
}

fn admin(listen: Option<SocketAddr>) -> String {
    listen.map_or_else(|| "none".to_owned(), |a| a.to_string())
}

#[cfg(test)]
mod tests;
