//! Objects on a route with `slice` set, fetched and cached as slices (see `cdn_http::slice`).
//!
//! A GET from a client is answered here, before the cache: the tier asks itself, on its own
//! traffic listener, for the slices the request covers, one after the other, and streams the
//! bytes asked for. Each slice request goes through the tier like any other (looked up under
//! the object's key plus the slice, collapsed, filled from upstream with a `Range` for exactly
//! its bytes), so a range moves only the slices it covers, and each slice is kept and
//! revalidated on its own. The slices a request asks of itself carry a token only this tier
//! knows, which admits them past the gate: the client's request was already let through.
//!
//! At a tier asked for a slice (by itself, or by the edge in front): [`upstream_answer`] makes
//! the upstream's 206 for the slice's bytes a 200 of those bytes that names the whole length.

use bytes::Bytes;
use cdn_http::conditional::Validators;
use cdn_http::range::{self, RangeRequest};
use cdn_http::slice::{self, Slice};
use cdn_http::Secret;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use std::net::SocketAddr;
use std::time::Duration;

/// The header a tier's own slice requests carry its token in.
pub const INTERNAL: &str = "cdn-internal";

/// What a tier needs to ask itself for slices.
pub struct Assembler {
    own: SocketAddr,
    token: Secret,
    connector: Connector,
    timeout: Duration,
}

impl Assembler {
    /// Slices are asked of the listener at `own` (an unspecified address means loopback);
    /// each read waits at most `timeout`. The token is derived from `secret` (the one this tier
    /// presents upstream) when it has one, so that a process started by a graceful upgrade,
    /// which takes over the listener, knows the requests its predecessor still makes; else
    /// it is random.
    pub fn new(own: SocketAddr, timeout: Duration, secret: Option<&str>) -> Assembler {
        let own = if own.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), own.port())
        } else {
            own
        };
        let token = match secret {
            Some(secret) => format!("{secret}.self"),
            None => format!(
                "{:032x}{:032x}",
                rand::random::<u128>(),
                rand::random::<u128>()
            ),
        };
        Assembler {
            own,
            token: Secret::new(&token).expect("a token of hex digits"),
            connector: Connector::new(None),
            timeout,
        }
    }

    /// Whether a request is one of this tier's own slice requests.
    pub fn is_own(&self, req: &RequestHeader) -> bool {
        req.headers
            .get(INTERNAL)
            .is_some_and(|v| self.token.admits(Some(v.as_bytes())))
    }

    /// Answers a client's GET of `target` (the canonical target, encoded) from slices of
    /// `size` bytes.
    pub async fn answer(
        &self,
        session: &mut Session,
        target: &str,
        size: u64,
        request_id: &str,
    ) -> Result<()> {
        let asked = session
            .req_header()
            .headers
            .get(http::header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The client's preconditions, judged against the first slice's validators.
        let preconditions = session.req_header().headers.clone();
        // The first slice needed: the one holding the first byte asked for, when the range
        // says which without knowing the length.
        let start_hint = asked.as_deref().and_then(range::first_byte).unwrap_or(0);
        let mut first = self
            .fetch(target, Slice::holding(start_hint, size), request_id)
            .await?;
        let Some(total) = first.total() else {
            // Not sliced upstream (an error, a missing object): passed on as it is.
            return first.relay(session).await;
        };
        // `If-Range`: the range holds only for the version it names; for any other, the whole
        // object (RFC 9110 §13.1.5).
        let validators = Validators::of_response(&first.header.headers);
        let range_holds = validators.if_range_holds(&preconditions);
        let etag = first.header.headers.get(http::header::ETAG).cloned();
        let wanted = match asked.as_deref().filter(|_| range_holds) {
            None => RangeRequest::Full,
            Some(a) => range::parse(a, total),
        };
        let span = match &wanted {
            RangeRequest::Full => 0..total,
            RangeRequest::Bytes(r) => r.clone(),
            RangeRequest::Unsatisfiable => 0..0,
        };
        let mut resp = first.header.clone();
        for name in [
            http::header::CONTENT_LENGTH,
            http::header::CONTENT_RANGE,
            http::header::TRANSFER_ENCODING,
        ] {
            resp.remove_header(&name);
        }
        resp.remove_header(slice::TOTAL);
        resp.insert_header(http::header::ACCEPT_RANGES, "bytes")?;
        if validators.not_modified(&preconditions) {
            resp.set_status(304)?;
            session.write_response_header(Box::new(resp), true).await?;
            return Ok(());
        }
        match wanted {
            RangeRequest::Unsatisfiable => {
                resp.set_status(416)?;
                resp.insert_header(http::header::CONTENT_RANGE, format!("bytes */{total}"))?;
                resp.insert_header(http::header::CONTENT_LENGTH, 0)?;
                session.write_response_header(Box::new(resp), true).await?;
                return Ok(());
            }
            RangeRequest::Bytes(ref r) => {
                resp.set_status(206)?;
                resp.insert_header(
                    http::header::CONTENT_RANGE,
                    format!("bytes {}-{}/{total}", r.start, r.end - 1),
                )?;
            }
            RangeRequest::Full => resp.set_status(200)?,
        }
        resp.insert_header(http::header::CONTENT_LENGTH, span.end - span.start)?;
        session.write_response_header(Box::new(resp), false).await?;
        if span.is_empty() {
            session
                .write_response_body(Some(Bytes::new()), true)
                .await?;
            return Ok(());
        }

        let last = Slice::holding(span.end - 1, size).index;
        let mut at = Slice::holding(span.start, size);
        if at.index != first.slice.index {
            // A range from the end: the slice fetched to learn the length is not the first
            // one needed.
            first.release(&self.connector).await;
            first = self.fetch(target, at, request_id).await?;
            first.check(etag.as_ref(), total)?;
        }
        let mut current = first;
        loop {
            // This slice's bytes run from its first byte; send those inside the span.
            let mut offset = at.first_byte();
            while let Some(chunk) = current.body().await? {
                let (from, to) = (offset, offset + chunk.len() as u64);
                offset = to;
                let (keep_from, keep_to) = (from.max(span.start), to.min(span.end));
                if keep_from < keep_to {
                    let piece = chunk.slice((keep_from - from) as usize..(keep_to - from) as usize);
                    session.write_response_body(Some(piece), false).await?;
                }
            }
            let expected_end = (at.first_byte() + size).min(total);
            if offset != expected_end {
                return Error::e_explain(ErrorType::ReadError, "a slice ended short");
            }
            current.release(&self.connector).await;
            if at.index == last {
                break;
            }
            at.index += 1;
            current = self.fetch(target, at, request_id).await?;
            current.check(etag.as_ref(), total)?;
        }
        session
            .write_response_body(Some(Bytes::new()), true)
            .await?;
        Ok(())
    }

    /// Asks this tier for one slice; returns once its header is in.
    async fn fetch(&self, target: &str, slice: Slice, request_id: &str) -> Result<Fetched> {
        let peer = HttpPeer::new(self.own, false, String::new());
        let (mut http, _reused) = self.connector.get_http_session(&peer).await?;
        let mut req = RequestHeader::build("GET", target.as_bytes(), None)?;
        req.insert_header(http::header::HOST, "localhost")?;
        req.insert_header(INTERNAL, self.token.value())?;
        req.insert_header(slice::HEADER, slice.value())?;
        req.insert_header(cdn_observe::request_id::HEADER, request_id)?;
        http.set_read_timeout(Some(self.timeout));
        http.set_write_timeout(Some(self.timeout));
        http.write_request_header(Box::new(req)).await?;
        http.finish_request_body().await?;
        http.read_response_header().await?;
        let header = http
            .response_header()
            .ok_or_else(|| Error::explain(ErrorType::ReadError, "no slice header"))?
            .clone();
        Ok(Fetched {
            slice,
            header,
            http: Some(http),
            peer,
            done: false,
        })
    }
}

