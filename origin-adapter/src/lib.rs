//! origin-adapter: serves the origin over HTTP (GET and HEAD) from S3-compatible storage or a
//! local directory, through object_store.
//!
//! This crate is the only one that knows object_store. It does not cache: every request is
//! answered from the backend, streamed, with validators, ranges and preconditions handled here.

pub mod backend;
pub mod conditional;
pub mod error;
pub mod observe;
pub mod range;
pub mod serve;
pub mod server;

use cdn_tier::config::Config;
use std::sync::Arc;

/// Builds the store, binds the listener and serves until SIGTERM/SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = backend::build(&config.origin)?;
    let origin = Arc::new(serve::Origin::new(
        store,
        config.routes.clone(),
        config.origin.timeout,
    ));
    let listener = tokio::net::TcpListener::bind(config.origin.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.origin.listen))?;
    tracing::info!(listen = %listener.local_addr()?, admin = ?config.origin.admin, "origin-adapter ready");
    if let Some(admin) = config.origin.admin {
        let admin = tokio::net::TcpListener::bind(admin)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {admin} (admin): {e}"))?;
        tokio::spawn(server::serve_admin(admin, origin.clone()));
    }
    server::serve(listener, origin, server::stop_signal()).await;
    Ok(())
}
