//! Blocking disk work (reads, writes, page faults on maps) runs on tokio's blocking pool,
//! never on the proxy's async workers.

use pingora_error::{Error, ErrorType, OrErr, Result};

/// Runs blocking disk work on tokio's blocking pool, never on the async workers; a failure
/// keeps its cause.
pub async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(done) => done.or_err(ErrorType::InternalError, what),
        Err(e) => Err(Error::because(ErrorType::InternalError, what, e)),
    }
}
