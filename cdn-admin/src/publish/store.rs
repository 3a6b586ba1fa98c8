//! Where a publish writes: a directory or an S3-compatible bucket, through object_store, the
//! same client the origin-adapter reads with, so both agree on what a key is.

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::path::Path;
use std::sync::Arc;

/// How to reach an `s3://` destination; ignored for a directory.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// An S3-compatible server (`http://127.0.0.1:9100`); AWS when absent.
    pub endpoint: Option<String>,
    pub region: String,
    /// Given credentials (a test's); `None` reads them from the environment, as the command
    /// line does.
    pub credentials: Option<S3Credentials>,
}

impl Default for S3Options {
    fn default() -> S3Options {
        S3Options {
            endpoint: None,
            region: "us-east-1".to_owned(),
            credentials: None,
        }
    }
}

#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(f, "S3Credentials({})", self.access_key_id)
    }
}

/// The store a publish writes into, and how to name it in messages.
#[derive(Clone)]
pub struct Dest {
    store: Arc<dyn ObjectStore>,
    shown: String,
}

impl std::fmt::Debug for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dest({})", self.shown)
    }
}

impl Dest {
    /// `to` is a directory path (made if missing) or `s3://bucket[/prefix]`; S3 credentials
    /// come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (never from arguments, which
    /// other users can see in the process list).
    pub fn open(to: &str, s3: &S3Options) -> Result<Dest, String> {
        match to.strip_prefix("s3://") {
            Some(rest) => Dest::bucket(rest, s3),
            None => Dest::directory(Path::new(to)),
        }
    }

    /// A directory, made if missing; keys are paths under it.
    pub fn directory(dir: &Path) -> Result<Dest, String> {
        let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", dir.display());
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| fail(&e))?;
        Ok(Dest {
            store: Arc::new(store),
            shown: dir.display().to_string(),
        })
    }

    fn bucket(rest: &str, s3: &S3Options) -> Result<Dest, String> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("s3://{rest}: no bucket named"));
        }
        let env =
            |name: &str| std::env::var(name).map_err(|_| format!("s3://{rest}: {name} is not set"));
        let (key_id, secret) = match &s3.credentials {
            Some(given) => (given.access_key_id.clone(), given.secret_access_key.clone()),
            None => (env("AWS_ACCESS_KEY_ID")?, env("AWS_SECRET_ACCESS_KEY")?),
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&s3.region)
            .with_virtual_hosted_style_request(false)
            .with_access_key_id(key_id)
            .with_secret_access_key(secret);
        if let (None, Ok(token)) = (&s3.credentials, std::env::var("AWS_SESSION_TOKEN")) {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &s3.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().map_err(|e| format!("s3://{rest}: {e}"))?;
        let prefix = prefix.trim_matches('/');
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(store)
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        Ok(Dest {
            store,
            shown: format!("s3://{rest}"),
        })
    }

    /// The object at `key`, `None` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, String> {
        let location = self.key(key)?;
        match self.store.get(&location).await {
            Ok(result) => result
                .bytes()
                .await
                .map(Some)
                .map_err(|e| self.fail(key, &e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(key, &e)),
        }
    }

    /// The size of the object at `key`, `None` when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, String> {
        let location = self.key(key)?;
        match self.store.head(&location).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(key, &e)),
        }
    }

    /// Writes `bytes` at `key`, whole: readers see the old object or the new one.
    pub async fn put(&self, key: &str, bytes: impl Into<Bytes>) -> Result<(), String> {
        let location = self.key(key)?;
        self.store
            .put(&location, PutPayload::from_bytes(bytes.into()))
            .await
            .map(drop)
            .map_err(|e| self.fail(key, &e))
    }

    fn key(&self, key: &str) -> Result<Key, String> {
        Key::parse(key).map_err(|e| self.fail(key, &e))
    }

    fn fail(&self, key: &str, e: &dyn std::fmt::Display) -> String {
        format!("{}: {key}: {e}", self.shown)
    }
}
