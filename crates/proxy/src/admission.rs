//! The request-filter phase: what a tier refuses before looking at its cache, all judged on the
//! request's canonical target (`cdn_http::Target`), never on its raw spelling. Every tier
//! refuses unsafe targets, paths no route covers, and methods the route does not pass; then
//! the tier's own `Gate` has its say (the edge's: auth).

use cdn_config::{RoutePolicy, Routes};
use cdn_http::{HttpError, Target};
use http::Method;
use pingora::cache::CacheKey;
use pingora::http::RequestHeader;
use std::borrow::Cow;

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

/// The request's `Host`. Over HTTP/2 a client names the authority in `:authority` (Pingora puts
/// it in the URI) and may leave `Host` out (RFC 9113 §8.3.1): then the authority stands for it.
/// A `Host` sent as well must still match it.
fn host(req: &RequestHeader) -> Option<Cow<'_, http::HeaderValue>> {
    if let Some(host) = req.headers.get(http::header::HOST) {
        return Some(Cow::Borrowed(host));
    }
    if req.version != http::Version::HTTP_2 {
        return None;
    }
    let authority = req.uri.authority()?;
    http::HeaderValue::from_str(authority.as_str())
        .ok()
        .map(Cow::Owned)
}

/// A request this tier will serve: its canonical target, the route's policy, and what names
/// the object (the cache key, and the path and query sent upstream).
#[derive(Debug, Clone)]
pub struct Admitted {
    pub target: Target,
    pub policy: RoutePolicy,
    /// The canonical path and the query parameters the route keeps, encoded.
    pub upstream_target: String,
}

impl Admitted {
    /// The cache key: the canonical target, whatever the Host (one origin per deployment),
    /// never a credential. Variants (`Vary`) are told apart by pingora-cache on top of it.
    pub fn cache_key(&self) -> CacheKey {
        CacheKey::new(self.upstream_target.as_str(), "")
    }
}

/// The admitted request, or why this tier won't serve it.
pub fn admit(req: &RequestHeader, routes: &Routes, gate: &dyn Gate) -> Result<Admitted, HttpError> {
    let target = Target::parse(&req.uri, host(req).as_deref())?;
    let policy = routes.policy(target.path()).ok_or(HttpError::NoRoute)?;
    let allowed = match req.method {
        Method::GET | Method::HEAD => true,
        // Writes, and methods this tier does not know (which may be unsafe, RFC 9110 §9.2.1).
        Method::CONNECT | Method::TRACE => false,
        _ => policy.pass_writes,
    };
    if !allowed {
        return Err(HttpError::MethodNotAllowed);
    }
    gate.admit(req, policy)?;
    let mut upstream_target = target.encoded_path();
    if let Some(query) = target.query_kept(|name| policy.query.keeps(name)) {
        upstream_target.push('?');
        upstream_target.push_str(&query);
    }
    Ok(Admitted {
        target,
        policy: policy.clone(),
        upstream_target,
    })
}
