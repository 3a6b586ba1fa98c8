//! The storage a caching tier keeps objects in, behind pingora-cache's `Storage` trait: a
//! memory tier in front of a disk tier, and the objects still being filled, which readers
//! stream as they arrive.
//!
//! | duty | where |
//! |---|---|
//! | lookup order, promotion, write-through, purge, 304 updates | `hybrid` |
//! | fills in progress: who is filling what, read while written | `fills` |
//! | writing one miss: RAM first, spilled to disk when large | `miss` |
//! | reading one hit, whole or a range, whatever holds it | `hit` |
//! | a finished object in RAM, and its meta both ways | `object`, `meta` |
//! | the memory tier (moka, bytes-weighed, TinyLFU admission) | `memory` |
//! | the disk tier (segments, checksums, index, eviction) | `disk` |
//!
//! This crate knows no configuration file, no HTTP routing and no metrics library: tiers
//! build it from plain sizes and read its counters (`Usage`).
//!
//! **Invariant:** a reader of a fill whose writer dies gets an error, never a clean end of
//! body, so a truncated object cannot pass for a whole one (pingora issue 932).
//! **Invariant:** no byte from disk is handed out before the checksum covering it is checked.

pub mod disk;
mod fills;
mod hit;
mod hybrid;
mod key;
pub mod memory;
mod meta;
mod miss;
mod object;

pub use disk::{DiskTier, DiskUsage};
pub use hybrid::HybridStorage;
pub use memory::MemoryTier;
pub use meta::SerializedMeta;

use pingora_error::{Error, ErrorType, OrErr, Result};

/// What the storage holds, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub memory_objects: u64,
    pub memory_bytes: u64,
    /// Objects the memory tier evicted to make room, so far.
    pub memory_evictions: u64,
    pub disk: Option<DiskUsage>,
}

/// Runs blocking disk work on tokio's blocking pool, never on the async workers; a failure
/// keeps its cause.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(done) => done.or_err(ErrorType::InternalError, what),
        Err(e) => Err(Error::because(ErrorType::InternalError, what, e)),
    }
}
