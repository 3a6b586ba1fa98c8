//! The caching proxy's `impl ProxyHttp`: each Pingora phase in the order Pingora calls it,
//! dispatching to the module that owns the decision (see the table in `lib.rs`).

use crate::admission::{self, Admitted, Gate, Open, Pass, TierTrust};
use crate::cacheability;
use crate::outcome;
use crate::packages::{self, Integrity, TarballUrls};
use crate::quick;
use crate::respond::{self, Headers};
use crate::slices::{self, Assembler, Report};
use crate::upstream::{HealthChecks, Order, Upstreams};
use async_trait::async_trait;
use bytes::Bytes;
use cdn_cache::{CollapseLock, HybridStorage};
use cdn_config::{ProxyConfig, Routes};
use cdn_http::slice::{self, Slice};
use cdn_observe::access::Access;
use cdn_observe::decorate::UpstreamEntries;
use cdn_observe::{cache_status, request_id, server_timing};
use cdn_observe::{CacheUse, Decoration, Metrics, Outcome, Tier, UpstreamResult};
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::lock::CacheKeyLockImpl;
use pingora::cache::{
    CacheKey, CacheMeta, CacheOptionOverrides, ForcedFreshness, HitHandler, NoCacheReason,
    RespCacheable,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorSource, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a fill may hold the cache lock before waiters give up on it and fetch themselves.
const LOCK_AGE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TierProxy {
    tier: Tier,
    routes: Routes,
    gate: Arc<dyn Gate>,
    trust: TierTrust,
    upstreams: Arc<Upstreams>,
    storage: &'static HybridStorage,
    lock: &'static CollapseLock,
    metrics: &'static Metrics,
    max_object_bytes: usize,
    trust_request_id: bool,
    send_timeout: Duration,
    /// A client connection with no request in progress is closed after this (HTTP/1.1).
    idle_timeout: Duration,
    min_send_rate: Option<usize>,
    /// Answers sliced routes from slices asked of this tier, inside the process.
    slices: Assembler,
    /// Requests that may stream one fill; past it, 503.
    max_waiters: usize,
    /// `Vary` variants stored under one object, at most.
    max_variants: usize,
}

impl TierProxy {
    pub fn new(
        tier: Tier,
        config: &ProxyConfig,
        routes: Routes,
        gate: Arc<dyn Gate>,
        trust: TierTrust,
        storage: &'static HybridStorage,
        metrics: &'static Metrics,
    ) -> Self {
        let lock: &'static CollapseLock =
            Box::leak(Box::new(CollapseLock::new(storage, LOCK_AGE_TIMEOUT)));
        TierProxy {
            tier,
            routes,
            gate,
            trust,
            upstreams: Arc::new(Upstreams::new(
                config.upstreams.clone(),
                config.connect_timeout,
                config.upstream_timeout,
            )),
            storage,
            lock,
            metrics,
            max_object_bytes: usize::try_from(config.cache.max_object_bytes).unwrap_or(usize::MAX),
            trust_request_id: config.trust_request_id,
            send_timeout: config.send_timeout,
            idle_timeout: config.idle_timeout,
            min_send_rate: config
                .min_send_rate
                .map(|r| usize::try_from(r).unwrap_or(usize::MAX)),
            // A slice may wait for another's fetch (up to the lock wait, an upstream timeout)
            // and then fetch itself, possibly twice.
            slices: Assembler::new(storage, config.upstream_timeout * 3),
            max_waiters: config.max_waiters,
            max_variants: config.cache.max_variants,
        }
    }

    /// Whether `max_waiters` requests already wait for, or stream, the fetch of the object
    /// this request names.
    fn too_many_waiters(&self, ctx: &Ctx) -> bool {
        let Some(admitted) = ctx.admitted.as_ref().filter(|a| a.policy.cacheable) else {
            return false;
        };
        let key = ctx.key_of(admitted);
        self.lock.waiters(&key.combined_bin()) >= self.max_waiters
    }

    /// Where misses go, and which of them are up (shared with the health checks and `/readyz`).
    pub fn upstreams(&self) -> Arc<Upstreams> {
        self.upstreams.clone()
    }

    /// Probes of this tier's upstreams every `interval`, presenting the secret requests do.
    pub fn health_checks(&self, interval: Duration) -> HealthChecks {
        let secret = self.trust.presents.as_ref().map(|s| s.value());
        HealthChecks::new(self.upstreams.clone(), interval, secret)
    }

    /// Answers a fresh memory-tier copy now, before pingora-cache, when the request and the
    /// copy are plain enough (`quick`); whether it did. Everything pingora-cache's hit path
    /// would run for it runs here too: this tier's `response_filter`, the downstream modules
    /// (through the session's writes), the access log and metrics (`logging`).
    async fn answer_from_memory(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let Some(admitted) = ctx.admitted.as_ref() else {
            return Ok(false);
        };
        let eligible = admitted.policy.cacheable
            && admitted.policy.slice.is_none()
            && ctx.slice.is_none()
            && !ctx.authorization
            && quick::plain_request(session.req_header());
        if !eligible {
            return Ok(false);
        }
        let key = ctx.key_of(admitted).combined_bin();
        let Some(hit) = quick::lookup(self.storage, &key) else {
            return Ok(false);
        };
        if packages::points_tarballs(self.tier, admitted, hit.header.status.as_u16()) {
            // Its body is rewritten on the way out (`response_body_filter`).
            return Ok(false);
        }
        ctx.settled = true;
        ctx.looked_up = true;
        ctx.outcome = Outcome {
            cache: CacheUse::Hit,
            fresh_until: Some(hit.fresh_until),
            ..Outcome::default()
        };
        let mut header = hit.header;
        self.response_filter(session, &mut header, ctx).await?;
        let header_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(header, header_only)
            .await
            .map_err(|e| e.into_down())?;
        if !header_only {
            for (piece, last) in quick::pieces(&hit.object) {
                session
                    .write_response_body(Some(piece), last)
                    .await
                    .map_err(|e| e.into_down())?;
            }
        }
        Ok(true)
    }

    /// Answers a client's GET of a sliced object from its slices, asked of this tier as
    /// subrequests; the assembled header goes through this tier's `response_filter` like every
    /// answer's.
    async fn answer_from_slices(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        size: u64,
    ) -> Result<bool> {
        let Some(admitted) = ctx.admitted.as_ref() else {
            return Ok(false);
        };
        let assembly = self
            .slices
            .plan(session, admitted, size, &ctx.request_id)
            .await?;
        let slices::Assembly {
            mut header,
            header_only,
            report,
            body,
        } = assembly;
        ctx.settled = true;
        ctx.looked_up = true;
        ctx.outcome = report.outcome;
        ctx.upstream = report.upstream;
        self.response_filter(session, &mut header, ctx).await?;
        session.write_response_header(header, header_only).await?;
        self.slices.stream(session, body).await?;
        Ok(true)
    }

    /// One of this tier's slice subrequests, asked by a client's request that was already
    /// judged (secret, route, gate): a plain GET of one slice, admitted as it is.
    fn slice_subrequest(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let Some(order) = slices::order(session) else {
            return Ok(false);
        };
        ctx.slice = Some(order.slice);
        ctx.request_id = order.request_id.clone();
        ctx.report = Some(order.report.clone());
        let admitted =
            admission::admit(session.req_header(), None, &self.routes, &Open).map_err(|e| {
                Error::because(pingora::ErrorType::InternalError, "a slice subrequest", e)
            })?;
        ctx.admitted = Some(admitted);
        Ok(false)
    }

    /// Answers this request with `error` (this tier's own answer, in the form its route's
    /// naming calls for); the request was handled.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        error: &cdn_http::HttpError,
    ) -> Result<bool> {
        let naming = self.naming(session, ctx);
        ctx.cache_status = respond::error(session, error, naming, &self.decoration(ctx)).await?;
        Ok(true)
    }

    /// How the route of this request names things, for the form of this tier's own answers.
    fn naming(&self, session: &Session, ctx: &Ctx) -> cdn_config::Naming {
        match &ctx.admitted {
            Some(admitted) => admitted.policy.naming,
            None => admission::naming_of(session.req_header(), &self.routes),
        }
    }

    /// The headers every response of this request carries, from what is known so far.
    fn decoration<'a>(&self, ctx: &'a Ctx) -> Decoration<'a> {
        Decoration {
            tier: self.tier,
            request_id: &ctx.request_id,
            took: ctx.started.elapsed(),
            outcome: Some(&ctx.outcome),
            upstream: &ctx.upstream,
        }
    }
}

