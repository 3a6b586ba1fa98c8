//! The request-filter phase: what a tier refuses before looking at its cache. Methods other
//! than GET/HEAD, unsafe paths, paths no route covers, and (at the edge) requests for routes
//! that need a token. Token verification is not built yet, so such routes fail closed.

use crate::config::{RoutePolicy, Routes};
use crate::request_path::object_key;
use pingora::http::RequestHeader;

/// Which tier is asking; only the edge enforces auth (the shield trusts its edges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Edge,
    Shield,
}

impl Tier {
    /// The name this tier uses in `Cache-Status` and logs.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Edge => "edge-pop",
            Tier::Shield => "shield",
        }
    }

    /// The `tier` label of its metrics and its `Server-Timing` name.
    pub fn metric_label(self) -> &'static str {
        match self {
            Tier::Edge => "edge",
            Tier::Shield => "shield",
        }
    }
}

/// A refusal, answered without touching cache or upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub body: String,
    /// Extra header (name, value), e.g. `Allow` or `WWW-Authenticate`.
    pub header: Option<(&'static str, &'static str)>,
}

impl Rejection {
    fn new(status: u16, body: impl Into<String>) -> Self {
        Rejection {
            status,
            body: body.into(),
            header: None,
        }
    }
}

/// The route policy for a request this tier will serve, or why it won't.
pub fn admit(tier: Tier, req: &RequestHeader, routes: &Routes) -> Result<RoutePolicy, Rejection> {
    if req.method != http::Method::GET && req.method != http::Method::HEAD {
        let mut r = Rejection::new(405, "method not allowed\n");
        r.header = Some(("allow", "GET, HEAD"));
        return Err(r);
    }
    let path = req.uri.path();
    object_key(path).map_err(|bad| Rejection::new(400, format!("bad request: {}\n", bad.0)))?;
    let policy = routes
        .policy(path)
        .ok_or_else(|| Rejection::new(404, "not found\n"))?;
    if tier == Tier::Edge && policy.auth_required {
        let mut r = Rejection::new(401, "a token is required for this path\n");
        r.header = Some(("www-authenticate", "Bearer"));
        return Err(r);
    }
    Ok(policy.clone())
}
