//! Objects on a route with `slice` set, fetched and cached as slices (see `cdn_http::slice`).
//!
//! A GET from a client is answered in `request_filter`, before the cache: the tier asks itself
//! for the slices the request covers, one after the other, as subrequests run inside this
//! process (Pingora's subrequests: each goes through every phase as a client's request does,
//! and its answer comes back over a channel), and streams the bytes asked for. Each slice is
//! looked up under the object's key plus the slice, collapsed, and filled from upstream with a
//! `Range` for exactly its bytes, so a range moves only the slices it covers, and each slice is
//! kept and revalidated on its own. What makes a request a slice subrequest is its [`Order`],
//! in the subrequest's context, which only this process sets: nothing a client sends does.
//!
//! The slices' own answers are raw: not dressed, not logged; each reports what its fetch did
//! ([`Report`]) to the request that asked. The assembled answer's header is built here from
//! the first slice's, then goes through the tier's response step like every answer it sends.
//!
//! A fresh stored first slice says the object's length and validators before anything is
//! fetched: a range past the end, or a precondition that holds, is answered from it. An
//! object not stored yet that answers a range past its end with a 416 has its first slice
//! fetched (and kept) to say its length.
//!
//! At a tier asked for a slice by the edge in front: [`upstream_answer`] makes the upstream's
//! 206 for the slice's bytes a 200 of those bytes that names the whole length.

use crate::admission::Admitted;
use bytes::Bytes;
use cdn_cache::HybridStorage;
use cdn_http::conditional::Validators;
use cdn_http::range::{self, RangeRequest};
use cdn_http::slice::{self, Slice};
use cdn_observe::decorate::UpstreamEntries;
use cdn_observe::{CacheUse, Outcome};
use pingora::cache::key::CacheHashKey;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::subrequest::server::SubrequestHandle;
use pingora::protocols::http::v1::client::http_req_header_to_wire;
use pingora::protocols::http::{HttpTask, ServerSession};
use pingora::proxy::{subrequest, Session};
use pingora::{Error, ErrorType, Result};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// What a slice subrequest is asked for, set by the request that spawns it.
pub struct Order {
    pub slice: Slice,
    /// The asking request's id: one request, one id, in every tier's log.
    pub request_id: String,
    /// Where the subrequest tells what its fetch did.
    pub report: Arc<Mutex<Report>>,
}

/// What one slice's fetch did, for the `Cache-Status` and the log line of the request that
/// asked for it.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub outcome: Outcome,
    pub upstream: UpstreamEntries,
}

impl Report {
    /// Put where the asking request reads it.
    pub fn put(self, into: &Mutex<Report>) {
        *into.lock().unwrap_or_else(|e| e.into_inner()) = self;
    }
}

/// The order of a slice subrequest, if `session` is one of this tier's.
pub fn order(session: &Session) -> Option<&Order> {
    session
        .subrequest_ctx
        .as_ref()?
        .user_ctx()?
        .downcast_ref::<Order>()
}

/// The session a slice subrequest is made from: a plain HTTP/1.1 GET of the object, read off
/// memory. Nothing of the client's request comes along (its credentials, preconditions, range
/// and cache directives were judged by the request that asked), whatever protocol it came in.
async fn asking(target: &str) -> Result<ServerSession> {
    let mut req = RequestHeader::build("GET", target.as_bytes(), None)?;
    req.insert_header(http::header::HOST, "localhost")?;
    let wire = http_req_header_to_wire(&req)
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "a slice's request line"))?;
    let mut session = ServerSession::new_http1(Box::new(std::io::Cursor::new(wire.to_vec())));
    session.read_request().await?;
    Ok(session)
}

/// Answers a client's GET of a sliced object from slices asked of this tier.
pub struct Assembler {
    storage: &'static HybridStorage,
    /// How long each read of a slice's answer may wait.
    timeout: Duration,
}

/// The answer to a client's GET of a sliced object: its header, to be dressed and sent, then
/// the body to stream after it.
pub struct Assembly {
    pub header: Box<ResponseHeader>,
    /// The header ends the answer (no body follows).
    pub header_only: bool,
    /// What the fetches did, for this request's `Cache-Status` and log line.
    pub report: Report,
    /// What `Assembler::stream` sends once the header is sent.
    pub body: Rest,
}

