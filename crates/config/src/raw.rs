//! The config file as serde reads it: documented fields, defaults, unknown fields rejected.
//! `super::validate` turns this into the domain types the tiers use; nothing else sees it.

use super::units::{ByteSize, Dur, Prefix, Rate};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub origin: Origin,
    pub shield: Shield,
    pub edge: Edge,
    pub routes: Vec<Route>,
    #[serde(default)]
    pub logging: Logging,
    /// Credentials the edge accepts on `auth: true` routes.
    pub auth: Option<Auth>,
    /// Secrets each tier presents to the one behind it.
    pub trust: Option<Trust>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Auth {
    /// Named in the challenge of a 401.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Public keys (Ed25519, PEM) that signed tokens are checked against, by key id.
    #[serde(default)]
    pub token_keys: Vec<TokenKey>,
    /// API keys, checked against the entitlement document in the origin bucket.
    pub api_keys: Option<ApiKeys>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenKey {
    pub id: String,
    pub public_key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiKeys {
    /// Path of the document, fetched through the shield.
    pub document: Prefix,
    /// How long a fetched document is used before it is fetched again: the longest a revoked
    /// key keeps working.
    #[serde(default = "default_entitlements_ttl")]
    pub ttl: Dur,
    /// How soon a key the document does not list may cause it to be fetched again (and how
    /// soon a failed fetch is retried).
    #[serde(default = "default_entitlements_negative_ttl")]
    pub negative_ttl: Dur,
    /// How long the last document read stays in force while no newer one can be read (the
    /// shields are down, or the document is broken): past it, API keys are refused (a revoked
    /// key works at most this long) and the edge's `/readyz` says degraded.
    #[serde(default = "default_entitlements_max_stale")]
    pub max_stale: Dur,
}

fn default_entitlements_max_stale() -> Dur {
    Dur(std::time::Duration::from_secs(3600))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Trust {
    /// File holding the secret the edges present to the shield.
    pub edge_to_shield: PathBuf,
    /// File holding the secret the shield presents to origin-adapter.
    pub shield_to_origin: PathBuf,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Logging {
    /// `text` (human-readable, the default) or `json` (one object per line).
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Origin {
    /// Address the origin-adapter listens on.
    pub listen: SocketAddr,
    /// Admin listener: `/metrics`, `/healthz`, `/readyz`. Omit to serve none.
    pub admin: Option<SocketAddr>,
    /// Where objects live: `local: {root}` or `s3: {...}`.
    #[serde(with = "serde_yaml::with::singleton_map")]
    pub backend: Backend,
    /// More backends, by name, for routes whose `source` names one.
    #[serde(default)]
    pub backends: std::collections::BTreeMap<String, NamedBackend>,
    /// How long one backend operation may take before the client gets a 504.
    #[serde(default = "default_origin_timeout")]
    pub timeout: Dur,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub(super) enum Backend {
    /// A directory on this machine (relative paths are relative to the config file).
    Local { root: PathBuf },
    /// An S3-compatible bucket. Credentials come from the environment only.
    S3(S3),
}

/// A backend in `origin.backends` (serde's singleton map cannot sit inside a map's values).
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct NamedBackend(#[serde(with = "serde_yaml::with::singleton_map")] pub Backend);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct S3 {
    /// Endpoint URL; omit for AWS itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), as most self-hosted servers want.
    #[serde(default = "yes")]
    pub path_style: bool,
    /// Allow a plain-HTTP endpoint.
    #[serde(default)]
    pub allow_http: bool,
    /// Key prefix inside the bucket under which the served tree lives.
    #[serde(default)]
    pub prefix: String,
}

// Shield and Edge repeat their common fields: serde cannot combine `flatten` with
// `deny_unknown_fields`, and rejecting unknown fields matters more than the repetition.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Shield {
    pub listen: SocketAddr,
    /// Admin listener: `/metrics`, `/healthz`, `/readyz`. Omit to serve none.
    pub admin: Option<SocketAddr>,
    /// The origin-adapter this shield fetches misses from.
    pub origin: SocketAddr,
    pub cache: Cache,
    /// Time to connect to the upstream.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Time to wait for each read from the upstream. A request that got no response header
    /// within it tries the next upstream (GET and HEAD), as one that cannot connect does.
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout: Dur,
    /// How often each upstream is probed; a probe must answer within twice this. An upstream
    /// that fails a probe or a request is skipped until it answers a probe again.
    #[serde(default = "default_health_check")]
    pub health_check: Dur,
    /// How long one write to a client may wait for it to read; past it the client is dropped.
    /// A fill never waits for its clients: it goes on at the upstream's pace into the cache.
    #[serde(default = "default_send_timeout")]
    pub send_timeout: Dur,
    /// How long a client's connection may stay open with no request in progress (HTTP/1.1
    /// keep-alive between requests; HTTP/2 with no stream open); then it is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Dur,
    /// The slowest a client may read, in bytes per second (HTTP/1.1): each write may then take
    /// its length over this rate (at least a second) instead of `send_timeout`. Omit: none.
    pub min_send_rate: Option<ByteSize>,
    /// Requests that may stream one object while it fills; past it, 503 with Retry-After.
    #[serde(default = "default_max_waiters")]
    pub max_waiters: usize,
    /// Worker threads; default: one per core.
    pub threads: Option<usize>,
    /// How long a stop waits for requests in flight.
    #[serde(default = "default_grace")]
    pub grace_period: Dur,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Edge {
    pub listen: SocketAddr,
    /// Admin listener: `/metrics`, `/healthz`, `/readyz`. Omit to serve none.
    pub admin: Option<SocketAddr>,
    /// A TLS listener (HTTPS) besides the plain one. Omit to serve plain HTTP only.
    pub tls: Option<Tls>,
    /// Keep an `X-Request-Id` that clients send (only behind a load balancer that sets it).
    #[serde(default)]
    pub trust_request_id: bool,
    /// Shields this edge fetches misses from. Each object has a home shield, picked by
    /// consistent hashing of its cache key (every edge listing the same shields picks the
    /// same); when it is down, the next on the ring.
    pub shields: Vec<SocketAddr>,
    pub cache: Cache,
    /// Time to connect to the upstream.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Time to wait for each read from the upstream. A request that got no response header
    /// within it tries the next upstream (GET and HEAD), as one that cannot connect does.
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout: Dur,
    /// How often each upstream is probed; a probe must answer within twice this. An upstream
    /// that fails a probe or a request is skipped until it answers a probe again.
    #[serde(default = "default_health_check")]
    pub health_check: Dur,
    /// How long one write to a client may wait for it to read; past it the client is dropped.
    /// A fill never waits for its clients: it goes on at the upstream's pace into the cache.
    #[serde(default = "default_send_timeout")]
    pub send_timeout: Dur,
    /// How long a client's connection may stay open with no request in progress (HTTP/1.1
    /// keep-alive between requests; HTTP/2 with no stream open); then it is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Dur,
    /// The slowest a client may read, in bytes per second (HTTP/1.1): each write may then take
    /// its length over this rate (at least a second) instead of `send_timeout`. Omit: none.
    pub min_send_rate: Option<ByteSize>,
    /// Requests that may stream one object while it fills; past it, 503 with Retry-After.
    #[serde(default = "default_max_waiters")]
    pub max_waiters: usize,
    /// Worker threads; default: one per core.
    pub threads: Option<usize>,
    /// How long a stop waits for requests in flight.
    #[serde(default = "default_grace")]
    pub grace_period: Dur,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Tls {
    /// Address the TLS listener binds.
    pub listen: SocketAddr,
    /// The certificates served, one per set of names. A client's SNI picks the certificate whose
    /// own names (subjectAltName) cover it; the first is served to a client that sends no name,
    /// or one no certificate covers. Reloaded on SIGHUP and when a file changes.
    pub certificates: Vec<Certificate>,
    /// Offer HTTP/2 by ALPN besides HTTP/1.1; false: HTTP/1.1 only.
    #[serde(default = "yes")]
    pub http2: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Certificate {
    /// PEM file: the certificate, then any intermediates (leaf first).
    pub cert: PathBuf,
    /// PEM file: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Cache {
    /// Bytes the memory tier may hold.
    pub memory: ByteSize,
    /// Largest object the cache stores; larger ones are streamed through uncached.
    /// Default: 128MiB, or the memory size if that is smaller.
    pub max_object: Option<ByteSize>,
    /// Disk tier: where and how much.
    pub disk: Option<Disk>,
    /// Most `Vary` variants stored under one object; past it, a new variant is served
    /// uncached (and counted), so request fields a client invents cannot fill the cache.
    #[serde(default = "default_max_variants")]
    pub max_variants: usize,
}

fn default_max_variants() -> usize {
    16
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Disk {
    pub path: PathBuf,
    pub size: ByteSize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Route {
    pub prefix: Prefix,
    /// Freshness lifetime given to objects under this prefix.
    pub ttl: Dur,
    /// Whether the tiers may cache objects under this prefix at all.
    #[serde(default = "yes")]
    pub cache: bool,
    /// Whether the edge requires a credential for this prefix.
    #[serde(default)]
    pub auth: bool,
    /// What the paths name, for scopes: `path` (the default), `npm` or `oci`.
    #[serde(default)]
    pub scope: Naming,
    /// Requests allowed per client address and per credential, at the edge.
    pub rate_limit: Option<RateLimit>,
    /// Where origin-adapter reads the route's objects: a backend of `origin.backends` (default
    /// `origin.backend`) and a key prefix in it.
    #[serde(default)]
    pub source: Source,
    /// How long past its freshness a copy is served while one request refreshes it in the
    /// background. Default: 1m on npm and oci routes, none on others.
    pub stale_while_revalidate: Option<Dur>,
    /// How long past its freshness an object may still be served when the upstream fails.
    #[serde(default = "default_stale_if_error")]
    pub stale_if_error: Dur,
    /// Freshness for responses that state none: `ttl`, `last_modified` or `none`.
    #[serde(default)]
    pub heuristic: Heuristic,
    /// Freshness of a 404 or 410 that states none.
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl: Dur,
    /// What of the query string names the object: `ignore` (the default), `keep`, or a list of
    /// parameter names to keep.
    #[serde(default)]
    pub query: Query,
    /// Whether methods other than GET and HEAD (POST, PUT, PATCH, DELETE, others but CONNECT
    /// and TRACE) pass through to the upstream, uncached.
    #[serde(default)]
    pub pass_writes: bool,
    /// Fetch and cache objects as slices of this many bytes (at least 64KiB; slices above a
    /// tier's `max_object` pass through it uncached): a range then moves only the slices it
    /// covers. Omit: whole objects.
    pub slice: Option<ByteSize>,
    /// Whether the edge passes a client's `Authorization` on upstream on this route (when
    /// the route has no `auth` of its own, for an origin that reads it). Default: dropped at
    /// the edge, so a credential goes no further than the tier that checks credentials.
    #[serde(default)]
    pub forward_authorization: bool,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum Heuristic {
    #[default]
    Ttl,
    LastModified,
    None,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Source {
    pub backend: Option<String>,
    #[serde(default)]
    pub prefix: String,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum Naming {
    #[default]
    Path,
    Npm,
    Oci,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RateLimit {
    pub per_client_ip: Option<Rate>,
    pub per_credential: Option<Rate>,
    /// IPv6 clients are counted by this many leading bits of their address (one site's
    /// network, which hands its hosts whole /64s); IPv4 by the whole address.
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
}

fn default_ipv6_prefix() -> u8 {
    64
}

/// What of the query string names an object.
#[derive(Deserialize, Default)]
#[serde(try_from = "QueryText")]
pub(super) enum Query {
    #[default]
    Ignore,
    Keep,
    Only(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum QueryText {
    Word(String),
    Names(Vec<String>),
}

impl TryFrom<QueryText> for Query {
    type Error = String;

    fn try_from(text: QueryText) -> Result<Query, String> {
        match text {
            QueryText::Word(word) if word == "ignore" => Ok(Query::Ignore),
            QueryText::Word(word) if word == "keep" => Ok(Query::Keep),
            QueryText::Word(word) => Err(format!(
                "query must be `ignore`, `keep` or a list of parameter names, not {word:?}"
            )),
            QueryText::Names(names) => Ok(Query::Only(names)),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_stale_if_error() -> Dur {
    Dur(std::time::Duration::from_secs(24 * 3600))
}
fn default_negative_ttl() -> Dur {
    Dur(std::time::Duration::from_secs(10))
}
fn default_origin_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(10))
}
fn default_connect_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(2))
}
fn default_upstream_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(15))
}
fn default_max_waiters() -> usize {
    4096
}
fn default_idle_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(60))
}

fn default_send_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}
fn default_health_check() -> Dur {
    Dur(std::time::Duration::from_millis(250))
}
fn default_realm() -> String {
    "cdn".into()
}
fn default_entitlements_ttl() -> Dur {
    Dur(std::time::Duration::from_secs(300))
}
fn default_entitlements_negative_ttl() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}
fn default_grace() -> Dur {
    Dur(std::time::Duration::from_secs(5))
}
