//! The request-filter phase: what a tier refuses before looking at its cache, all judged on the
//! request's canonical target (`cdn_http::Target`), never on its raw spelling. Every tier
//! refuses requests from outside the tiers it answers (`trust`), unsafe targets, paths no route
//! covers, and methods the route does not pass; then the tier's own `Gate` has its say (the
//! edge's: rate limits and auth).

use cdn_config::{Naming, Route, RoutePolicy, Routes};
use cdn_http::{trust, HttpError, Secret, Target};
use http::Method;
use pingora::cache::CacheKey;
use pingora::http::RequestHeader;
use std::borrow::Cow;
use std::net::IpAddr;

/// What a gate sees of a request: the request, its canonical target, the route that covers it
/// (and its place among the routes), and the client's address.
#[derive(Debug, Clone, Copy)]
pub struct Asking<'a> {
    pub req: &'a RequestHeader,
    pub target: &'a Target,
    pub route: &'a Route,
    pub route_index: usize,
    pub client: Option<IpAddr>,
}

/// What a gate decided of a request it lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// As it came: caching treats its `Authorization`, if any, by RFC 9111 §3.5.
    AsIs,
    /// Without its credentials, if it carried any: the route is public, and nothing past
    /// this tier is to see them (the request shares the copy everyone gets).
    Anonymous,
    /// The gate checked the request's credentials: the request goes on without them (they
    /// are this tier's to check, not the next one's), and may be answered from the copy every
    /// entitled caller shares.
    Authenticated,
}

/// What one tier checks of a request beyond what every tier checks. It runs on every request,
/// hit or miss, before the cache is looked at.
pub trait Gate: Send + Sync + 'static {
    fn admit(&self, asking: &Asking<'_>) -> Result<Pass, HttpError>;

    /// What this gate cannot judge now, if anything (the tier still serves the rest):
    /// `/readyz` says it, with a 200.
    fn degraded(&self) -> Option<String> {
        None
    }
}

/// A gate that lets every request through (a shield answers whatever its edges ask).
#[derive(Debug, Clone, Copy, Default)]
pub struct Open;

impl Gate for Open {
    fn admit(&self, _asking: &Asking<'_>) -> Result<Pass, HttpError> {
        Ok(Pass::AsIs)
    }
}

/// The secrets of the links around a tier: the one it requires of the tier in front of it, and
/// the one it presents to the tier behind it. `None` on either side: not checked, not sent.
#[derive(Debug, Clone, Default)]
pub struct TierTrust {
    pub accepts: Option<Secret>,
    pub presents: Option<Secret>,
    /// Whether a tier is in front of this one, whose health probes it answers (every tier but
    /// the edge, whose clients are the public: it answers no probe on its traffic listener).
    pub behind: bool,
}

impl TierTrust {
    /// Whether `req` is a health probe from the tier in front, to be answered as such
    /// (`cdn_http::trust::HEALTH_PATH`, with the secret where one is required).
    pub fn is_probe(&self, req: &RequestHeader) -> bool {
        self.behind && req.uri.path() == trust::HEALTH_PATH && self.check(req).is_ok()
    }

    /// Refuses a request that does not present the secret this tier requires.
    pub fn check(&self, req: &RequestHeader) -> Result<(), HttpError> {
        match &self.accepts {
            Some(secret)
                if !secret.admits(req.headers.get(trust::HEADER).map(|v| v.as_bytes())) =>
            {
                Err(HttpError::Forbidden { challenge: None })
            }
            _ => Ok(()),
        }
    }
}

/// The request's `Host`. Over HTTP/2 a client names the authority in `:authority` (Pingora puts
/// it in the URI) and may leave `Host` out (RFC 9113 §8.3.1): then the authority stands for it.
/// A `Host` sent as well must still match it.
pub(crate) fn host(req: &RequestHeader) -> Option<Cow<'_, http::HeaderValue>> {
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
    pub pass: Pass,
    /// The prefix of the route that covers it (what the route's naming reads starts after it).
    pub route_prefix: String,
    /// The canonical path and the query parameters the route keeps, encoded.
    pub upstream_target: String,
    /// Where the route reads its objects (backend and key prefix), part of every cache key.
    pub source: String,
}

impl Admitted {
    /// The cache key: the canonical target, whatever the Host (one origin per deployment),
    /// never a credential. Variants (`Vary`) are told apart by pingora-cache on top of it.
    pub fn cache_key(&self) -> CacheKey {
        cache_key(&self.source, &self.upstream_target)
    }

    /// The cache key of one slice of the object (a route with `slice`).
    pub fn slice_key(&self, slice: cdn_http::slice::Slice) -> CacheKey {
        let target = format!("{}{}", self.upstream_target, slice.key_suffix());
        cache_key(&self.source, &target)
    }

