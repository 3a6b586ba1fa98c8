//! The one place a proxy tier writes a response of its own: refusals from `admission`, and
//! upstream failures. Status codes sit here; bodies are fixed short texts (details go to
//! the log). Every such response still carries `Age` and this tier's `Cache-Status` entry.

use super::admission::{Rejection, Tier};
use super::CACHE_STATUS;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType, Result};

/// The status for a failure while proxying, or 0 when the client is already gone.
pub fn failure_status(e: &Error) -> u16 {
    match (e.etype(), e.esource()) {
        (ErrorType::HTTPStatus(code), _) => *code,
        (
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
            ErrorSource::Upstream,
        ) => 504,
        (_, ErrorSource::Upstream) => 502,
        (
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
            ErrorSource::Downstream,
        ) => 0,
        (_, ErrorSource::Downstream) => 400,
        _ => 500,
    }
}

/// Answers a refused request.
pub async fn rejection(session: &mut Session, tier: Tier, r: &Rejection) -> Result<()> {
    let entry = format!("{}; fwd=bypass", tier.name());
    write(session, r.status, r.body.clone(), &entry, r.header).await
}

/// Answers a request whose upstream failed, unless a response has already started.
pub async fn failure(session: &mut Session, tier: Tier, status: u16, looked_up: bool) {
    if status == 0 || session.response_written().is_some() {
        return;
    }
    let fwd = if looked_up { "miss" } else { "bypass" };
    let entry = format!("{}; fwd={fwd}; detail=upstream-{status}", tier.name());
    let body = match status {
        504 => "upstream timed out\n",
        502 => "upstream unavailable\n",
        400 => "bad request\n",
        _ => "internal error\n",
    };
    if let Err(e) = write(session, status, body.to_owned(), &entry, None).await {
        tracing::debug!(error = %e, "could not send the error response");
    }
}

async fn write(
    session: &mut Session,
    status: u16,
    body: String,
    cache_status: &str,
    header: Option<(&'static str, &'static str)>,
) -> Result<()> {
    let body = Bytes::from(body);
    let mut resp = ResponseHeader::build(status, Some(6))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header(http::header::AGE, "0")?;
    resp.insert_header(CACHE_STATUS, cache_status)?;
    if let Some((name, value)) = header {
        resp.insert_header(name, value)?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}
