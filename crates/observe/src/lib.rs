//! What a tier tells about each request, the same way at every tier: Prometheus metrics, the
//! request id, the RFC 9211 `Cache-Status` and W3C `Server-Timing` entries, the headers every
//! response carries (`decorate`), the access-log line, and the admin listener's answers.
//!
//! This crate decides nothing about a request: tiers tell it what happened (`Outcome`) and it
//! formats and counts that. It knows no proxy library, no cache and no storage, so
//! origin-adapter uses it without linking either.

pub mod access;
pub mod admin;
pub mod cache_status;
pub mod decorate;
pub mod logging;
pub mod metrics;
pub mod request_id;
pub mod server_timing;
mod tier;

pub use cache_status::{CacheUse, Outcome};
pub use decorate::{Decoration, HeaderSink};
pub use metrics::{CacheFigures, CacheResult, Metrics, UpstreamResult};
pub use tier::Tier;
