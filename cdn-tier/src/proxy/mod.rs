//! The caching proxy both `edge-pop` and `shield` run. `impl ProxyHttp` only dispatches each
//! Pingora phase to the module that owns the decision:
//!
//! | phase | module |
//! |---|---|
//! | `request_filter` | `admission` (method, path, route, auth at the edge) |
//! | `request_cache_filter`, `cache_key_callback` | here: route says cacheable → storage + lock |
//! | `upstream_peer`, `fail_to_connect` | `upstream` (selector, next peer on connect failure) |
//! | `response_cache_filter` | `cacheability` (RFC 9111 + route TTL + upstream Age) |
//! | `upstream_response_filter`, `response_filter` | `cache_status` (RFC 9211 list) |
//! | `fail_to_proxy` | `respond` (502/504 with Age and Cache-Status) |
//! | `logging` | here: one access-log line |

pub mod admission;
pub mod cache_status;
pub mod cacheability;
pub mod respond;
pub mod upstream;

use crate::cache::TieredStorage;
use crate::config::{ProxyConfig, RoutePolicy, Routes};
use admission::Tier;
use async_trait::async_trait;
use cache_status::Outcome;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::{CacheKey, CacheMeta, CachePhase, RespCacheable};
use pingora::http::ResponseHeader;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, Result};
use std::time::{Duration, Instant};
use upstream::Upstreams;

/// The header carrying the tier list (RFC 9211).
pub const CACHE_STATUS: &str = "cache-status";

/// How long a fill may hold the cache lock before waiters give up on it and fetch themselves.
const LOCK_AGE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TierProxy {
    tier: Tier,
    routes: Routes,
    upstreams: Upstreams,
    storage: &'static TieredStorage,
    lock: &'static CacheKeyLockImpl,
    max_object_bytes: usize,
}

impl TierProxy {
    pub fn new(
        tier: Tier,
        config: &ProxyConfig,
        routes: Routes,
        storage: &'static TieredStorage,
    ) -> Self {
        let lock: &'static CacheKeyLockImpl = Box::leak(CacheLock::new_boxed(LOCK_AGE_TIMEOUT));
        TierProxy {
            tier,
            routes,
            upstreams: Upstreams::new(
                config.upstreams.clone(),
                config.connect_timeout,
                config.upstream_timeout,
            ),
            storage,
            lock,
            max_object_bytes: usize::try_from(config.cache.max_object_bytes).unwrap_or(usize::MAX),
        }
    }
}

/// Per-request state.
pub struct Ctx {
    started: Instant,
    policy: Option<RoutePolicy>,
    attempts: usize,
    upstream_cache_status: Option<String>,
    outcome: Outcome,
}

#[async_trait]
impl ProxyHttp for TierProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            policy: None,
            attempts: 0,
            upstream_cache_status: None,
            outcome: Outcome::default(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        match admission::admit(self.tier, session.req_header(), &self.routes) {
            Ok(policy) => {
                ctx.policy = Some(policy);
                Ok(false)
            }
            Err(rejection) => {
                respond::rejection(session, self.tier, &rejection).await?;
                Ok(true)
            }
        }
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        if ctx.policy.as_ref().is_some_and(|p| p.cacheable) {
            session
                .cache
                .enable(self.storage, None, None, Some(self.lock), None);
            session.cache.set_max_file_size_bytes(self.max_object_bytes);
            ctx.outcome.looked_up = true;
        }
        Ok(())
    }

    /// One origin per deployment: the key is the path and query, whatever the Host.
    fn cache_key_callback(&self, session: &Session, _ctx: &mut Ctx) -> Result<CacheKey> {
        let uri = &session.req_header().uri;
        let primary = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
        Ok(CacheKey::new(primary, ""))
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let peer = self.upstreams.peer(ctx.attempts);
        ctx.attempts += 1;
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if self.upstreams.may_retry(ctx.attempts) {
            e.set_retry(true);
        }
        e
    }

    fn response_cache_filter(
        &self,
        _session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        let Some(policy) = &ctx.policy else {
            return Ok(RespCacheable::Uncacheable(
                pingora::cache::NoCacheReason::NeverEnabled,
            ));
        };
        let decision = cacheability::decide(resp, policy);
        if let RespCacheable::Cacheable(meta) = &decision {
            ctx.outcome.stored = true;
            ctx.outcome.fresh_until = Some(meta.fresh_until());
        }
        Ok(decision)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // The upstream's entries describe this fetch only: keep them out of the stored copy.
        ctx.upstream_cache_status = resp
            .headers
            .get(CACHE_STATUS)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        resp.remove_header(CACHE_STATUS);
        ctx.outcome.fwd_status = Some(resp.status.as_u16());
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let phase =
            (session.cache.enabled() || ctx.outcome.looked_up).then(|| session.cache.phase());
        if matches!(phase, Some(CachePhase::Hit)) {
            ctx.outcome.collapsed = session.cache.lock_duration().is_some();
            ctx.outcome.fresh_until = session.cache.maybe_cache_meta().map(CacheMeta::fresh_until);
        }
        let entry = cache_status::entry(self.tier.name(), phase.as_ref(), &ctx.outcome);
        let went_upstream = ctx.outcome.fwd_status.is_some();
        let upstream = if went_upstream {
            ctx.upstream_cache_status.as_deref()
        } else {
            None
        };
        resp.insert_header(CACHE_STATUS, cache_status::header_value(upstream, &entry))?;
        // Fresh from upstream with no Age of its own: say so (RFC 9111 §5.1).
        if !resp.headers.contains_key(http::header::AGE) {
            resp.insert_header(http::header::AGE, "0")?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let status = respond::failure_status(e);
        respond::failure(session, self.tier, status, ctx.outcome.looked_up).await;
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let phase = if session.cache.enabled() {
            session.cache.phase().as_str()
        } else {
            "off"
        };
        let req = session.req_header();
        tracing::info!(
            tier = self.tier.name(),
            method = %req.method,
            path = %req.uri.path(),
            status,
            cache = phase,
            micros = ctx.started.elapsed().as_micros() as u64,
            error = e.map(|e| e.to_string()),
            "request"
        );
    }
}