/// Per-request state.
pub struct Ctx {
    started: Instant,
    request_id: String,
    /// The canonical target and its route, once the request is admitted.
    admitted: Option<Admitted>,
    /// The request carries `Authorization` (RFC 9111 §3.5).
    authorization: bool,
    /// The upstream's 304 to a revalidation, whose fields update the stored copy's.
    not_modified: Option<Box<ResponseHeader>>,
    /// Caching was enabled for this request.
    looked_up: bool,
    /// The upstreams this request tries, its object's home first.
    order: Option<Order>,
    attempts: usize,
    /// A health probe from the tier in front: answered, not logged or counted.
    probe: bool,
    /// The upstream's response header came (no retry after it).
    upstream_answered: bool,
    /// The slice of the target this request asks for (a tier's own slice request, or the
    /// edge's at a shield).
    slice: Option<Slice>,
    upstream_started: Option<Instant>,
    /// Whether this request's upstream outcome is already counted.
    upstream_counted: bool,
    /// The upstream's `Cache-Status` and `Server-Timing` for this fetch.
    upstream: UpstreamEntries,
    outcome: Outcome,
    /// The `Cache-Status` value sent, for the access log.
    cache_status: Option<String>,
    /// The method sent upstream (a HEAD may be sent as GET to fill the cache).
    upstream_method: Option<http::Method>,
    /// The upstream body being hashed against what it must hash to (shield).
    integrity: Option<Integrity>,
    /// The packument's tarball URLs being pointed at the client's host (edge).
    tarball_urls: Option<TarballUrls>,
    /// Answered before pingora-cache (a memory hit, `quick`; slices): the outcome is set, not
    /// read off pingora-cache's phase.
    settled: bool,
    /// This request is one of this tier's slice subrequests: its answer is raw (not dressed,
    /// not logged), and what its fetch did goes here, for the request that asked.
    report: Option<std::sync::Arc<std::sync::Mutex<Report>>>,
}