    /// The cache key a GET of `target` on this request's route is looked up under.
    pub fn key_of(&self, target: &Target) -> CacheKey {
        cache_key(&self.source, &upstream_target(target, &self.policy))
    }

    /// The canonical path after the route's prefix.
    pub fn route_rest(&self) -> &str {
        self.target
            .path()
            .strip_prefix(self.route_prefix.as_str())
            .unwrap_or_default()
    }
}

/// The cache key of a request sent upstream as `upstream_target` on a route that reads
/// `source`: both, framed (the source's length first, so no two pairs spell one key). A path
/// read from another source is another object, so a route whose source changes never serves
/// what its old source gave (the shipped catch-all's copies of the registry layout, once it
/// reads a folder of its own).
fn cache_key(source: &str, upstream_target: &str) -> CacheKey {
    CacheKey::new(format!("{}:{source}{upstream_target}", source.len()), "")
}

/// What a request for `target` on a route with `policy` is sent upstream as: the canonical
/// path and the query parameters the route keeps, encoded.
fn upstream_target(target: &Target, policy: &RoutePolicy) -> String {
    let mut upstream_target = target.encoded_path();
    if let Some(query) = target.query_kept(|name| policy.query.keeps(name)) {
        upstream_target.push('?');
        upstream_target.push_str(&query);
    }
    upstream_target
}

/// How the routes name what a request's path names, for the form of a refusal: by its
/// canonical path, or by its path as sent when it has none (a refused spelling).
pub fn naming_of(req: &RequestHeader, routes: &Routes) -> Naming {
    let canonical = Target::parse(&req.uri, host(req).as_deref()).ok();
    let path = canonical
        .as_ref()
        .map_or_else(|| req.uri.path(), Target::path);
    routes
        .find(path)
        .map_or(Naming::Path, |(_, route)| route.policy.naming)
}

/// The admitted request, or why this tier won't serve it.
pub fn admit(
    req: &RequestHeader,
    client: Option<IpAddr>,
    routes: &Routes,
    gate: &dyn Gate,
) -> Result<Admitted, HttpError> {
    let target = Target::parse(&req.uri, host(req).as_deref())?;
    let (route_index, route) = routes.find(target.path()).ok_or(HttpError::NoRoute)?;
    let policy = &route.policy;
    let allowed = match req.method {
        Method::GET | Method::HEAD => true,
        // Writes, and methods this tier does not know (which may be unsafe, RFC 9110 §9.2.1).
        Method::CONNECT | Method::TRACE => false,
        _ => policy.pass_writes,
    };
    if !allowed {
        return Err(HttpError::MethodNotAllowed);
    }
    let pass = gate.admit(&Asking {
        req,
        target: &target,
        route,
        route_index,
        client,
    })?;
    let upstream_target = upstream_target(&target, policy);
    Ok(Admitted {
        target,
        policy: policy.clone(),
        pass,
        route_prefix: route.prefix.clone(),
        upstream_target,
        source: format!(
            "{}/{}",
            route.source.backend.as_deref().unwrap_or_default(),
            route.source.prefix
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::cache::key::CacheHashKey;

    fn routes(source: &str) -> Routes {
        let text = format!(
            "origin:\n  listen: 127.0.0.1:9000\n  backend:\n    local:\n      root: x\n\
             shield:\n  listen: 127.0.0.1:8081\n  origin: 127.0.0.1:9000\n  cache:\n    memory: 8MiB\n\
             edge:\n  listen: 127.0.0.1:8080\n  shields: [127.0.0.1:8081]\n  cache:\n    memory: 8MiB\n\
             routes:\n  - prefix: /\n    ttl: 1m\n    source: {{prefix: {source}}}\n"
        );
        let config = cdn_config::Config::parse(std::path::Path::new("/x.yaml"), &text).unwrap();
        config.routes
    }

    fn key(source: &str, path: &str) -> [u8; 16] {
        let req = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        let admitted = admit(&req, None, &routes(source), &Open).unwrap();
        admitted.cache_key().primary_bin()
    }

    /// Regression: the cache key was the path alone, so once the shipped catch-all read a
    /// folder of its own, the copies it had made of the registry layout (read over the
    /// bucket's root) were still served under the same paths.
    #[test]
    fn a_path_read_from_another_source_is_another_object() {
        assert_eq!(key("files", "/a/b"), key("files", "/a/b"));
        assert_ne!(key("files", "/a/b"), key("other", "/a/b"));
        assert_ne!(key("files", "/a/b"), key("\"\"", "/a/b"));
        // Framed: a source and a path never run into one another.
        assert_ne!(key("ab", "/c"), key("a", "/bc"));
    }
}
