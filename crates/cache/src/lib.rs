//! The storage a caching tier keeps objects in, behind pingora-cache's `Storage` trait: a
//! memory tier in front of a disk tier, and the objects still being filled, which readers
//! stream as they arrive.
//!
//! | duty | where |
//! |---|---|
//! | what pingora-cache calls: fills first, then the hybrid; write ids | `storage` |
//! | memory in front of disk: lookup order, promotion, write-through, 304 updates | `hybrid` |
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
mod lock;
pub mod memory;
mod meta;
mod miss;
mod object;
mod pool;
mod storage;

pub use disk::{DiskTier, DiskUsage};
pub use hybrid::Usage;
pub use lock::CollapseLock;
pub use memory::MemoryTier;
pub use meta::{Fresh, SerializedMeta};
pub use object::Object;
pub use storage::HybridStorage;