/// The body an assembly's header announced, still to be sent.
pub struct Rest(Body);

enum Body {
    None,
    Empty,
    /// An upstream answer that is not a slice's (an error, a missing object), as it came.
    Relay(Fetched),
    /// These bytes of the object, from its slices; the first one needed may already be here.
    Span {
        span: Range<u64>,
        size: u64,
        total: u64,
        etag: Option<http::HeaderValue>,
        target: String,
        request_id: String,
        fetched: Option<Fetched>,
    },
}

impl Assembler {
    /// Slices are asked of this tier (whose storage holds them); each read waits at most
    /// `timeout`.
    pub fn new(storage: &'static HybridStorage, timeout: Duration) -> Assembler {
        Assembler { storage, timeout }
    }

    /// Works out the answer to a client's GET of `admitted` from slices of `size` bytes,
    /// fetching what it needs to know; `stream` sends its body once its header is sent.
    pub async fn plan(
        &self,
        session: &mut Session,
        admitted: &Admitted,
        size: u64,
        request_id: &str,
    ) -> Result<Assembly> {
        let req = session.req_header();
        let asked = req
            .headers
            .get(http::header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The client's preconditions, judged against the first slice's validators.
        let preconditions = req.headers.clone();
        let conditional = [http::header::IF_NONE_MATCH, http::header::IF_MODIFIED_SINCE]
            .iter()
            .any(|name| preconditions.contains_key(name));
        let target = admitted.upstream_target.clone();
        let first_slice = Slice { index: 0, size };
        // The first slice needed: the one holding the first byte asked for, when the range
        // says which without knowing the length.
        let mut start_hint = asked.as_deref().and_then(range::first_byte).unwrap_or(0);
        if asked.is_some() || conditional {
            if let Some(stored) = self.stored(admitted, first_slice).await {
                match Plan::of(&stored.header, asked.as_deref(), &preconditions) {
                    Some(plan @ (Plan::NotModified | Plan::Unsatisfiable)) => {
                        let report = Report {
                            outcome: Outcome {
                                cache: CacheUse::Hit,
                                fresh_until: Some(stored.fresh_until),
                                ..Outcome::default()
                            },
                            upstream: UpstreamEntries::default(),
                        };
                        return Ok(plan.answer(
                            &stored.header,
                            report,
                            None,
                            size,
                            target,
                            request_id,
                        ));
                    }
                    // The stored length says where the answer starts (a range that an
                    // `If-Range` voids starts at 0, wherever it pointed).
                    Some(Plan::Full) => start_hint = 0,
                    Some(Plan::Bytes(r)) => start_hint = r.start,
                    None => {}
                }
            }
        }
        let mut first = self
            .fetch(
                session,
                &target,
                Slice::holding(start_hint, size),
                request_id,
            )
            .await?;
        if first.total().is_none() && first.header.status == 416 && first.slice.index > 0 {
            // Past the end of an object not stored yet: its first slice says the length, and
            // is kept to say it again.
            first = self
                .fetch(session, &target, first_slice, request_id)
                .await?;
        }
        let report = first.report();
        let Some(plan) = Plan::of(&first.header, asked.as_deref(), &preconditions) else {
            // Not sliced upstream (an error, a missing object): passed on as it came.
            let mut header = Box::new(first.header.clone());
            header.remove_header(slice::TOTAL);
            let header_only = matches!(header.status.as_u16(), 204 | 304);
            let body = if header_only {
                Body::None
            } else {
                Body::Relay(first)
            };
            return Ok(Assembly {
                header,
                header_only,
                report,
                body: Rest(body),
            });
        };
        let header = first.header.clone();
        Ok(plan.answer(&header, report, Some(first), size, target, request_id))
    }

    /// Sends the body an assembly's header announced.
    pub async fn stream(&self, session: &mut Session, rest: Rest) -> Result<()> {
        match rest.0 {
            Body::None => Ok(()),
            Body::Empty => session.write_response_body(Some(Bytes::new()), true).await,
            Body::Relay(mut answer) => {
                while let Some(chunk) = answer.body(self.timeout).await? {
                    session.write_response_body(Some(chunk), false).await?;
                }
                session.write_response_body(Some(Bytes::new()), true).await
            }
            Body::Span {
                span,
                size,
                total,
                etag,
                target,
                request_id,
                fetched,
            } => {
                let last = Slice::holding(span.end - 1, size).index;
                let mut at = Slice::holding(span.start, size);
                let mut current = match fetched.filter(|f| f.slice == at) {
                    Some(first) => first,
                    // A range from the end: the slice fetched to learn the length is not the
                    // first one needed.
                    None => self.fetch(session, &target, at, &request_id).await?,
                };
                loop {
                    current.check(etag.as_ref(), total)?;
                    // This slice's bytes run from its first byte; send those inside the span.
                    let mut offset = at.first_byte();
                    while let Some(chunk) = current.body(self.timeout).await? {
                        let (from, to) = (offset, offset + chunk.len() as u64);
                        offset = to;
                        let (keep_from, keep_to) = (from.max(span.start), to.min(span.end));
                        if keep_from < keep_to {
                            let piece =
                                chunk.slice((keep_from - from) as usize..(keep_to - from) as usize);
                            session.write_response_body(Some(piece), false).await?;
                        }
                    }
                    let expected_end = (at.first_byte() + size).min(total);
                    if offset != expected_end {
                        return Error::e_explain(ErrorType::ReadError, "a slice ended short");
                    }
                    if at.index == last {
                        break;
                    }
                    at.index += 1;
                    current = self.fetch(session, &target, at, &request_id).await?;
                }
                session.write_response_body(Some(Bytes::new()), true).await
            }
        }
    }

    /// The stored first slice's header, when it is fresh (a fill of it running counts).
    async fn stored(&self, admitted: &Admitted, first: Slice) -> Option<Stored> {
        let key = admitted.slice_key(first).combined_bin();
        let meta = self.storage.stored_meta(&key).await?;
        let now = SystemTime::now();
        if !meta.is_fresh(now) {
            return None;
        }
        let header = meta.response_header();
        header.headers.contains_key(slice::TOTAL).then(|| Stored {
            header: header.clone(),
            fresh_until: meta.fresh_until(),
        })
    }

    /// Asks this tier for one slice, as a subrequest of the client's request; returns once
    /// its header is in.
    async fn fetch(
        &self,
        session: &Session,
        target: &str,
        slice: Slice,
        request_id: &str,
    ) -> Result<Fetched> {
        let spawner = session.subrequest_spawner.as_ref().ok_or_else(|| {
            Error::explain(ErrorType::InternalError, "no subrequests for this request")
        })?;
        let report = Arc::new(Mutex::new(Report::default()));
        let order = Order {
            slice,
            request_id: request_id.to_owned(),
            report: report.clone(),
        };
        let ctx = subrequest::Ctx::builder().user_ctx(Box::new(order)).build();
        let (subrequest, mut handle) = spawner.create_subrequest(&asking(target).await?, ctx);
        tokio::spawn(subrequest.run());
        loop {
            match next(&mut handle, self.timeout).await? {
                HttpTask::Header(header, end) if !header.status.is_informational() => {
                    return Ok(Fetched {
                        slice,
                        header: *header,
                        handle,
                        report,
                        done: end,
                    });
                }
                HttpTask::Header(..) => {}
                HttpTask::Failed(e) => return Err(e),
                _ => {
                    return Error::e_explain(
                        ErrorType::ReadError,
                        "a slice's body before its header",
                    )
                }
            }
        }
    }
}

/// A stored slice's header, and until when it is fresh.
struct Stored {
    header: ResponseHeader,
    fresh_until: SystemTime,
}

/// What a request asks of an object, once its first slice's header is known.
enum Plan {
    NotModified,
    Unsatisfiable,
    Full,
    Bytes(Range<u64>),
}

impl Plan {
    /// The plan for a request (its `Range`, its preconditions) against a slice's header;
    /// `None` when the header is not a slice's.
    fn of(
        first: &ResponseHeader,
        asked: Option<&str>,
        preconditions: &http::HeaderMap,
    ) -> Option<Plan> {
        let total = total_of(first)?;
        let validators = Validators::of_response(&first.headers);
        if validators.not_modified(preconditions) {
            return Some(Plan::NotModified);
        }
        // `If-Range`: the range holds only for the version it names; for any other, the whole
        // object (RFC 9110 §13.1.5).
        let range_holds = validators.if_range_holds(preconditions);
        Some(match asked.filter(|_| range_holds) {
            None => Plan::Full,
            Some(a) => match range::parse(a, total) {
                RangeRequest::Full => Plan::Full,
                RangeRequest::Bytes(r) => Plan::Bytes(r),
                RangeRequest::Unsatisfiable => Plan::Unsatisfiable,
            },
        })
    }

