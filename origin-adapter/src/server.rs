//! The HTTP/1.1 listener: accepts connections, hands each request to `Origin`, and on SIGTERM
//! or SIGINT stops accepting and lets requests in flight finish within the grace period.

use crate::serve::Origin;
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
        let service = service_fn(move |req| {
            let origin = origin.clone();
            async move {
                let started = std::time::Instant::now();
                let resp = origin.handle(&req).await;
                tracing::info!(
                    method = %req.method(),
                    path = %req.uri().path(),
                    status = resp.status().as_u16(),
                    micros = started.elapsed().as_micros() as u64,
                    "request"
                );
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
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
