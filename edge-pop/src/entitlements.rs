//! The entitlement document at the edge: fetched through the shields (as any object, with the
//! edge's tier secret) when the edge starts, then every `ttl`, and sooner — at most once per
//! `negative_ttl` — when a request presents an API key the document does not list (a key just
//! issued works within `negative_ttl`; a flood of bad keys causes one fetch per `negative_ttl`).
//! A failed fetch (the shields down, a broken document) keeps the document in force, for at
//! most `max_stale` after it was read (then API keys are refused, and `/readyz` says so), and
//! is retried after `negative_ttl`; a document the origin does not have (404) lists no keys.
//! Requests never wait for a fetch.

use bytes::Bytes;
use cdn_auth::{KeySource, KeyTable};
use cdn_config::ApiKeysConfig;
use cdn_proxy::{BackgroundService, Secret, ShutdownWatch};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Largest document read.
const MAX_DOCUMENT: usize = 16 << 20;

/// Keeps a `KeySource` current.
pub struct Refresher {
    source: Arc<KeySource>,
    config: ApiKeysConfig,
    shields: Vec<SocketAddr>,
    secret: Option<Secret>,
    timeout: Duration,
    nudge: Arc<Notify>,
}

/// Asks for an early fetch (the refresher decides whether it is due).
#[derive(Clone)]
pub struct Nudge(Arc<Notify>);

impl Nudge {
    pub fn unknown_key(&self) {
        self.0.notify_one();
    }
}

impl Refresher {
    pub fn new(
        source: Arc<KeySource>,
        config: ApiKeysConfig,
        shields: Vec<SocketAddr>,
        secret: Option<Secret>,
        timeout: Duration,
    ) -> (Refresher, Nudge) {
        let nudge = Arc::new(Notify::new());
        let refresher = Refresher {
            source,
            config,
            shields,
            secret,
            timeout,
            nudge: nudge.clone(),
        };
        (refresher, Nudge(nudge))
    }

    /// Fetches the document from the first shield that answers, and puts it in force.
    async fn refresh(&self) -> Result<usize, String> {
        let mut last = String::from("no shield");
        for &shield in &self.shields {
            match tokio::time::timeout(self.timeout, self.fetch(shield)).await {
                Ok(Ok(table)) => {
                    let keys = table.len();
                    self.source.set(table);
                    return Ok(keys);
                }
                Ok(Err(e)) => last = format!("{shield}: {e}"),
                Err(_) => last = format!("{shield}: timed out"),
            }
        }
        Err(last)
    }

    async fn fetch(&self, shield: SocketAddr) -> Result<KeyTable, String> {
        let stream = tokio::net::TcpStream::connect(shield)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = http::Request::get(self.config.document.as_str())
            .header(http::header::HOST, shield.to_string());
        if let Some(secret) = &self.secret {
            req = req.header(cdn_http::trust::HEADER, secret.value());
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        match resp.status() {
            http::StatusCode::OK => {
                let body = Limited::new(resp.into_body(), MAX_DOCUMENT)
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                KeyTable::parse(&body).map_err(|e| e.to_string())
            }
            http::StatusCode::NOT_FOUND => {
                tracing::warn!(document = %self.config.document, "entitlement document not found: no API key is accepted");
                Ok(KeyTable::default())
            }
            status => Err(format!("answered {status}")),
        }
    }
}

#[async_trait::async_trait]
impl BackgroundService for Refresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let fetched = Instant::now();
            let next = match self.refresh().await {
                Ok(keys) => {
                    tracing::info!(document = %self.config.document, keys, "entitlement document read");
                    fetched + self.config.ttl
                }
                Err(e) => {
                    tracing::warn!(document = %self.config.document, error = %e, "entitlement document not read; the one in force stays until it is max_stale old");
                    fetched + self.config.negative_ttl
                }
            };
            let early = async {
                self.nudge.notified().await;
                tokio::time::sleep_until(fetched + self.config.negative_ttl).await;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = early => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