impl Ctx {
    /// The cache key of what this request asks for: the object, or one slice of it.
    fn key_of(&self, admitted: &Admitted) -> CacheKey {
        match self.slice {
            Some(slice) => admitted.slice_key(slice),
            None => admitted.cache_key(),
        }
    }
}

#[async_trait]
impl ProxyHttp for TierProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            request_id: String::new(),
            admitted: None,
            authorization: false,
            not_modified: None,
            looked_up: false,
            order: None,
            attempts: 0,
            probe: false,
            upstream_answered: false,
            slice: None,
            upstream_started: None,
            upstream_counted: false,
            upstream: UpstreamEntries::default(),
            outcome: Outcome::default(),
            cache_status: None,
            upstream_method: None,
            integrity: None,
            tarball_urls: None,
            settled: false,
            report: None,
        }
    }

    /// A client's GET may be answered from slices, asked of this tier as subrequests.
    fn allow_spawning_subrequest(&self, session: &Session, _ctx: &Ctx) -> bool {
        session.subrequest_ctx.is_none() && session.req_header().method == http::Method::GET
    }

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        // Requests pipelined on one connection are answered in order (RFC 9112 §9.3.2), not
        // dropped with the connection.
        session.downstream_session.set_pipelining_enabled(true);
        // A fill goes on at the upstream's pace whatever its client does: over HTTP/1.1 the
        // body is queued to the client while the next piece is read and cached (one piece at
        // most: the client reads it from the cache at its own pace). A client that does not
        // take a write within the send timeout (or the minimum rate) is dropped; the fill is
        // finished for everyone else.
        // (Not for HEAD, which has no body to queue: its header waits for the fill's checks,
        // as the shield's integrity check needs.)
        if session.req_header().method != http::Method::HEAD {
            session.set_proxy_tasks_enabled(true);
        }
        session
            .downstream_session
            .set_write_timeout(Some(self.send_timeout));
        if session.get_keepalive().is_some() {
            // Kept alive, but not for ever: an idle connection is closed after the idle
            // timeout (HTTP/1.1 kept connections open as long as their clients did, and one
            // client could hold every descriptor the tier has).
            session.set_keepalive(Some(self.idle_timeout.as_secs().max(1)));
        }
        session
            .downstream_session
            .set_min_send_rate(self.min_send_rate);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if slices::order(session).is_some() {
            return self.slice_subrequest(session, ctx);
        }
        let incoming = session
            .req_header()
            .headers
            .get(request_id::HEADER)
            .map(|v| v.as_bytes());
        ctx.request_id = request_id::pick(incoming, self.trust_request_id);
        // Before anything else: a read that carries a body is refused and its connection
        // closed, so no body is forwarded or left unread while a fill goes on.
        let body_empty = session.as_downstream_mut().is_body_empty();
        if let Err(refused) = cdn_http::framing::check(&session.req_header().method, body_empty) {
            return self.refuse(session, ctx, &refused).await;
        }
        if session.req_header().method.is_safe() && body_empty {
            for name in &cdn_http::framing::BODY_FIELDS {
                session.req_header_mut().remove_header(name);
            }
        }
        for name in cacheability::connection_listed(&session.req_header().headers) {
            session.req_header_mut().remove_header(name.as_str());
        }
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if self.trust.is_probe(session.req_header()) {
            ctx.probe = true;
            respond::probe(session).await?;
            return Ok(true);
        }
        // A slice is honoured from the tier in front, where one is required (its secret is
        // checked below); from anyone else the field is dropped.
        let asked_slice = session
            .req_header()
            .headers
            .get(slice::HEADER)
            .and_then(|v| Slice::parse(v.as_bytes()));
        session.req_header_mut().remove_header(slice::HEADER);
        if self.trust.accepts.is_some() {
            ctx.slice = asked_slice;
        }
        if ctx.slice.is_some() {
            // The slice is the object asked for: its bytes are named upstream, not here.
            for name in [http::header::RANGE, http::header::IF_RANGE] {
                session.req_header_mut().remove_header(&name);
            }
        }
        let admitted = self.trust.check(session.req_header()).and_then(|()| {
            admission::admit(
                session.req_header(),
                client,
                &self.routes,
                self.gate.as_ref(),
            )
        });
        match admitted {
            Ok(admitted) => {
                if matches!(admitted.pass, Pass::Authenticated | Pass::Anonymous) {
                    // Checked here, or not for anyone past here: the credentials go no
                    // further, and the request shares the copy entitled callers (or everyone)
                    // get.
                    session
                        .req_header_mut()
                        .remove_header(&http::header::AUTHORIZATION);
                }
                ctx.authorization = session
                    .req_header()
                    .headers
                    .contains_key(http::header::AUTHORIZATION);
                packages::canonical_accept(&admitted, session.req_header_mut())?;
                let sliced = admitted.policy.slice.filter(|_| {
                    ctx.slice.is_none() && session.req_header().method == http::Method::GET
                });
                ctx.admitted = Some(admitted);
                match sliced {
                    Some(size) => self.answer_from_slices(session, ctx, size).await,
                    _ if self.too_many_waiters(ctx) => {
                        let busy = cdn_http::HttpError::Unavailable { retry_after: 1 };
                        self.refuse(session, ctx, &busy).await
                    }
                    _ => self.answer_from_memory(session, ctx).await,
                }
            }
            Err(refused) => self.refuse(session, ctx, &refused).await,
        }
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let method = &session.req_header().method;
        let reads = method == http::Method::GET || method == http::Method::HEAD;
        // A HEAD of a sliced object passes through uncached: it moves no body anywhere.
        let sliced_head = method == http::Method::HEAD
            && ctx.slice.is_none()
            && ctx
                .admitted
                .as_ref()
                .is_some_and(|a| a.policy.slice.is_some());
        if reads && !sliced_head && ctx.admitted.as_ref().is_some_and(|a| a.policy.cacheable) {
            // A request waits for another's fetch of the object no longer than for its own.
            let mut overrides = CacheOptionOverrides::default();
            overrides.wait_timeout = Some(self.upstreams.read_timeout());
            session.cache.enable(
                self.storage,
                None,
                None,
                Some(self.lock as &CacheKeyLockImpl),
                Some(overrides),
            );
            session.cache.set_max_file_size_bytes(self.max_object_bytes);
            ctx.looked_up = true;
        }
        Ok(())
    }

    /// One origin per deployment: the key is the canonical target (path and the query the
    /// route keeps), whatever the Host; never a credential. Variants (`Vary`) are told apart
    /// by `cache_vary_filter`.
    fn cache_key_callback(&self, _session: &Session, ctx: &mut Ctx) -> Result<CacheKey> {
        let admitted = ctx.admitted.as_ref().ok_or_else(|| {
            Error::explain(
                pingora::ErrorType::InternalError,
                "cache key before admission",
            )
        })?;
        Ok(ctx.key_of(admitted))
    }

    /// The variant a request asks for (`cacheability::variance`).
    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut Ctx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        cacheability::variance(meta.headers(), req)
    }

    /// A request with `Authorization` is not answered from a copy unless the copy allows it.
    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        _is_fresh: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<ForcedFreshness>> {
        if ctx.authorization && !cacheability::serves_authorized(meta) {
            if let Some(key) = session.cache.maybe_cache_key() {
                CollapseLock::forcing_miss(key.combined_bin());
            }
            return Ok(Some(ForcedFreshness::ForceMiss));
        }
        Ok(None)
    }

    /// The object's home upstream by consistent hashing of its canonical target, then the next
    /// on the ring; upstreams marked down go last.
    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let order = ctx.order.get_or_insert_with(|| {
            let key = ctx
                .admitted
                .as_ref()
                .map_or("", |a| a.upstream_target.as_str());
            self.upstreams.order(key.as_bytes())
        });
        let peer = self.upstreams.peer(order, ctx.attempts);
        ctx.attempts += 1;
        ctx.upstream_started.get_or_insert_with(Instant::now);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.metrics.upstream(upstream_failure(&e));
        ctx.upstream_counted = true;
        if let Some(addr) = peer.address().as_inet() {
            self.upstreams.mark_down(addr);
        }
        if self.upstreams.may_retry(ctx.attempts) {
            e.set_retry(true);
        }
        e
    }

    /// A GET or HEAD whose upstream failed before answering tries the next upstream: after a
    /// refused or broken connection (a fresh one marks the upstream down), or after a timeout
    /// once the probes found the upstream gone (hung).
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("upstream {peer}"));
        let method = &session.req_header().method;
        let reads = method == http::Method::GET || method == http::Method::HEAD;
        // Once the upstream's header is in, the cache (and so its waiters) may have it: no
        // second answer may follow.
        let untouched = !ctx.upstream_answered
            && session.response_written().is_none()
            && !session.as_ref().retry_buffer_truncated();
        if reads && untouched && e.esource() == &ErrorSource::Upstream {
            self.metrics.upstream(upstream_failure(&e));
            ctx.upstream_counted = true;
            let addr = peer.address().as_inet();
            let retry = if respond::is_timeout(&e) {
                // A slow upstream is not a dead one: the request goes elsewhere only when the
                // probes have found this one gone (hung); else its 504 stands.
                addr.is_some_and(|a| !self.upstreams.is_up(a))
            } else {
                // Refused, reset, closed. A pooled connection the upstream closed says nothing
                // of its health; a fresh one that fails does.
                if let Some(addr) = addr.filter(|_| !client_reused) {
                    self.upstreams.mark_down(addr);
                }
                true
            };
            e.set_retry(retry && self.upstreams.may_retry(ctx.attempts));
        } else {
            e.set_retry(false);
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
        ctx.upstream_method = Some(req.method.clone());
        // Whatever secret came in stays here; the next tier gets this tier's own.
        req.remove_header(cdn_http::trust::HEADER);
        if let Some(secret) = &self.trust.presents {
            req.insert_header(cdn_http::trust::HEADER, secret.value())?;
        }
        if let Some(admitted) = &ctx.admitted {
            // The next tier gets the canonical target, so it decides exactly as this one did.
            let uri = admitted.upstream_target.parse::<http::Uri>().map_err(|e| {
                Error::because(pingora::ErrorType::InternalError, "canonical target", e)
            })?;
            req.set_uri(uri);
        }
        if let Some(slice) = ctx.slice {
            // Exactly the slice's bytes; the next tier keeps them as the same slice.
            req.insert_header(http::header::RANGE, slice.range())?;
            req.insert_header(slice::HEADER, slice.value())?;
        }
        Ok(())
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        let Some(admitted) = &ctx.admitted else {
            return Ok(RespCacheable::Uncacheable(NoCacheReason::NeverEnabled));
        };
        // Revalidated: the stored fields updated with the 304's (RFC 9111 §4.3.4), its `Age`
        // included, so the copy's age is the upstream's copy's.
        let merged = (ctx.not_modified.take())
            .map(|not_modified| cacheability::merge_not_modified(resp, &not_modified));
        if merged.is_none() && self.storage.degraded() {
            // The disk is failing: this miss passes through uncached rather than risk a
            // fill the disk cannot hold.
            return Ok(RespCacheable::Uncacheable(NoCacheReason::StorageError));
        }
        let decision = cacheability::decide(
            merged.as_ref().unwrap_or(resp),
            &admitted.policy,
            ctx.authorization,
        );
        if let RespCacheable::Cacheable(meta) = &decision {
            if let Some(variance) = cacheability::variance(meta.headers(), session.req_header()) {
                let mut key = ctx.key_of(admitted);
                key.set_variance_key(variance);
                if !self.storage.admits_variant(&key, self.max_variants) {
                    self.metrics.variant_refused();
                    return Ok(RespCacheable::Uncacheable(NoCacheReason::Custom(
                        "too many variants",
                    )));
                }
            }
            ctx.outcome.stored = true;
            ctx.outcome.fresh_until = Some(meta.fresh_until());
        }
        Ok(decision)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if resp.status.is_informational() {
            // An interim response (103 Early Hints, …) passes on as it came; the final one
            // follows.
            return Ok(());
        }
        ctx.upstream_answered = true;
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
        if let Some(slice) = ctx.slice {
            slices::upstream_answer(resp, slice)?;
        }
        ctx.upstream.cache_status = take(resp, cache_status::HEADER);
        ctx.upstream.server_timing = take(resp, server_timing::HEADER);
        resp.remove_header(request_id::HEADER);
        for name in cacheability::connection_listed(&resp.headers) {
            resp.remove_header(name.as_str());
        }
        if resp.status == http::StatusCode::NOT_MODIFIED {
            ctx.not_modified = Some(Box::new(resp.clone()));
        }
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
        if let Some(stale) =
            respond::stale_instead(resp.status, session.cache.can_serve_stale_error())
        {
            return Err(stale);
        }
        if let Some(admitted) = &ctx.admitted {
            if let Some(key) = packages::packument_key(admitted, resp.status.as_u16()) {
                // A version the stored packument may not list yet: every variant of it goes.
                self.storage.invalidate(key.combined_bin());
            }
            let method = ctx
                .upstream_method
                .as_ref()
                .unwrap_or(&session.req_header().method);
            if ctx.slice.is_none() {
                // A slice is part of a body: nothing whole to hash.
                ctx.integrity = Integrity::of(self.tier, admitted, method, resp);
            }
        }
        Ok(())
    }

    /// Runs before the cache sees each chunk (pingora-proxy's `h1_response_filter`): an error
    /// at the end of the body leaves the fill unfinished, so nothing is stored and the client's
    /// body stops short.
    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if let Some(integrity) = ctx.integrity.as_mut() {
            integrity.pass(body);
        }
        if end_of_stream {
            if let Some(started) = ctx.upstream_started.take() {
                self.metrics.upstream_last_byte(started.elapsed());
            }
            if let Some(Err(expected)) = ctx.integrity.take().map(|i| i.finish(body)) {
                self.metrics.integrity_failure();
                let path = ctx.admitted.as_ref().map_or("", |a| a.target.path());
                tracing::warn!(
                    path,
                    expected,
                    "upstream body does not match its digest: not stored, not served whole"
                );
                return Error::e_explain(
                    pingora::ErrorType::Custom("integrity"),
                    "upstream body does not match its digest",
                )
                .map_err(|e| e.into_up());
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
        if resp.status.is_informational() {
            return Ok(());
        }
        if !ctx.settled {
            outcome::settle(session, &mut ctx.outcome, ctx.looked_up);
        }
        if let Some(report) = &ctx.report {
            // A slice subrequest's answer is the asking request's to dress.
            Report {
                outcome: ctx.outcome,
                upstream: ctx.upstream.clone(),
            }
            .put(report);
            return Ok(());
        }
        if self.tier == Tier::Edge {
            // Aimed at the CDN's tiers (RFC 9213): clients never see it.
            resp.remove_header(cacheability::CDN_CACHE_CONTROL);
        }
        let points = ctx
            .admitted
            .as_ref()
            .is_some_and(|a| packages::points_tarballs(self.tier, a, resp.status.as_u16()));
        if points {
            let req = session.req_header();
            let host = admission::host(req);
            let host = host.as_deref().and_then(|h| h.to_str().ok());
            let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
            if let Some(origin) = packages::client_origin(host, tls) {
                // The body's length changes: sent chunked (HTTP/1.1) or framed (HTTP/2).
                resp.remove_header(&http::header::CONTENT_LENGTH);
                if req.version == http::Version::HTTP_11 {
                    resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
                }
                if req.method != http::Method::HEAD {
                    ctx.tarball_urls = Some(TarballUrls::new(&origin));
                }
            }
        }
        if ctx
            .admitted
            .as_ref()
            .is_some_and(|a| a.pass == Pass::Authenticated)
        {
            // Only some callers may have it: no shared cache past this tier may keep it.
            let private = cacheability::private_to_caller(&resp.headers);
            resp.insert_header(http::header::CACHE_CONTROL, private)?;
        }
        let method = &session.req_header().method;
        if !method.is_safe() && (resp.status.is_success() || resp.status.is_redirection()) {
            // An unsafe method that succeeded invalidates the stored copies of its target
            // (RFC 9111 §4.4).
            if let Some(admitted) = &ctx.admitted {
                self.storage.invalidate(admitted.cache_key().combined_bin());
            }
        }
        ctx.cache_status = self.decoration(ctx).apply(&mut Headers(resp));
        Ok(())
    }

    /// Hits and misses alike (pingora-proxy calls it from `proxy_cache_hit` too).
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if let Some(urls) = ctx.tarball_urls.as_mut() {
            urls.filter(body, end_of_stream);
        }
        Ok(None)
    }

    /// Stale copies are served while they revalidate (within their stale-while-revalidate
    /// window, which pingora-cache checks) and when the upstream fails (within stale-if-error).
    fn should_serve_stale(
        &self,
        _session: &mut Session,
        _ctx: &mut Ctx,
        error: Option<&Error>,
    ) -> bool {
        error.is_none_or(|e| e.esource() == &ErrorSource::Upstream)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        if e.esource() == &ErrorSource::Upstream && !ctx.upstream_counted {
            self.metrics.upstream(upstream_failure(e));
            ctx.upstream_counted = true;
        }
        let failure = respond::failure(e);
        let status = failure.as_ref().map_or(0, cdn_http::HttpError::status);
        if let Some(failure) = failure.filter(|_| session.response_written().is_none()) {
            // Nothing the upstream sent is passed on: the entry says only that this tier
            // looked (or not) and failed.
            ctx.outcome = Outcome::failed(ctx.looked_up, status);
            let naming = self.naming(session, ctx);
            match respond::error(session, &failure, naming, &self.decoration(ctx)).await {
                Ok(sent) => ctx.cache_status = sent,
                Err(e) => tracing::debug!(error = %e, "could not send the error response"),
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if ctx.probe || ctx.report.is_some() {
            // A probe is not a request; a slice subrequest is part of the one that asked.
            return;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if !ctx.settled {
            outcome::settle(session, &mut ctx.outcome, ctx.looked_up);
        }
        let req = session.req_header();
        Access {
            tier: self.tier,
            request_id: &ctx.request_id,
            method: req.method.as_str(),
            path: ctx
                .admitted
                .as_ref()
                .map_or(req.uri.path(), |a| a.target.path()),
            status,
            bytes: session.body_bytes_sent(),
            took: ctx.started.elapsed(),
            cache: ctx.outcome.result(status),
            cache_status: ctx.cache_status.as_deref().unwrap_or(""),
            error: e.map(|e| e.to_string()),
        }
        .record(self.metrics);
    }
}

fn upstream_failure(e: &Error) -> UpstreamResult {
    if respond::is_timeout(e) {
        UpstreamResult::Timeout
    } else {
        UpstreamResult::Error
    }
}
