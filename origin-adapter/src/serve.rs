//! One request → one response: method and path checks, route policy, preconditions, range,
//! then the object's bytes streamed from the store (never held whole in memory).

use crate::backend::Stores;
use bytes::Bytes;
use cdn_config::{Naming, RoutePolicy, Routes};
use cdn_http::conditional::Validators;
use cdn_http::range::{self, RangeRequest};
use cdn_http::{HttpError, Secret, Target};
use cdn_observe::{Metrics, Tier, UpstreamResult};
use futures::StreamExt;
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED,
    RANGE,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use object_store::{Attribute, GetOptions, GetRange, GetResult, GetResultPayload, ObjectStore};
use std::io;
use std::sync::Arc;
use std::time::Duration;

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Chunk size for reading local files.
const FILE_CHUNK: usize = 256 * 1024;

/// Serves objects from the configured stores under the configured routes.
pub struct Origin {
    stores: Stores,
    routes: Routes,
    timeout: Duration,
    /// The secret a request must present (the shield's), if any.
    accepts: Option<Secret>,
    metrics: Arc<Metrics>,
}

impl Origin {
    pub fn new(stores: Stores, routes: Routes, timeout: Duration, accepts: Option<Secret>) -> Self {
        Origin {
            stores,
            routes,
            timeout,
            accepts,
            metrics: Arc::new(Metrics::new(Tier::Origin)),
        }
    }

    /// How long one backend operation may take.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Ready when the backend answers (a missing probe object counts as an answer).
    pub async fn ready(&self) -> Result<(), String> {
        let probe = object_store::path::Path::from(".readyz-probe");
        match tokio::time::timeout(
            self.timeout,
            object_store::ObjectStoreExt::head(self.stores.default(), &probe),
        )
        .await
        {
            Ok(Ok(_)) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
            Ok(Err(e)) => Err(format!("backend failed: {e}")),
            Err(_) => Err(format!("backend did not answer within {:?}", self.timeout)),
        }
    }

    /// Answers one request; failures become their status code with a short body.
    pub async fn handle<B>(&self, req: &Request<B>) -> Response<Body> {
        match self.respond(req).await {
            Ok(resp) => resp,
            Err(e) => {
                if e.is_server_error() {
                    tracing::warn!(path = %req.uri().path(), error = %e, "origin request failed");
                }
                error_response(&e)
            }
        }
    }

    /// Whether `req` presents the secret this adapter requires (if it requires one).
    fn trusted<B>(&self, req: &Request<B>) -> bool {
        self.accepts.as_ref().is_none_or(|secret| {
            let presented = req.headers().get(cdn_http::trust::HEADER);
            secret.admits(presented.map(|v| v.as_bytes()))
        })
    }

