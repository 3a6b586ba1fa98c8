//! The request-filter phase: what a tier refuses before looking at its cache. Every tier
//! refuses methods other than GET/HEAD, unsafe paths and paths no route covers; then the
//! tier's own `Gate` has its say (the edge's: auth).

use cdn_config::{RoutePolicy, Routes};
use cdn_http::{object_key, HttpError};
use pingora::http::RequestHeader;

/// What one tier checks of a request beyond what every tier checks, given the route's policy.
/// It runs on every request, hit or miss, before the cache is looked at.
pub trait Gate: Send + Sync + 'static {
    fn admit(&self, req: &RequestHeader, policy: &RoutePolicy) -> Result<(), HttpError>;
}

/// A gate that lets every request through (a shield trusts the edges in front of it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Open;

impl Gate for Open {
    fn admit(&self, _req: &RequestHeader, _policy: &RoutePolicy) -> Result<(), HttpError> {
        Ok(())
    }
}

/// The route policy for a request this tier will serve, or why it won't.
pub fn admit(
    req: &RequestHeader,
    routes: &Routes,
    gate: &dyn Gate,
) -> Result<RoutePolicy, HttpError> {
    if req.method != http::Method::GET && req.method != http::Method::HEAD {
        return Err(HttpError::MethodNotAllowed);
    }
    let path = req.uri.path();
    object_key(path)?;
    let policy = routes.policy(path).ok_or(HttpError::NoRoute)?;
    gate.admit(req, policy)?;
    Ok(policy.clone())
}
