//! One finished request, recorded once: into the tier's metrics and as one access-log line
//! (target `access`), with the same fields at every tier.

use crate::{CacheResult, Metrics, Tier};
use std::time::Duration;

/// What the access log and the metrics say about one request.
#[derive(Debug)]
pub struct Access<'a> {
    pub tier: Tier,
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// The status sent, or 0 when no response was sent (the client went away first).
    pub status: u16,
    /// Body bytes sent.
    pub bytes: usize,
    pub took: Duration,
    pub cache: CacheResult,
    /// The `Cache-Status` sent ("" where the tier sends none).
    pub cache_status: &'a str,
    pub error: Option<String>,
}

impl Access<'_> {
    pub fn record(&self, metrics: &Metrics) {
        metrics.request(self.cache, self.status, self.bytes, self.took);
        tracing::info!(
            target: "access",
            tier = self.tier.label(),
            request_id = %self.request_id,
            method = %self.method,
            path = %self.path,
            status = self.status,
            bytes = self.bytes,
            micros = self.took.as_micros() as u64,
            cache = self.cache.as_str(),
            cache_status = %self.cache_status,
            error = self.error.as_deref(),
            "request"
        );
    }
}
