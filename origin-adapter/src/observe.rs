//! What the origin-adapter tells about each request: metrics (tier `origin`), the request id,
//! `Server-Timing`, and the access-log line written when the body is done.

use crate::serve::Body;
use bytes::Bytes;
use cdn_tier::metrics::{CacheResult, Metrics};
use cdn_tier::request_id;
use http::{HeaderValue, Response};
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// Adds the request id and `Server-Timing` to a response, and wraps its body so that the
/// request is counted and logged when the body ends (or the client goes away).
pub fn finish(
    resp: Response<Body>,
    metrics: Arc<Metrics>,
    request_id: String,
    method: http::Method,
    path: String,
    started: Instant,
) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    let took = started.elapsed();
    let timing = format!("origin;dur={:.3}", took.as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&timing) {
        parts.headers.insert("server-timing", v);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        parts.headers.insert(request_id::HEADER, v);
    }
    let status = parts.status.as_u16();
    let log = Logged {
        metrics,
        request_id,
        method,
        path,
        status,
        started,
        bytes: 0,
    };
    Response::from_parts(
        parts,
        http_body_util::BodyExt::boxed_unsync(Metered { inner: body, log }),
    )
}

struct Logged {
    metrics: Arc<Metrics>,
    request_id: String,
    method: http::Method,
    path: String,
    status: u16,
    started: Instant,
    bytes: usize,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        let result = if self.status >= 500 {
            CacheResult::Error
        } else {
            CacheResult::Bypass
        };
        self.metrics.request(result, self.status, self.bytes, took);
        tracing::info!(
            target: "access",
            tier = "origin",
            request_id = %self.request_id,
            method = %self.method,
            path = %self.path,
            status = self.status,
            bytes = self.bytes,
            micros = took.as_micros() as u64,
            "request"
        );
    }
}

/// A body that counts what it sends; its `Logged` records the request when it is dropped.
struct Metered {
    inner: Body,
    log: Logged,
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.log.bytes += data.len();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