    /// The answer to the shield's health probe, if `req` is one (see `cdn_http::trust`).
    pub fn probe<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        if req.uri().path() != cdn_http::trust::HEALTH_PATH || framing_refused(req).is_err() {
            return None;
        }
        if !self.trusted(req) {
            return None;
        }
        let body = Full::new(Bytes::from_static(b"ok"))
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut resp = Response::new(body);
        resp.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        Some(resp)
    }

    async fn respond<B>(&self, req: &Request<B>) -> Result<Response<Body>, HttpError> {
        framing_refused(req)?;
        if !self.trusted(req) {
            return Err(HttpError::Forbidden { challenge: None });
        }
        let head_only = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => return Err(HttpError::MethodNotAllowed),
        };
        let target = Target::parse(req.uri(), req.headers().get(http::header::HOST))?;
        let (_, route) = self.routes.find(target.path()).ok_or(HttpError::NoRoute)?;
        let policy = &route.policy;
        let store = self.stores.of(&route.source);
        // What the path names below its route: a package, a repository's manifest, a file.
        let rest = route.rest(target.path());
        let answer = match policy.naming {
            Naming::Path => {
                let key = cdn_registry::join(&route.source.prefix, target.object_key());
                let headers = self.headers(policy, Freshness::Route);
                self.serve(req, head_only, store, &key, headers).await
            }
            Naming::Npm => crate::npm::answer(self, req, head_only, route, store, rest).await,
            Naming::Oci => {
                return Ok(crate::registry::answer(self, req, head_only, route, store, rest).await)
            }
        };
        match answer {
            // Missing: cacheable for the route's negative_ttl (if the route is cached), so a
            // flood of missing names reaches the backend once per name, not once per request.
            Err(HttpError::NotFound) => {
                let mut resp = error_response(&HttpError::NotFound);
                let value = cache_control(policy, Freshness::Missing);
                resp.headers_mut()
                    .insert(CACHE_CONTROL, value.parse().expect("ascii"));
                Ok(resp)
            }
            other => other,
        }
    }

    /// Serves the stored object at `key` whole, by range, or as a 304, with `headers` added
    /// (they win over the object's own).
    pub(crate) async fn serve<B>(
        &self,
        req: &Request<B>,
        head_only: bool,
        store: &Arc<dyn ObjectStore>,
        key: &str,
        headers_out: HeaderMap,
    ) -> Result<Response<Body>, HttpError> {
        if key.is_empty() || key.ends_with('/') {
            return Err(HttpError::NotFound);
        }
        let location = location(key)?;
        let headers = req.headers();
        let has_range = headers.contains_key(RANGE);
        let conditional = headers.contains_key(http::header::IF_NONE_MATCH)
            || headers.contains_key(http::header::IF_MODIFIED_SINCE);

        if !head_only && !has_range && !conditional {
            // The common case, one backend call: an unconditional GET of the whole object.
            let result = self.get(store, &location, GetOptions::default()).await?;
            return Ok(self.object_response(result, &headers_out, StatusCode::OK, None, true));
        }

        let info = self
            .get(
                store,
                &location,
                GetOptions {
                    head: true,
                    ..Default::default()
                },
            )
            .await?;
        let validators =
            Validators::new(info.meta.e_tag.as_deref(), info.meta.last_modified.into());
        if validators.not_modified(headers) {
            let mut resp = Response::builder().status(StatusCode::NOT_MODIFIED);
            let h = resp.headers_mut().expect("builder has no error yet");
            put_validators(h, &validators);
            for (name, value) in &headers_out {
                h.insert(name, value.clone());
            }
            return Ok(resp.body(empty()).expect("valid response"));
        }
        let size = info.meta.size;
        let wanted = match headers.get(RANGE).and_then(|v| v.to_str().ok()) {
            Some(value) if validators.if_range_holds(headers) => range::parse(value, size),
            _ => RangeRequest::Full,
        };
        match wanted {
            RangeRequest::Unsatisfiable => Err(HttpError::RangeNotSatisfiable { size }),
            _ if head_only => {
                Ok(self.object_response(info, &headers_out, StatusCode::OK, None, false))
            }
            RangeRequest::Full => {
                let result = self.get(store, &location, GetOptions::default()).await?;
                Ok(self.object_response(result, &headers_out, StatusCode::OK, None, true))
            }
            RangeRequest::Bytes(r) => {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(r.clone())),
                    ..Default::default()
                };
                let result = self.get(store, &location, options).await?;
                Ok(self.object_response(
                    result,
                    &headers_out,
                    StatusCode::PARTIAL_CONTENT,
                    Some(size),
                    true,
                ))
            }
        }
    }

    pub(crate) async fn get(
        &self,
        store: &Arc<dyn ObjectStore>,
        location: &object_store::path::Path,
        options: GetOptions,
    ) -> Result<GetResult, HttpError> {
        let started = std::time::Instant::now();
        let result =
            match tokio::time::timeout(self.timeout, store.get_opts(location, options)).await {
                Ok(result) => result.map_err(backend_error),
                Err(_) => Err(HttpError::UpstreamTimeout),
            };
        let outcome = match &result {
            Ok(_) | Err(HttpError::NotFound) => UpstreamResult::Ok,
            Err(HttpError::UpstreamTimeout) => UpstreamResult::Timeout,
            Err(_) => UpstreamResult::Error,
        };
        self.metrics.upstream(outcome);
        self.metrics.upstream_first_byte(started.elapsed());
        result
    }

    /// Headers from the object's metadata, and its body (empty for a HEAD result).
    fn object_response(
        &self,
        result: GetResult,
        headers_out: &HeaderMap,
        status: StatusCode,
        total_size: Option<u64>,
        with_body: bool,
    ) -> Response<Body> {
        let validators = Validators::new(
            result.meta.e_tag.as_deref(),
            result.meta.last_modified.into(),
        );
        let content_type = result
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.to_string())
            .unwrap_or_else(|| {
                mime_guess::from_path(result.meta.location.as_ref())
                    .first_or_octet_stream()
                    .essence_str()
                    .to_owned()
            });
        let range = result.range.clone();
        let mut resp = Response::builder().status(status);
        let h = resp.headers_mut().expect("builder has no error yet");
        h.insert(CONTENT_LENGTH, (range.end - range.start).into());
        if let Ok(v) = content_type.parse() {
            h.insert(CONTENT_TYPE, v);
        }
        put_validators(h, &validators);
        h.insert(ACCEPT_RANGES, "bytes".parse().expect("ascii"));
        for (name, value) in headers_out {
            h.insert(name, value.clone());
        }
        if let Some(total) = total_size {
            let value = format!(
                "bytes {}-{}/{total}",
                range.start,
                range.end.saturating_sub(1)
            );
            h.insert(CONTENT_RANGE, value.parse().expect("ascii"));
        }
        let body = if with_body && !range.is_empty() {
            self.body(result)
        } else {
            empty()
        };
        resp.body(body).expect("valid response")
    }

    /// The object's bytes as a stream; a backend read slower than the timeout aborts it.
    fn body(&self, result: GetResult) -> Body {
        let timeout = self.timeout;
        let (metrics, started) = (self.metrics.clone(), std::time::Instant::now());
        let range = result.range.clone();
        let chunks = match result.payload {
            GetResultPayload::File(file, _) => file_chunks(file, range),
            GetResultPayload::Stream(stream) => stream.map(|r| r.map_err(io::Error::other)).boxed(),
        };
        let frames = futures::stream::unfold(chunks, move |mut chunks| {
            let metrics = metrics.clone();
            async move {
                match tokio::time::timeout(timeout, chunks.next()).await {
                    Ok(Some(Ok(bytes))) => Some((Ok(Frame::data(bytes)), chunks)),
                    Ok(Some(Err(e))) => Some((Err(e), chunks)),
                    Ok(None) => {
                        metrics.upstream_last_byte(started.elapsed());
                        None
                    }
                    Err(_) => Some((
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "backend read timed out",
                        )),
                        chunks,
                    )),
                }
            }
        });
        StreamBody::new(frames).boxed_unsync()
    }
}

