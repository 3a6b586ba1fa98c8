//! Builds the object store the adapter serves from. Only this crate knows object_store.

use cdn_config::{Backend, OriginConfig, Source};
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

/// Where S3 credentials come from. Never from the config file.
#[derive(Clone)]
pub enum Credentials {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (optionally) `AWS_SESSION_TOKEN`, read
    /// when the store is built: what the binary uses.
    Environment,
    /// Given by the caller (a test running the adapter in-process).
    Given {
        access_key_id: String,
        secret_access_key: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        match self {
            Credentials::Environment => write!(f, "Credentials::Environment"),
            Credentials::Given { access_key_id, .. } => {
                write!(f, "Credentials::Given({access_key_id})")
            }
        }
    }
}

/// The stores routes read from: `origin.backend`, and `origin.backends` by name.
#[derive(Clone)]
pub struct Stores {
    default: Arc<dyn ObjectStore>,
    named: std::collections::HashMap<String, Arc<dyn ObjectStore>>,
}

impl Stores {
    /// A single store for every route (tests, and tools that publish into it).
    pub fn single(store: Arc<dyn ObjectStore>) -> Stores {
        Stores {
            default: store,
            named: Default::default(),
        }
    }

    pub fn default(&self) -> &Arc<dyn ObjectStore> {
        &self.default
    }

    /// The store a route's source names (validation made sure it exists).
    pub fn of(&self, source: &Source) -> &Arc<dyn ObjectStore> {
        source
            .backend
            .as_ref()
            .and_then(|name| self.named.get(name))
            .unwrap_or(&self.default)
    }
}

/// The stores `origin.backend` and `origin.backends` describe.
pub fn build(origin: &OriginConfig, credentials: &Credentials) -> Result<Stores, BackendError> {
    let mut named = std::collections::HashMap::new();
    for (name, backend) in &origin.backends {
        named.insert(name.clone(), one(backend, origin, credentials)?);
    }
    Ok(Stores {
        default: one(&origin.backend, origin, credentials)?,
        named,
    })
}

fn one(
    backend: &Backend,
    origin: &OriginConfig,
    credentials: &Credentials,
) -> Result<Arc<dyn ObjectStore>, BackendError> {
    match backend {
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
            let (key_id, secret, token) = match credentials {
                Credentials::Environment => (
                    env("AWS_ACCESS_KEY_ID")?,
                    env("AWS_SECRET_ACCESS_KEY")?,
                    std::env::var("AWS_SESSION_TOKEN").ok(),
                ),
                Credentials::Given {
                    access_key_id,
                    secret_access_key,
                } => (access_key_id.clone(), secret_access_key.clone(), None),
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
                .with_access_key_id(key_id)
                .with_secret_access_key(secret)
                .with_retry(retry)
                .with_client_options(client);
            if let Some(token) = token {
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