/// One slice's answer as it arrives.
struct Fetched {
    slice: Slice,
    header: ResponseHeader,
    http: Option<HttpSession>,
    peer: HttpPeer,
    done: bool,
}

impl Fetched {
    /// The whole object's length, if this is a slice's answer.
    fn total(&self) -> Option<u64> {
        if self.header.status != 200 {
            return None;
        }
        self.header
            .headers
            .get(slice::TOTAL)?
            .to_str()
            .ok()?
            .parse()
            .ok()
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

    async fn body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        let Some(http) = self.http.as_mut() else {
            return Ok(None);
        };
        let chunk = http.read_response_body().await?;
        if chunk.is_none() {
            self.done = true;
        }
        Ok(chunk)
    }

    /// Passes this answer on to the client as it is.
    async fn relay(mut self, session: &mut Session) -> Result<()> {
        let mut resp = self.header.clone();
        resp.remove_header(slice::TOTAL);
        let head_only = matches!(self.header.status.as_u16(), 204 | 304);
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if head_only {
            return Ok(());
        }
        while let Some(chunk) = self.body().await? {
            session.write_response_body(Some(chunk), false).await?;
        }
        session
            .write_response_body(Some(Bytes::new()), true)
            .await?;
        Ok(())
    }

    /// Gives the connection back for the next slice, if its answer was read to the end.
    async fn release(mut self, connector: &Connector) {
        if let (Some(http), true) = (self.http.take(), self.done) {
            connector
                .release_http_session(http, &self.peer, Some(Duration::from_secs(60)))
                .await;
        }
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
