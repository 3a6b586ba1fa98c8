//! edge-pop: the tier nearest the users. The caching proxy of `cdn_proxy`, with what only the
//! edge does: on every request, hit or miss, before the cache is looked at, it applies the
//! route's rate limits and checks that the caller may have what the path names (`auth`, with
//! `cdn_auth`); it keeps the entitlement document current (`entitlements`). Its upstreams are
//! shields, never the origin, and it presents the edges' secret to them.

mod auth;
mod entitlements;
mod limits;
mod names;

pub use auth::EdgeGate;

use cdn_auth::{Authority, KeySource, Verifier};
use cdn_config::Config;
use cdn_proxy::{ProxyTier, StartError, Tier};
use std::sync::Arc;

/// The edge described by `config`, its cache open, its keys read and its listeners bound.
pub fn build(config: &Config) -> Result<ProxyTier, StartError> {
    let trust = cdn_proxy::tier_trust(Tier::Edge, config)?;
    let limits = config
        .routes
        .iter()
        .map(|r| limits::RouteLimits::new(&r.policy.rate_limit))
        .collect();
    let mut refresher = None;
    let gate = match &config.auth {
        None => EdgeGate::new(Authority::default(), limits, "cdn".into(), None, None),
        Some(auth) => {
            let mut pems = Vec::with_capacity(auth.token_keys.len());
            for (i, key) in auth.token_keys.iter().enumerate() {
                let pem = std::fs::read(&key.public_key).map_err(|e| {
                    StartError::Config(format!(
                        "auth.token_keys[{i}].public_key: {}: {e}",
                        key.public_key.display()
                    ))
                })?;
                pems.push((key.id.as_str(), pem));
            }
            let tokens = Verifier::new(pems.iter().map(|(id, pem)| (*id, pem.as_slice())))
                .map_err(|e| StartError::Config(format!("auth.token_keys: {e}")))?;
            let (keys, nudge) = match &auth.api_keys {
                None => (None, None),
                Some(api_keys) => {
                    let source = Arc::new(KeySource::new(api_keys.max_stale));
                    let (task, nudge) = entitlements::Refresher::new(
                        source.clone(),
                        api_keys.clone(),
                        config.edge.upstreams.clone(),
                        trust.presents.clone(),
                        config.edge.upstream_timeout,
                    );
                    refresher = Some(task);
                    (Some(source), Some(nudge))
                }
            };
            EdgeGate::new(
                Authority::new(tokens, keys.clone()),
                limits,
                auth.realm.clone(),
                nudge,
                keys,
            )
        }
    };
    let mut tier = ProxyTier::build(Tier::Edge, &config.edge, &config.routes, gate, trust)?;
    if let Some(task) = refresher {
        tier.add_background("entitlements", task);
    }
    Ok(tier)
}
