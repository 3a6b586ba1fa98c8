//! edge-pop: the tier nearest the users. The caching proxy of `cdn_proxy`, with what only the
//! edge does: it checks, on every request, hit or miss, that the caller may have what the route
//! holds (`auth`). Its upstreams are shields, never the origin.

mod auth;

pub use auth::EdgeGate;

use cdn_config::Config;
use cdn_proxy::{ProxyTier, StartError, Tier};

/// The edge described by `config`, its cache open and its listeners bound.
pub fn build(config: &Config) -> Result<ProxyTier, StartError> {
    ProxyTier::build(Tier::Edge, &config.edge, &config.routes, EdgeGate)
}
