//! Memory-tier hits answered in `request_filter`, before pingora-cache is involved: the
//! common request (a GET or HEAD of a fresh copy that stands for every request) skips the
//! cache state machine, the rebuilt `CacheMeta` and its second header copy, the variance
//! hashing and the range and conditional filters, which have nothing to do for it
//! (benches/README.md, "Where a hit's time goes"). Anything else goes the whole way.
//!
//! What pingora-cache would do for such a hit is done here the same way: the stored header
//! with `Age` (whole seconds since the copy was stored or revalidated), as HTTP/1.1, chunked
//! where no length is stored, `Accept-Ranges: bytes` on a 200 of known length; then the tier's own `response_filter`, the downstream modules,
//! and the body as the shared pieces it is stored in.

use bytes::Bytes;
use cdn_cache::{HybridStorage, Object};
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use std::sync::Arc;
use std::time::SystemTime;

/// Request fields that ask more of the cache than a plain hit: validators, ranges, and the
/// client's own cache directives (RFC 9111 §5.2.1); such requests go through pingora-cache.
const ASKS_MORE: [header::HeaderName; 9] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::CACHE_CONTROL,
    header::PRAGMA,
    header::AUTHORIZATION,
];

/// Whether the request is one a memory hit may answer here: GET or HEAD, asking nothing of
/// the cache beyond the copy.
pub fn plain_request(req: &RequestHeader) -> bool {
    (req.method == http::Method::GET || req.method == http::Method::HEAD)
        && !ASKS_MORE.iter().any(|name| req.headers.contains_key(name))
}

/// A copy to answer with, and the header it goes out with.
pub struct QuickHit {
    pub object: Arc<Object>,
    pub header: Box<ResponseHeader>,
    pub fresh_until: SystemTime,
}

/// The memory tier's fresh copy of `key` (a combined hash), with the header a pingora-cache
/// hit would send; `None` when there is none, or it is stale, or it varies.
pub fn lookup(storage: &HybridStorage, key: &[u8; 16]) -> Option<QuickHit> {
    let object = storage.in_memory(key)?;
    let fresh = object.fresh_for_all(SystemTime::now())?;
    let mut header = Box::new(fresh.header.clone());
    header.insert_header(header::AGE, fresh.age).ok()?;
    header.set_version(http::Version::HTTP_11);
    let no_body = matches!(header.status.as_u16(), 204 | 304);
    if !no_body
        && !header.status.is_informational()
        && !header.headers.contains_key(header::CONTENT_LENGTH)
    {
        header
            .insert_header(header::TRANSFER_ENCODING, "chunked")
            .ok()?;
    }
    // pingora's range filter, for a request without `Range`: a 200 of known length says
    // ranges of it may be asked for.
    let length = header
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if header.status == http::StatusCode::OK && length.is_some() {
        header.insert_header(header::ACCEPT_RANGES, "bytes").ok()?;
    }
    let fresh_until = fresh.fresh_until;
    Some(QuickHit {
        object,
        header,
        fresh_until,
    })
}

/// The body's pieces, each with whether it is the last (an empty body is one empty last
/// piece).
pub fn pieces(object: &Object) -> impl Iterator<Item = (Bytes, bool)> + '_ {
    let body = object.body();
    let empty = body.is_empty().then(|| (Bytes::new(), true));
    body.iter()
        .enumerate()
        .map(move |(i, piece)| (piece.clone(), i + 1 == body.len()))
        .chain(empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, field: Option<(&str, &str)>) -> RequestHeader {
        let mut req = RequestHeader::build(method, b"/a", None).unwrap();
        if let Some((name, value)) = field {
            req.insert_header(name.to_owned(), value).unwrap();
        }
        req
    }

    #[test]
    fn only_a_plain_read_is_answered_before_the_cache() {
        assert!(plain_request(&request("GET", None)));
        assert!(plain_request(&request("HEAD", None)));
        assert!(plain_request(&request("GET", Some(("accept", "*/*")))));
        assert!(!plain_request(&request("POST", None)));
        for name in ASKS_MORE {
            assert!(
                !plain_request(&request("GET", Some((name.as_str(), "x")))),
                "{name}"
            );
        }
    }
}
