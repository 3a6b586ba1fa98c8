//! The caching proxy both `edge-pop` and `shield` run, on Pingora, and the tier as a value:
//! `ProxyTier::build` opens its cache and binds its listeners (port 0 allowed), `listen` says
//! where, and it then runs as a process (until a signal) or in-process (until stopped).
//!
//! `impl ProxyHttp` (`phases`) only dispatches each Pingora phase to the module that owns the
//! decision:
//!
//! | phase | module |
//! |---|---|
//! | `request_filter` | `cdn_http::framing` (no body on a read), `admission` (tier secret, method, path, route, then the tier's own `Gate`); request id; `slices` (a GET on a sliced route, assembled from subrequests), `quick` (a fresh memory hit) |
//! | `request_cache_filter`, `cache_key_callback` | `phases`: route says cacheable → storage + lock |
//! | `upstream_peer`, `fail_to_connect` | `upstream` (next peer in order on connect failure) |
//! | `response_cache_filter` | `cacheability` (RFC 9111 + route TTL + upstream Age + stale-if-error; variants bounded) |
//! | `upstream_response_filter`, `response_filter` | `outcome` (what the cache did), `respond` (headers via `cdn_observe::decorate`; an upstream 429 → stale), `packages` (packument invalidation, integrity expected, tarball URLs) |
//! | `upstream_response_body_filter`, `response_body_filter` | `packages` (the shield's digest check; the edge's tarball URLs, hits and misses) |
//! | `fail_to_proxy` | `respond` (the error's status and body, from `cdn_http::HttpError`; JSON on oci routes) |
//! | `logging` | `outcome`, then `cdn_observe::access` (metrics and one access-log line) |
//!
//! A tier with a TLS listener (the edge's HTTPS) serves certificates picked by SNI and reloads
//! them on SIGHUP or when their files change (`tls`).
//!
//! What only one tier does is not here: a binary hands its `Gate` in (the edge's auth).
//! This crate never talks to object storage: its upstream is HTTP.

mod admin;
mod admission;
mod cacheability;
mod outcome;
mod packages;
mod phases;
mod quick;
mod respond;
mod runtime_dir;
mod slices;
mod storage;
mod tier;
mod tls;
mod upstream;

pub use admission::{Asking, Gate, Open, Pass, TierTrust};
pub use pingora::server::ShutdownWatch;
pub use pingora::services::background::BackgroundService;
pub use tier::{tier_trust, ProxyTier, RunningTier, StartError};
pub use tls::{CertError, CertErrorKind, Part};

pub use cdn_config::{Route, RoutePolicy};
/// What a gate sees of a request, and what it refuses with.
pub use cdn_http::{HttpError, Secret, Target};
pub use cdn_observe::Tier;
pub use pingora::http::RequestHeader;

use cdn_config::Config;

/// The whole of a proxy binary's `main`: the command line and config (exit 2 when bad), logs,
/// the tier built by `build` (exit 1 when it cannot start), one line on stdout saying where it
/// listens, then serving until a stop signal.
pub fn main(tier: Tier, build: fn(&Config) -> Result<ProxyTier, StartError>) {
    let config = cdn_config::cli::load_config(tier.name());
    cdn_observe::logging::init(config.log_format);
    let built = match build(&config) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("{}: {e}", tier.name());
            std::process::exit(1);
        }
    };
    cdn_config::cli::announce(tier.name(), &built.listen());
    built.run();
}