    /// The answer this plan makes of an object whose first slice answered `first`.
    fn answer(
        self,
        first: &ResponseHeader,
        report: Report,
        fetched: Option<Fetched>,
        size: u64,
        target: String,
        request_id: &str,
    ) -> Assembly {
        let total = total_of(first).unwrap_or_default();
        let mut header = Box::new(first.clone());
        for name in [
            http::header::CONTENT_LENGTH,
            http::header::CONTENT_RANGE,
            http::header::TRANSFER_ENCODING,
        ] {
            header.remove_header(&name);
        }
        header.remove_header(slice::TOTAL);
        let _ = header.insert_header(http::header::ACCEPT_RANGES, "bytes");
        let set = |header: &mut ResponseHeader, status: u16, length: u64| {
            let _ = header.set_status(status);
            let _ = header.insert_header(http::header::CONTENT_LENGTH, length);
        };
        let span = match self {
            Plan::NotModified => {
                let _ = header.set_status(304);
                return Assembly {
                    header,
                    header_only: true,
                    report,
                    body: Rest(Body::None),
                };
            }
            Plan::Unsatisfiable => {
                set(&mut header, 416, 0);
                let _ =
                    header.insert_header(http::header::CONTENT_RANGE, format!("bytes */{total}"));
                return Assembly {
                    header,
                    header_only: true,
                    report,
                    body: Rest(Body::None),
                };
            }
            Plan::Full => {
                set(&mut header, 200, total);
                0..total
            }
            Plan::Bytes(r) => {
                set(&mut header, 206, r.end - r.start);
                let _ = header.insert_header(
                    http::header::CONTENT_RANGE,
                    format!("bytes {}-{}/{total}", r.start, r.end - 1),
                );
                r
            }
        };
        let body = if span.is_empty() {
            Body::Empty
        } else {
            Body::Span {
                span,
                size,
                total,
                etag: first.headers.get(http::header::ETAG).cloned(),
                target,
                request_id: request_id.to_owned(),
                fetched,
            }
        };
        Assembly {
            header,
            header_only: false,
            report,
            body: Rest(body),
        }
    }
}

/// The whole object's length, if `header` is a slice's answer.
fn total_of(header: &ResponseHeader) -> Option<u64> {
    if header.status != 200 {
        return None;
    }
    header
        .headers
        .get(slice::TOTAL)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The next task of a subrequest's answer, waiting at most `timeout`; a subrequest that ends
/// without saying its answer is done is an error (its body was cut).
async fn next(handle: &mut SubrequestHandle, timeout: Duration) -> Result<HttpTask> {
    match tokio::time::timeout(timeout, handle.rx.recv()).await {
        Err(_) => Error::e_explain(ErrorType::ReadTimedout, "a slice did not answer in time"),
        Ok(None) => Error::e_explain(ErrorType::ReadError, "a slice ended short"),
        Ok(Some(task)) => Ok(task),
    }
}

/// One slice's answer as it arrives.
struct Fetched {
    slice: Slice,
    header: ResponseHeader,
    handle: SubrequestHandle,
    report: Arc<Mutex<Report>>,
    done: bool,
}

impl Fetched {
    /// The whole object's length, if this is a slice's answer.
    fn total(&self) -> Option<u64> {
        total_of(&self.header)
    }

    /// What the slice's fetch did (its response step ran before its header was sent).
    fn report(&self) -> Report {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A later slice must be of the same object: same length, same validator.
    fn check(&self, etag: Option<&http::HeaderValue>, total: u64) -> Result<()> {
        let same = self.total() == Some(total)
            && etag.is_none_or(|e| self.header.headers.get(http::header::ETAG) == Some(e));
        if same {
            Ok(())
        } else {
            Error::e_explain(
                ErrorType::HTTPStatus(502),
                "the object changed between its slices",
            )
        }
    }

    async fn body(&mut self, timeout: Duration) -> Result<Option<Bytes>> {
        while !self.done {
            match next(&mut self.handle, timeout).await? {
                HttpTask::Body(chunk, end) => {
                    self.done = end;
                    if let Some(chunk) = chunk.filter(|c| !c.is_empty()) {
                        return Ok(Some(chunk));
                    }
                }
                HttpTask::Done => self.done = true,
                HttpTask::Failed(e) => return Err(e),
                _ => {}
            }
        }
        Ok(None)
    }
}

/// At a tier asked for `slice`: the upstream's answer for the slice's bytes made what is
/// stored — a 206 becomes a 200 of those bytes naming the whole length in `cdn-slice-total`;
/// a whole object that fits in slice 0 (an upstream that ignored the range) stands as it; an
/// empty object (416 for `bytes */0`) is an empty slice 0. An answer for other bytes than the
/// slice's is an error, never stored.
pub fn upstream_answer(resp: &mut ResponseHeader, slice: Slice) -> Result<()> {
    if resp.headers.contains_key(slice::TOTAL) {
        // Already a slice's answer (from a shield).
        return Ok(());
    }
    let wrong = |why: &'static str| Error::e_explain(ErrorType::HTTPStatus(502), why);
    let content_range = resp
        .headers
        .get(http::header::CONTENT_RANGE)
        .map(|v| v.as_bytes().to_vec());
    match resp.status.as_u16() {
        206 => {
            let Some((first, last, total)) =
                content_range.as_deref().and_then(slice::content_range)
            else {
                return wrong("a slice's Content-Range");
            };
            let expected_last = (slice.first_byte() + slice.size).min(total) - 1;
            if first != slice.first_byte() || last != expected_last {
                return wrong("a slice answered with other bytes");
            }
            resp.set_status(200)?;
            resp.remove_header(&http::header::CONTENT_RANGE);
            resp.insert_header(http::header::CONTENT_LENGTH, last - first + 1)?;
            resp.insert_header(slice::TOTAL, total)?;
        }
        200 => {
            let length = resp
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            match length {
                Some(len) if slice.index == 0 && len <= slice.size => {
                    resp.insert_header(slice::TOTAL, len)?;
                }
                _ => return wrong("the upstream sent a whole object for a slice"),
            }
        }
        416 if slice.index == 0 && content_range.as_deref() == Some(b"bytes */0") => {
            resp.set_status(200)?;
            resp.remove_header(&http::header::CONTENT_RANGE);
            resp.insert_header(http::header::CONTENT_LENGTH, 0)?;
            resp.insert_header(slice::TOTAL, 0)?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_206_becomes_the_stored_slice() {
        let slice = Slice { index: 2, size: 10 };
        let mut resp = ResponseHeader::build(206, None).unwrap();
        resp.insert_header("content-range", "bytes 20-29/95")
            .unwrap();
        resp.insert_header("content-length", "10").unwrap();
        upstream_answer(&mut resp, slice).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.headers[slice::TOTAL], "95");
        assert_eq!(resp.headers["content-length"], "10");
        assert!(!resp.headers.contains_key("content-range"));

        // A Content-Range for other bytes than the slice's is refused: shorter, or elsewhere.
        for other in ["bytes 0-9/95", "bytes 20-25/95", "bytes 20-30/95"] {
            let mut resp = ResponseHeader::build(206, None).unwrap();
            resp.insert_header("content-range", other).unwrap();
            assert!(upstream_answer(&mut resp, slice).is_err(), "{other}");
        }
        // The last slice is short by right.
        let last = Slice { index: 9, size: 10 };
        let mut resp = ResponseHeader::build(206, None).unwrap();
        resp.insert_header("content-range", "bytes 90-94/95")
            .unwrap();
        upstream_answer(&mut resp, last).unwrap();
        assert_eq!(resp.headers["content-length"], "5");

        // An empty object is an empty slice 0; a whole object bigger than a slice is refused.
        let zero = Slice { index: 0, size: 10 };
        let mut resp = ResponseHeader::build(416, None).unwrap();
        resp.insert_header("content-range", "bytes */0").unwrap();
        upstream_answer(&mut resp, zero).unwrap();
        assert_eq!(
            (
                resp.status.as_u16(),
                resp.headers[slice::TOTAL].to_str().unwrap()
            ),
            (200, "0")
        );
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-length", "11").unwrap();
        assert!(upstream_answer(&mut resp, zero).is_err());
    }
}
