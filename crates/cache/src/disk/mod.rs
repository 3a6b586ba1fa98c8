//! The disk tier: log-structured segments under one directory, bounded in bytes, evicted a
//! whole segment at a time (oldest first), with a small in-RAM index rebuilt from the segment
//! headers at start-up.
//!
//! | duty | where |
//! |---|---|
//! | the tier's state: which segments exist, how much they take | `state` (and `DiskTier` here) |
//! | walking a segment's entries, for recovery and eviction alike | `scan` |
//! | rebuilding the index at start-up | `recover` |
//! | lookups and checked reads | `read` |
//! | small inserts, large entries streamed in, commit | `write` |
//! | a large entry's meta rewritten in place (after a 304) | `rewrite` |
//! | making room, evicting a segment, purging one key | `evict` |
//! | the on-disk entry format and its checks | `format` |
//! | key → location, in RAM | `index` |
//! | one segment file: create, open, map, read, write | `segment` |
//!
//! - Entries up to `small_limit` bytes are appended whole to the current small segment.
//! - Larger entries stream into a segment of their own as the body arrives; the header is
//!   written last, so an entry cut off by a crash has no valid header and is dropped at start-up.
//! - A large entry keeps two header slots and room for two metas, so a revalidation rewrites
//!   its meta in the slot not in use and never touches the body (see `format`, `rewrite`).
//! - Every read checks the header, meta, block table and each body block it returns
//!   (see `format`); a failed check drops the entry, counts it, and the caller refetches.
//!
//! All functions here block; the hybrid storage calls them on the blocking pool.

mod evict;
pub mod format;
mod index;
mod read;
mod recover;
mod rewrite;
mod scan;
mod segment;
mod state;
mod write;

pub use read::{Found, LargeBody};
pub use rewrite::Rewrite;
pub use write::{FillReader, LargeWriter};

use index::Index;
use state::Segments;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest small segment; smaller disks get segments of an eighth of their size.
const MAX_SEGMENT: u64 = 64 << 20;

/// Counters the disk tier keeps.
#[derive(Debug, Default)]
pub struct DiskStats {
    pub corrupt: AtomicU64,
    pub evicted_segments: AtomicU64,
    pub evicted_objects: AtomicU64,
    /// Large entries dropped on a 304 because the new meta did not fit the room kept for it.
    pub meta_outgrown: AtomicU64,
}

/// A snapshot for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DiskUsage {
    pub objects: usize,
    pub bytes: u64,
    pub capacity: u64,
    pub corrupt: u64,
    pub evicted_objects: u64,
    /// Large entries dropped on a 304 because the new meta did not fit (see `DiskStats`).
    pub meta_outgrown: u64,
    pub index_bytes_per_object: f64,
}

pub struct DiskTier {
    dir: PathBuf,
    capacity: u64,
    segment_size: u64,
    small_limit: usize,
    index: Index,
    segments: Mutex<Segments>,
    /// Held while a large entry's meta is rewritten, one at a time: each rewrite writes the
    /// header slot its entry does not go by, and two at once could pick the same one.
    meta_rewrites: Mutex<()>,
    pub stats: DiskStats,
}

impl DiskTier {
    /// Whether the index holds `key` (a fingerprint match; its entry is not read or checked).
    pub fn indexed(&self, key: &[u8; 16]) -> bool {
        self.index.get(key).is_some()
    }

    /// Opens (or creates) the tier in `dir` and rebuilds the index from what is there.
    pub fn open(dir: &Path, capacity: u64) -> io::Result<DiskTier> {
        std::fs::create_dir_all(dir)?;
        let segment_size = (capacity / 8).clamp(1 << 20, MAX_SEGMENT);
        let tier = DiskTier {
            dir: dir.to_owned(),
            capacity,
            segment_size,
            small_limit: (segment_size / 4) as usize,
            index: Index::default(),
            segments: Mutex::new(Segments::default()),
            meta_rewrites: Mutex::new(()),
            stats: DiskStats::default(),
        };
        tier.recover()?;
        Ok(tier)
    }

    /// Entries at most this big are appended to shared segments; larger ones stream to their own.
    pub fn small_limit(&self) -> usize {
        self.small_limit
    }

    pub fn usage(&self) -> DiskUsage {
        DiskUsage {
            objects: self.index.len(),
            bytes: self.segments().used,
            capacity: self.capacity,
            corrupt: self.stats.corrupt.load(Ordering::Relaxed),
            evicted_objects: self.stats.evicted_objects.load(Ordering::Relaxed),
            meta_outgrown: self.stats.meta_outgrown.load(Ordering::Relaxed),
            index_bytes_per_object: self.index.bytes_per_object(),
        }
    }

    /// Forgets every entry and closes every segment file (readers still holding one keep it
    /// until they finish); the files stay on disk for the next start. The tier is empty after.
    pub fn close(&self) {
        let closed = std::mem::take(&mut *self.segments());
        self.index.clear();
        drop(closed);
    }

    fn segments(&self) -> std::sync::MutexGuard<'_, Segments> {
        self.segments.lock().expect("segments poisoned")
    }

    fn meta_rewrites(&self) -> std::sync::MutexGuard<'_, ()> {
        self.meta_rewrites.lock().expect("meta rewrites poisoned")
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
