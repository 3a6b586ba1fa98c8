//! The caching proxy both `edge-pop` and `shield` run. `impl ProxyHttp` only dispatches each
//! Pingora phase to the module that owns the decision:
//!
//! | phase | module |
//! |---|---|
//! | `request_filter` | `admission` (method, path, route, auth at the edge); request id |
//! | `request_cache_filter`, `cache_key_callback` | here: route says cacheable → storage + lock |
//! | `upstream_peer`, `fail_to_connect` | `upstream` (selector, next peer on connect failure) |
//! | `upstream_request_filter` | here: pass the request id on |
//! | `response_cache_filter` | `cacheability` (RFC 9111 + route TTL + upstream Age + stale-if-error) |
//! | `upstream_response_filter`, `response_filter` | `cache_status` (RFC 9211), `observe` (Server-Timing) |
//! | `fail_to_proxy` | `respond` (502/504 with Age and Cache-Status) |
//! | `logging` | `observe` (metrics result) and one access-log line |

pub mod admission;
pub mod cache_status;
pub mod cacheability;
pub mod observe;
pub mod respond;
pub mod upstream;

use crate::cache::TieredStorage;
use crate::config::{ProxyConfig, RoutePolicy, Routes};
use crate::metrics::{Metrics, UpstreamResult};
use crate::request_id;
use admission::Tier;
use async_trait::async_trait;
use bytes::Bytes;
use cache_status::Outcome;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::{CacheKey, CacheMeta, CachePhase, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, Result};
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
    metrics: &'static Metrics,
    max_object_bytes: usize,
    trust_request_id: bool,
}

impl TierProxy {
    pub fn new(
        tier: Tier,
        config: &ProxyConfig,
        routes: Routes,
        storage: &'static TieredStorage,
        metrics: &'static Metrics,
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
            metrics,
            max_object_bytes: usize::try_from(config.cache.max_object_bytes).unwrap_or(usize::MAX),
            trust_request_id: config.trust_request_id,
        }
    }
}

/// Per-request state.
pub struct Ctx {
    started: Instant,
    request_id: String,
    policy: Option<RoutePolicy>,
    attempts: usize,
    upstream_started: Option<Instant>,
    /// Whether this request's upstream outcome is already counted.
    upstream_counted: bool,
    upstream_cache_status: Option<String>,
    upstream_server_timing: Option<String>,
    outcome: Outcome,
    /// The `Cache-Status` value sent, for the access log.
    cache_status: String,
}

#[async_trait]
impl ProxyHttp for TierProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            request_id: String::new(),
            policy: None,
            attempts: 0,
            upstream_started: None,
            upstream_counted: false,
            upstream_cache_status: None,
            upstream_server_timing: None,
            outcome: Outcome::default(),
            cache_status: String::new(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let incoming = session
            .req_header()
            .headers
            .get(request_id::HEADER)
            .map(|v| v.as_bytes());
        ctx.request_id = request_id::pick(incoming, self.trust_request_id);
        match admission::admit(self.tier, session.req_header(), &self.routes) {
            Ok(policy) => {
                ctx.policy = Some(policy);
                Ok(false)
            }
            Err(rejection) => {
                let reply = respond::Reply {
                    tier: self.tier,
                    request_id: &ctx.request_id,
                    took: ctx.started.elapsed(),
                };
                ctx.cache_status = respond::rejection(session, &reply, &rejection).await?;
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
        ctx.upstream_started.get_or_insert_with(Instant::now);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.metrics.upstream(upstream_failure(&e));
        ctx.upstream_counted = true;
        if self.upstreams.may_retry(ctx.attempts) {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        req.insert_header(request_id::HEADER, ctx.request_id.as_str())?;
        Ok(())
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
        let take = |resp: &mut ResponseHeader, name: &str| {
            let value = resp
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            resp.remove_header(name);
            value
        };
        ctx.upstream_cache_status = take(resp, CACHE_STATUS);
        ctx.upstream_server_timing = take(resp, observe::SERVER_TIMING);
        resp.remove_header(request_id::HEADER);
        ctx.outcome.fwd_status = Some(resp.status.as_u16());
        if let Some(started) = ctx.upstream_started {
            self.metrics.upstream_first_byte(started.elapsed());
        }
        let result = if resp.status.is_server_error() {
            UpstreamResult::Error
        } else {
            UpstreamResult::Ok
        };
        self.metrics.upstream(result);
        ctx.upstream_counted = true;
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if end_of_stream {
            if let Some(started) = ctx.upstream_started.take() {
                self.metrics.upstream_last_byte(started.elapsed());
            }
        }
        Ok(None)
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
        let upstream_status = if went_upstream {
            ctx.upstream_cache_status.as_deref()
        } else {
            None
        };
        ctx.cache_status = cache_status::header_value(upstream_status, &entry);
        resp.insert_header(CACHE_STATUS, ctx.cache_status.as_str())?;
        let upstream_timing = if went_upstream {
            ctx.upstream_server_timing.as_deref()
        } else {
            None
        };
        resp.insert_header(
            observe::SERVER_TIMING,
            observe::server_timing(self.tier, ctx.started.elapsed(), upstream_timing),
        )?;
        resp.insert_header(request_id::HEADER, ctx.request_id.as_str())?;
        // Fresh from upstream with no Age of its own: say so (RFC 9111 §5.1).
        if !resp.headers.contains_key(http::header::AGE) {
            resp.insert_header(http::header::AGE, "0")?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        if e.esource() == &ErrorSource::Upstream && !ctx.upstream_counted {
            self.metrics.upstream(upstream_failure(e));
            ctx.upstream_counted = true;
        }
        let status = respond::failure_status(e);
        let reply = respond::Reply {
            tier: self.tier,
            request_id: &ctx.request_id,
            took: ctx.started.elapsed(),
        };
        if let Some(sent) = respond::failure(session, &reply, status, ctx.outcome.looked_up).await {
            ctx.cache_status = sent;
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let phase =
            (session.cache.enabled() || ctx.outcome.looked_up).then(|| session.cache.phase());
        let waited = session.cache.lock_duration().is_some();
        let result = observe::result(phase, ctx.outcome.looked_up, waited, status);
        let took = ctx.started.elapsed();
        let bytes = session.body_bytes_sent();
        self.metrics.request(result, status, bytes, took);
        let req = session.req_header();
        tracing::info!(
            target: "access",
            tier = self.tier.metric_label(),
            request_id = %ctx.request_id,
            method = %req.method,
            path = %req.uri.path(),
            status,
            bytes,
            micros = took.as_micros() as u64,
            cache = result.as_str(),
            cache_status = %ctx.cache_status,
            error = e.map(|e| e.to_string()),
            "request"
        );
    }
}

fn upstream_failure(e: &Error) -> UpstreamResult {
    if respond::is_timeout(e) {
        UpstreamResult::Timeout
    } else {
        UpstreamResult::Error
    }
}
