//! Making room and taking things out. Eviction is by segment, oldest first (the ids order
//! them), before a new segment would push the folder past the bound: victims are taken out of
//! the state under its lock, and their entries unindexed and their files deleted after it is
//! released. Purging one key unindexes it; a large entry's file goes with it, so it stays gone
//! after a restart, while a small entry's bytes stay in their segment until it is evicted.

use super::index::Loc;
use super::scan;
use super::segment::Segment;
use super::state::Segments;
use super::DiskTier;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl DiskTier {
    /// Takes oldest segments out until `extra` more bytes fit under the bound, and returns them;
    /// the caller calls `evict` on each once the lock is released.
    pub(super) fn make_room(
        &self,
        segs: &mut Segments,
        extra: u64,
    ) -> io::Result<Vec<Arc<Segment>>> {
        if extra > self.capacity {
            return Err(io::Error::other("object larger than the disk tier"));
        }
        let mut victims = Vec::new();
        while segs.used + extra > self.capacity {
            let victim = match segs.oldest_evictable() {
                Some(id) => id,
                // Only the active segment is left: it stops taking entries and goes too.
                None if segs.active.is_some() => {
                    segs.active = None;
                    continue;
                }
                None => {
                    return Err(io::Error::other(
                        "disk tier full of entries still being written",
                    ))
                }
            };
            victims.extend(segs.remove(victim));
        }
        Ok(victims)
    }

    /// Forgets every entry of a segment taken out by `make_room`, and deletes its file.
    /// Readers still holding it keep their descriptor (and map) until they finish.
    pub(super) fn evict(&self, segment: &Segment) {
        let mut removed = 0u64;
        for entry in scan::walk(segment).map_while(Result::ok) {
            removed += u64::from(self.index.remove(&entry.header.key, entry.loc));
        }
        self.stats.evicted_segments.fetch_add(1, Ordering::Relaxed);
        self.stats
            .evicted_objects
            .fetch_add(removed, Ordering::Relaxed);
        if let Err(e) = std::fs::remove_file(&segment.path) {
            tracing::warn!(path = %segment.path.display(), error = %e, "evicted segment not removed");
        }
    }

    /// Forgets `key` (a purge). A large entry's file is deleted too.
    pub fn remove(&self, key: &[u8; 16]) -> bool {
        self.index
            .get(key)
            .is_some_and(|loc| self.remove_at(key, loc))
    }

    /// Forgets `key` if the index still points at `loc` (a newer copy elsewhere stays); a large
    /// entry's file is deleted too.
    pub(super) fn remove_at(&self, key: &[u8; 16], loc: Loc) -> bool {
        let removed = self.index.remove(key, loc);
        if let (true, Loc::Large { segment }) = (removed, loc) {
            let taken = self.segments().remove(segment);
            if let Some(segment) = taken {
                let _ = std::fs::remove_file(&segment.path);
            }
        }
        removed
    }
}
