//! The one place a proxy tier writes a response of its own: refusals from `admission`, and
//! upstream failures. Status codes sit here; bodies are fixed short texts (details go to
//! the log). Every such response still carries `Age`, this tier's `Cache-Status` and
//! `Server-Timing` entries, and the request id.

use super::admission::{Rejection, Tier};
use super::{observe, CACHE_STATUS};
use crate::request_id;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::time::Duration;

/// Who is answering, for the headers every response carries.
pub struct Reply<'a> {
    pub tier: Tier,
    pub request_id: &'a str,
    pub took: Duration,
}

/// Whether a failure is a timeout (connecting, reading or writing).
pub fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
    )
}

/// The status for a failure while proxying, or 0 when the client is already gone.
pub fn failure_status(e: &Error) -> u16 {
    match (e.etype(), e.esource()) {
        (ErrorType::HTTPStatus(code), _) => *code,
        (_, ErrorSource::Upstream) if is_timeout(e) => 504,
        (_, ErrorSource::Upstream) => 502,
        (
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
            ErrorSource::Downstream,
        ) => 0,
        (_, ErrorSource::Downstream) => 400,
        _ => 500,
    }
}

/// Answers a refused request; returns the `Cache-Status` it sent.
pub async fn rejection(session: &mut Session, reply: &Reply<'_>, r: &Rejection) -> Result<String> {
    let entry = format!("{}; fwd=bypass", reply.tier.name());
    write(session, reply, r.status, r.body.clone(), &entry, r.header).await?;
    Ok(entry)
}

/// Answers a request whose upstream failed, unless a response has already started; returns
/// the `Cache-Status` it sent.
pub async fn failure(
    session: &mut Session,
    reply: &Reply<'_>,
    status: u16,
    looked_up: bool,
) -> Option<String> {
    if status == 0 || session.response_written().is_some() {
        return None;
    }
    let fwd = if looked_up { "miss" } else { "bypass" };
    let entry = format!("{}; fwd={fwd}; detail=upstream-{status}", reply.tier.name());
    let body = match status {
        504 => "upstream timed out\n",
        502 => "upstream unavailable\n",
        400 => "bad request\n",
        _ => "internal error\n",
    };
    match write(session, reply, status, body.to_owned(), &entry, None).await {
        Ok(()) => Some(entry),
        Err(e) => {
            tracing::debug!(error = %e, "could not send the error response");
            None
        }
    }
}

async fn write(
    session: &mut Session,
    reply: &Reply<'_>,
    status: u16,
    body: String,
    cache_status: &str,
    header: Option<(&'static str, &'static str)>,
) -> Result<()> {
    let body = Bytes::from(body);
    let mut resp = ResponseHeader::build(status, Some(8))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header(http::header::AGE, "0")?;
    resp.insert_header(CACHE_STATUS, cache_status)?;
    resp.insert_header(
        observe::SERVER_TIMING,
        observe::server_timing(reply.tier, reply.took, None),
    )?;
    resp.insert_header(request_id::HEADER, reply.request_id)?;
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
