//! What the origin-adapter tells about each request: metrics (tier `origin`), the request id,
//! `Server-Timing`, and the access-log line written when the body is done.

use crate::serve::Body;
use bytes::Bytes;
use cdn_observe::access::Access;
use cdn_observe::decorate::UpstreamEntries;
use cdn_observe::{CacheResult, Decoration, Metrics, Tier};
use http::Response;
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
    Decoration {
        tier: Tier::Origin,
        request_id: &request_id,
        took: started.elapsed(),
        outcome: None,
        upstream: &UpstreamEntries::default(),
    }
    .apply(&mut parts.headers);
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
        // The adapter caches nothing: every request it answers is a bypass, or an error.
        let cache = if self.status >= 500 {
            CacheResult::Error
        } else {
            CacheResult::Bypass
        };
        Access {
            tier: Tier::Origin,
            request_id: &self.request_id,
            method: self.method.as_str(),
            path: &self.path,
            status: self.status,
            bytes: self.bytes,
            took: self.started.elapsed(),
            cache,
            cache_status: "",
            error: None,
        }
        .record(&self.metrics);
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
