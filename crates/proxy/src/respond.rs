//! How a proxy tier's responses are dressed and, when it answers itself, written: the headers
//! every response carries come from `cdn_observe::decorate` (here written into Pingora's
//! response header), and an error's status, body and headers from `cdn_http::HttpError`. This
//! module maps Pingora's failures onto that one error type.

use crate::packages;
use bytes::Bytes;
use cdn_config::Naming;
use cdn_http::HttpError;
use cdn_observe::{Decoration, HeaderSink};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType, Result};

/// Pingora's response header as `cdn_observe` writes into it.
pub struct Headers<'a>(pub &'a mut ResponseHeader);

impl HeaderSink for Headers<'_> {
    fn contains(&self, name: &str) -> bool {
        self.0.headers.contains_key(name)
    }

    fn set(&mut self, name: &'static str, value: &str) {
        if let Err(e) = self.0.insert_header(name, value) {
            tracing::debug!(name, error = %e, "header not set");
        }
    }
}

/// Whether a failure is a timeout (connecting, reading or writing).
pub fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
    )
}

/// An upstream's answer that is better replaced by the stale copy being revalidated, when
/// there is one within its stale-if-error window: Pingora weighs that for 5xx only, so a 429
/// (the upstream sheds load; RFC 6585) is turned into the error Pingora encodes a 5xx as, which
/// `should_serve_stale` accepts like theirs. `None`: the answer goes on as it is.
pub fn stale_instead(status: http::StatusCode, can_serve_stale: bool) -> Option<Box<Error>> {
    (status == http::StatusCode::TOO_MANY_REQUESTS && can_serve_stale).then(|| {
        Error::create(
            ErrorType::HTTPStatus(status.as_u16()),
            ErrorSource::Upstream,
            Some("upstream 429 while a stale copy may be served".into()),
            None,
        )
    })
}

/// What to tell the client about a failure while proxying; `None` when the client is gone and
/// nothing can be sent.
pub fn failure(e: &Error) -> Option<HttpError> {
    Some(match (e.etype(), e.esource()) {
        // Pingora encodes an upstream's 5xx this way when it weighs serving stale.
        // (and so does this tier for an upstream's 429 while a stale copy could stand in:
        // `stale_instead`).
        (ErrorType::HTTPStatus(code), _) => HttpError::UpstreamStatus(*code),
        (_, ErrorSource::Upstream) if is_timeout(e) => HttpError::UpstreamTimeout,
        (_, ErrorSource::Upstream) => HttpError::upstream(e.to_string()),
        (
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
            ErrorSource::Downstream,
        ) => return None,
        (_, ErrorSource::Downstream) => HttpError::Unreadable,
        _ => HttpError::internal(e.to_string()),
    })
}

/// Answers a health probe from the tier in front (`cdn_http::trust::HEALTH_PATH`): this tier is
/// here and reading requests.
pub async fn probe(session: &mut Session) -> Result<()> {
    let mut resp = ResponseHeader::build(200, Some(3))?;
    resp.insert_header(http::header::CONTENT_LENGTH, 2)?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from_static(b"ok")), true)
        .await
}

/// Writes `error` as this tier's own answer, dressed by `decoration`, in the form the route's
/// `naming` calls for (the registry's JSON errors on oci routes, every other field kept);
/// returns the `Cache-Status` it sent.
pub async fn error(
    session: &mut Session,
    error: &HttpError,
    naming: Naming,
    decoration: &Decoration<'_>,
) -> Result<Option<String>> {
    let mut resp = ResponseHeader::build(error.status(), Some(8))?;
    let h2 = session.req_header().version == http::Version::HTTP_2;
    for (name, value) in error.headers() {
        if h2 && name == "connection" {
            // HTTP/2 has no connection fields; the stream ends with this answer.
            continue;
        }
        resp.insert_header(name, value)?;
    }
    if error.closes_connection() {
        session.set_keepalive(None);
    }
    let body = match packages::own_error(naming, error.status()) {
        Some((body, fields)) => {
            for (name, value) in fields {
                resp.insert_header(name, value)?;
            }
            Bytes::from(body)
        }
        None => Bytes::from(error.body()),
    };
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    let cache_status = decoration.apply(&mut Headers(&mut resp));
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(cache_status)
}
