//! Builds the object store the adapter serves from. Only this crate knows object_store.

use cdn_tier::config::{Backend, OriginConfig};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("local root {path}: {source}")]
    LocalRoot {
        path: String,
        source: object_store::Error,
    },
    #[error("s3 backend: {0}")]
    S3(object_store::Error),
    #[error("s3 backend: {0} is not set in the environment")]
    MissingCredential(&'static str),
}

/// The store described by `origin.backend`. S3 credentials come from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and (optionally) `AWS_SESSION_TOKEN`.
pub fn build(origin: &OriginConfig) -> Result<Arc<dyn ObjectStore>, BackendError> {
    match &origin.backend {
        Backend::Local { root } => {
            let store = LocalFileSystem::new_with_prefix(root).map_err(|source| {
                BackendError::LocalRoot {
                    path: root.display().to_string(),
                    source,
                }
            })?;
            Ok(Arc::new(store))
        }
        Backend::S3(s3) => {
            let env = |name: &'static str| {
                std::env::var(name).map_err(|_| BackendError::MissingCredential(name))
            };
            // Retries must end well inside the client-facing timeout: a CDN origin answers
            // fast or not at all, and the shield has its own retry and stale logic.
            let retry = RetryConfig {
                max_retries: 1,
                retry_timeout: origin.timeout,
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(500),
                    base: 2.0,
                },
            };
            // No whole-request timeout: a large object may take longer than `timeout` to
            // stream. The adapter bounds the wait for the first byte and for each chunk
            // itself (→ 504); the client's read timeout sits just behind as a backstop.
            let client = ClientOptions::new()
                .with_timeout_disabled()
                .with_read_timeout(origin.timeout + Duration::from_secs(1))
                .with_connect_timeout(origin.timeout.min(Duration::from_secs(5)))
                .with_allow_http(s3.allow_http);
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(&s3.bucket)
                .with_region(&s3.region)
                .with_virtual_hosted_style_request(!s3.path_style)
                .with_allow_http(s3.allow_http)
                .with_access_key_id(env("AWS_ACCESS_KEY_ID")?)
                .with_secret_access_key(env("AWS_SECRET_ACCESS_KEY")?)
                .with_retry(retry)
                .with_client_options(client);
            if let Ok(token) = std::env::var("AWS_SESSION_TOKEN") {
                builder = builder.with_token(token);
            }
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            let store = builder.build().map_err(BackendError::S3)?;
            if s3.prefix.is_empty() {
                Ok(Arc::new(store))
            } else {
                Ok(Arc::new(PrefixStore::new(store, s3.prefix.as_str())))
            }
        }
    }
}
