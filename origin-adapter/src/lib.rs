//! origin-adapter: serves the origin over HTTP (GET and HEAD) from S3-compatible storage or a
//! local directory, through object_store.
//!
//! This crate is the only tier that knows object_store. It does not cache and does not link the
//! proxy library or the cache: every request is answered from the backend, streamed, with
//! validators, ranges and preconditions handled here.
//!
//! `OriginAdapter` is the tier as a value: built from the config with its listeners bound (port
//! 0 allowed, the ports it got readable before it serves), then served until a stop future
//! resolves — by the binary until a signal, by tests in-process.

pub mod backend;
mod npm;
pub mod observe;
mod registry;
pub mod serve;
pub mod server;

pub use backend::Credentials;

use cdn_config::{Config, Listen};
use cdn_http::Secret;
use std::future::Future;
use std::sync::Arc;

/// Why the adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
    #[error("trust.shield_to_origin: {0}")]
    Secret(#[from] cdn_http::trust::SecretError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// The origin-adapter, its listeners bound, not yet serving.
pub struct OriginAdapter {
    origin: Arc<serve::Origin>,
    traffic: std::net::TcpListener,
    admin: Option<std::net::TcpListener>,
}

impl OriginAdapter {
    /// Builds the store, reads the secret it requires of the shield (`trust.shield_to_origin`),
    /// and binds the listeners `origin.listen` names.
    pub fn bind(config: &Config, credentials: &Credentials) -> Result<OriginAdapter, StartError> {
        let origin = &config.origin;
        let store = backend::build(origin, credentials)?;
        let accepts = match &config.trust {
            Some(trust) => Some(Secret::read(&trust.shield_to_origin)?),
            None => None,
        };
        let bind = |addr| {
            let listener =
                std::net::TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l));
            listener.map_err(|source| StartError::Listen { addr, source })
        };
        Ok(OriginAdapter {
            origin: Arc::new(serve::Origin::new(
                store,
                config.routes.clone(),
                origin.timeout,
                accepts,
            )),
            traffic: bind(origin.listen.traffic)?,
            admin: origin.listen.admin.map(bind).transpose()?,
        })
    }

    /// Where it listens, with the ports it got.
    pub fn listen(&self) -> Listen {
        let local = |l: &std::net::TcpListener| l.local_addr().expect("a bound listener");
        Listen {
            traffic: local(&self.traffic),
            tls: None,
            admin: self.admin.as_ref().map(local),
        }
    }

    /// Serves until `stop` resolves, then lets requests in flight finish within the grace
    /// period. Must run inside a tokio runtime.
    pub async fn serve(self, stop: impl Future<Output = ()>) -> std::io::Result<()> {
        tracing::info!(listen = %self.listen(), "origin-adapter ready");
        let admin = match self.admin {
            Some(admin) => {
                let admin = tokio::net::TcpListener::from_std(admin)?;
                Some(tokio::spawn(server::serve_admin(
                    admin,
                    self.origin.clone(),
                )))
            }
            None => None,
        };
        let traffic = tokio::net::TcpListener::from_std(self.traffic)?;
        server::serve(traffic, self.origin, stop).await;
        if let Some(admin) = admin {
            admin.abort();
            // Returns once the task is gone, and its listener closed with it.
            let _ = admin.await;
        }
        Ok(())
    }
}

impl OriginAdapter {
    /// Serves on a runtime of its own (two worker threads) until the returned handle is
    /// stopped or dropped.
    pub fn spawn(self) -> std::io::Result<RunningAdapter> {
        let listen = self.listen();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("origin-adapter")
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("origin-adapter".into())
            .spawn(move || {
                let stopped = async {
                    let _ = stopped.await;
                };
                if let Err(e) = runtime.block_on(self.serve(stopped)) {
                    tracing::warn!(error = %e, "origin-adapter stopped on an error");
                }
                // Whatever still runs (bodies past the grace period) ends here.
                runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            })?;
        Ok(RunningAdapter {
            listen,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// An origin-adapter serving in-process. Dropping it stops it, as `stop` does.
pub struct RunningAdapter {
    listen: Listen,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningAdapter {
    pub fn listen(&self) -> Listen {
        self.listen
    }

    /// Stops accepting, lets requests in flight finish within the grace period, and waits
    /// until the listeners are closed.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningAdapter {
    fn drop(&mut self) {
        self.stop_now();
    }
}
