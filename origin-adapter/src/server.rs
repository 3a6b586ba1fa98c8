//! The HTTP/1.1 listener: accepts connections, hands each request to `Origin`, and on SIGTERM
//! or SIGINT stops accepting and lets requests in flight finish within the grace period.

use crate::observe;
use crate::serve::Origin;
use cdn_observe::request_id;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a stop waits for requests in flight.
const GRACE: Duration = Duration::from_secs(5);

/// Serves until `stop` resolves, then drains.
pub async fn serve(listener: TcpListener, origin: Arc<Origin>, stop: impl Future<Output = ()>) {
    let metrics = origin.metrics();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let origin = origin.clone();
        let metrics = metrics.clone();
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let (origin, metrics) = (origin.clone(), metrics.clone());
            async move {
                if let Some(resp) = origin.probe(&req) {
                    return Ok::<_, Infallible>(resp);
                }
                let started = std::time::Instant::now();
                let incoming = req.headers().get(request_id::HEADER).map(|v| v.as_bytes());
                // The shield in front is trusted to pass its request id on.
                let id = request_id::pick(incoming, true);
                let resp = origin.handle(&req).await;
                let path = req.uri().path().to_owned();
                Ok::<_, Infallible>(observe::finish(
                    resp,
                    metrics,
                    id,
                    req.method().clone(),
                    path,
                    started,
                ))
            }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    // New connections are refused from here on; those already accepted finish.
    drop(listener);
    tracing::info!("stopping: draining connections");
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The admin listener: `/metrics`, `/healthz`, `/readyz` (the backend answers).
pub async fn serve_admin(listener: TcpListener, origin: Arc<Origin>) {
    let http = hyper::server::conn::http1::Builder::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let origin = origin.clone();
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let origin = origin.clone();
            async move {
                let metrics = origin.metrics();
                let a =
                    cdn_observe::admin::answer(req.uri().path(), &metrics, || origin.ready()).await;
                let resp = http::Response::builder()
                    .status(a.status)
                    .header(http::header::CONTENT_TYPE, a.content_type)
                    .header(http::header::CACHE_CONTROL, "no-store")
                    .body(http_body_util::Full::new(bytes::Bytes::from(a.body)))
                    .expect("valid admin response");
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
