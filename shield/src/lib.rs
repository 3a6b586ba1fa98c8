//! shield: the regional tier between the edges and the origin. The caching proxy of
//! `cdn_proxy`, where concurrent misses for one object collapse into one origin fetch that the
//! waiters stream as it fills. It answers only its edges (the secret of `trust.edge_to_shield`)
//! and otherwise checks nothing beyond what every tier checks (`Open`): the edges have
//! checked who may have what.

use cdn_config::Config;
use cdn_proxy::{Open, ProxyTier, StartError, Tier};

/// The shield described by `config`, its cache open and its listeners bound.
pub fn build(config: &Config) -> Result<ProxyTier, StartError> {
    let trust = cdn_proxy::tier_trust(Tier::Shield, config)?;
    ProxyTier::build(Tier::Shield, &config.shield, &config.routes, Open, trust)
}
