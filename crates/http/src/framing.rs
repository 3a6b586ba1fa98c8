//! Whether a request's body is one a tier takes. A GET or HEAD carries none: a tier that
//! forwarded one, or left it unread while a fill went on, held a session and its upstream
//! request open after the client left (a body cut short kept two descriptors per tier for
//! good), and a body that itself looks like a request could be read as the next one. Such a
//! request is refused before anything else at every tier, and its connection closed.

use crate::HttpError;
use http::{header, HeaderMap, Method};

/// Refuses a GET or HEAD whose body is not known to be empty. `body_empty` is what the
/// server's HTTP layer says of the framing: no `Content-Length` (or 0) and no
/// `Transfer-Encoding` in HTTP/1.1 ([`h1_body_follows`]), the stream ended with the header
/// in HTTP/2.
pub fn check(method: &Method, body_empty: bool) -> Result<(), HttpError> {
    let reads = method == Method::GET || method == Method::HEAD;
    if reads && !body_empty {
        return Err(HttpError::BodyOnRead);
    }
    Ok(())
}

/// Whether an HTTP/1.1 request head says a body follows (RFC 9112 §6.3): any
/// `Transfer-Encoding`, or a `Content-Length` that is not a number of value 0 (`0`, `00`: none;
/// an unreadable one: a body).
pub fn h1_body_follows(headers: &HeaderMap) -> bool {
    let zero = |v: &[u8]| !v.is_empty() && v.iter().all(|b| *b == b'0');
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| !zero(v.as_bytes().trim_ascii()))
}

/// The fields that frame a request's body, dropped from a read before it goes on: it has no
/// body, and the next tier must not read one into it.
pub const BODY_FIELDS: [header::HeaderName; 2] =
    [header::CONTENT_LENGTH, header::TRANSFER_ENCODING];

#[cfg(test)]
mod tests {
    use super::*;

    fn head(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in fields {
            h.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn reads_carry_no_body() {
        for method in [Method::GET, Method::HEAD] {
            assert!(check(&method, true).is_ok());
            assert!(matches!(check(&method, false), Err(HttpError::BodyOnRead)));
        }
        for method in [Method::PUT, Method::POST, Method::DELETE] {
            assert!(check(&method, false).is_ok(), "{method}: a write may");
        }
    }

    #[test]
    fn h1_framing_says_whether_a_body_follows() {
        let follows = |fields: &[(&str, &str)]| h1_body_follows(&head(fields));
        assert!(!follows(&[]));
        assert!(!follows(&[("content-length", "0")]));
        assert!(
            !follows(&[("content-length", "00")]),
            "a zero in any spelling"
        );
        assert!(follows(&[("content-length", "10")]));
        assert!(follows(&[("content-length", "0"), ("content-length", "5")]));
        assert!(
            follows(&[("content-length", "x")]),
            "unreadable is not empty"
        );
        for odd in ["+0", "-0", "0x0", "0, 0", ""] {
            assert!(follows(&[("content-length", odd)]), "{odd:?}");
        }
        assert!(follows(&[("transfer-encoding", "chunked")]));
        assert!(follows(&[("transfer-encoding", "gzip, chunked")]));
    }
}