/// Reads `range` of a local file in large chunks off the async workers.
fn file_chunks(
    file: std::fs::File,
    range: std::ops::Range<u64>,
) -> futures::stream::BoxStream<'static, io::Result<Bytes>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let open = async move {
        let mut file = tokio::fs::File::from_std(file);
        file.seek(io::SeekFrom::Start(range.start)).await?;
        Ok::<_, io::Error>(tokio_util::io::ReaderStream::with_capacity(
            file.take(range.end - range.start),
            FILE_CHUNK,
        ))
    };
    futures::stream::once(open)
        .map(|opened| match opened {
            Ok(stream) => stream.boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
}

fn put_validators(h: &mut HeaderMap, v: &Validators) {
    if let Some(etag) = v.etag.as_deref().and_then(|e| e.parse().ok()) {
        h.insert(ETAG, etag);
    }
    if let Some(date) = v.last_modified_header() {
        h.insert(LAST_MODIFIED, date.parse().expect("http date is ascii"));
    }
}

/// How long what a response carries stays fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The route's `ttl`: files, and what a name may point at later (tags, packuments).
    Route,
    /// The route's `negative_ttl`: a missing object.
    Missing,
    /// Forever: what is named by its digest (blobs, manifests by digest) or never changes once
    /// published (npm tarballs).
    Immutable,
}

/// A year: how long an immutable object is kept fresh (RFC 8246's `immutable` tells clients
/// not to revalidate it either).
const IMMUTABLE_SECS: u64 = 365 * 24 * 3600;

