//! What the admin listener every tier serves apart from its traffic answers: `/metrics`
//! (Prometheus text format), `/healthz` (the process answers: 200) and `/readyz` (200 when it
//! can serve: cache index loaded and an upstream reachable; 503 with the reason otherwise).
//! Each tier serves these answers with its own HTTP library.

use crate::metrics::Metrics;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// How long `/readyz` waits for an upstream to accept a connection.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// An admin response.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(status: u16, body: impl Into<String>) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }
}

/// Answers an admin request for `path`; `ready` is asked only for `/readyz`.
pub async fn answer<F>(path: &str, metrics: &Metrics, ready: impl FnOnce() -> F) -> Answer
where
    F: Future<Output = Result<(), String>>,
{
    match path {
        "/metrics" => Answer {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: metrics.render(),
        },
        "/healthz" => Answer::text(200, "ok\n"),
        "/readyz" => match ready().await {
            Ok(()) => Answer::text(200, "ready\n"),
            Err(why) => Answer::text(503, format!("not ready: {why}\n")),
        },
        _ => Answer::text(404, "not found: try /metrics, /healthz or /readyz\n"),
    }
}

/// Ok if any of `addrs` accepts a TCP connection within the probe timeout.
pub async fn any_reachable(addrs: &[SocketAddr]) -> Result<(), String> {
    for addr in addrs {
        if let Ok(Ok(_)) =
            tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await
        {
            return Ok(());
        }
    }
    Err(format!(
        "no upstream reachable ({})",
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}