/// What downstream caches are told: to keep the response for as long as `freshness` says
/// (and, for what may change, to serve it stale while one request refreshes it, within the
/// route's `stale_while_revalidate`), or not to store it at all.
pub fn cache_control(policy: &RoutePolicy, freshness: Freshness) -> String {
    if !policy.cacheable {
        return "no-store".to_owned();
    }
    let lifetime = match freshness {
        Freshness::Route => policy.ttl.as_secs(),
        Freshness::Missing => policy.negative_ttl.as_secs(),
        Freshness::Immutable => return format!("public, max-age={IMMUTABLE_SECS}, immutable"),
    };
    match policy.stale_while_revalidate.as_secs() {
        0 => format!("public, max-age={lifetime}"),
        swr => format!("public, max-age={lifetime}, stale-while-revalidate={swr}"),
    }
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// What a backend failure means to the client: a missing object is a 404; anything else is
/// the storage failing (502), its cause kept for the log.
pub(crate) fn backend_error(e: object_store::Error) -> HttpError {
    match e {
        object_store::Error::NotFound { .. } => HttpError::NotFound,
        other => HttpError::Upstream(Box::new(other)),
    }
}

impl Origin {
    /// The headers every answer under `policy` with this freshness carries.
    pub(crate) fn headers(&self, policy: &RoutePolicy, freshness: Freshness) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            CACHE_CONTROL,
            cache_control(policy, freshness).parse().expect("ascii"),
        );
        h
    }

    /// A small stored object read whole (a link file, a manifest, a packument), with its
    /// metadata; larger than `limit` is a backend failure, not a document.
    pub(crate) async fn read_small(
        &self,
        store: &Arc<dyn ObjectStore>,
        key: &str,
        limit: u64,
    ) -> Result<(Bytes, object_store::ObjectMeta), HttpError> {
        let location = location(key)?;
        let result = self.get(store, &location, GetOptions::default()).await?;
        if result.meta.size > limit {
            return Err(HttpError::upstream(format!(
                "{key} is {} bytes, more than the {limit} a document may have",
                result.meta.size
            )));
        }
        let meta = result.meta.clone();
        let bytes = tokio::time::timeout(self.timeout, result.bytes())
            .await
            .map_err(|_| HttpError::UpstreamTimeout)?
            .map_err(backend_error)?;
        Ok((bytes, meta))
    }

    /// Whether a (small) object exists.
    pub(crate) async fn exists(
        &self,
        store: &Arc<dyn ObjectStore>,
        key: &str,
    ) -> Result<bool, HttpError> {
        let location = location(key)?;
        let head = GetOptions {
            head: true,
            ..Default::default()
        };
        match self.get(store, &location, head).await {
            Ok(_) => Ok(true),
            Err(HttpError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Where a key is in the store; a key object_store refuses is a bad request.
fn location(key: &str) -> Result<object_store::path::Path, HttpError> {
    object_store::path::Path::parse(key)
        .map_err(|_| HttpError::BadRequest("not a valid object key"))
}

/// An `ETag` for a document made here, from its own bytes: a changed document is a new
/// entity, an unchanged one revalidates with a 304.
pub(crate) fn content_etag(body: &[u8]) -> String {
    format!(
        "\"{}\"",
        &cdn_registry::digest::Digest::of(body).hex()[..32]
    )
}

/// A document made here (a packument, a manifest, a tag list): `200` with its body, or `304`
/// when the request's validators match its `etag`; no body for HEAD. `headers` carry the
/// content type, caching and anything else the answer needs.
pub(crate) fn document<B>(
    req: &Request<B>,
    head_only: bool,
    body: Bytes,
    etag: &str,
    last_modified: std::time::SystemTime,
    headers: HeaderMap,
) -> Response<Body> {
    let validators = Validators::new(Some(etag), last_modified);
    let not_modified = validators.not_modified(req.headers());
    let status = if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut resp = Response::builder().status(status);
    let h = resp.headers_mut().expect("builder has no error yet");
    put_validators(h, &validators);
    for (name, value) in &headers {
        h.insert(name, value.clone());
    }
    if not_modified {
        return resp.body(empty()).expect("valid response");
    }
    h.insert(CONTENT_LENGTH, body.len().into());
    let body = if head_only {
        empty()
    } else {
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync()
    };
    resp.body(body).expect("valid response")
}

/// The response for a request the adapter will not or cannot serve.
/// Refuses a GET or HEAD that carries a body, before anything else (`cdn_http::framing`); its
/// answer closes the connection, so the body is never read as a request.
fn framing_refused<B>(req: &Request<B>) -> Result<(), HttpError> {
    let body_empty = !cdn_http::framing::h1_body_follows(req.headers());
    cdn_http::framing::check(req.method(), body_empty)
}

pub(crate) fn error_response(e: &HttpError) -> Response<Body> {
    let body = e.body();
    let mut resp = Response::builder()
        .status(e.status())
        .header(CONTENT_LENGTH, body.len());
    for (name, value) in e.headers() {
        resp = resp.header(name, value);
    }
    resp.body(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    )
    .expect("valid response")
}
