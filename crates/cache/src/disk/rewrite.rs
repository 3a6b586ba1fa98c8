//! Rewriting a large entry's meta in place, after a 304: the new meta goes to the meta region
//! of the header slot the entry does not go by, then that slot's header, one generation on
//! (see `format`). The body, its block table and the file's place in the eviction order stay
//! as they are, and nothing of the body is read or copied.
//!
//! - Readers of the body keep reading: it does not move. A lookup racing a rewrite gets the
//!   old meta or the new one, each checked against the CRC in its own header.
//! - A crash at any point leaves the old meta or the new one: the slot the entry goes by is
//!   not written, and the other slot's header, written last, covers its meta by a CRC. Nothing
//!   is synced, as for every other write of this tier; a header that reaches the disk before
//!   its meta fails that check and the older slot stands.
//! - A meta that does not fit the room (an entry written before version 2 has none) drops the
//!   entry, as a 304 on a large entry always did; it is counted (`meta_outgrown`) and
//!   refetched next time.

use super::format::{Invalid, HEADER_LEN};
use super::index::Loc;
use super::read::LargeBody;
use super::{now_secs, DiskTier};
use crate::meta::SerializedMeta;
use std::io;
use std::sync::atomic::Ordering;

/// What became of a meta rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// The entry goes by the new meta.
    Rewritten,
    /// The new meta did not fit: the entry is dropped.
    Outgrown,
    /// The entry was replaced, purged, evicted or found broken meanwhile: nothing to rewrite.
    Gone,
}

impl DiskTier {
    /// Gives the large entry `body` was found in the meta `meta`, in place, the body left as it
    /// is. Blocks.
    pub fn rewrite_meta(&self, body: &LargeBody, meta: &SerializedMeta) -> io::Result<Rewrite> {
        let (key, segment) = (body.key(), body.segment());
        let loc = Loc::Large {
            segment: segment.id,
        };
        let _rewrites = self.meta_rewrites();
        if self.index.get(key) != Some(loc) {
            return Ok(Rewrite::Gone);
        }
        let unreadable = Invalid::Corrupt("entry cannot be read");
        let current = match Self::newest_meta(segment, Some(key), unreadable) {
            Ok((slot, _)) => slot,
            Err(Invalid::Empty) => return Ok(Rewrite::Gone),
            Err(Invalid::Corrupt(why)) => {
                self.drop_corrupt(key, loc, why);
                return Ok(Rewrite::Gone);
            }
        };
        let Some(header) = current.header.rewritten(meta, now_secs()) else {
            tracing::info!(
                segment = segment.id,
                meta = meta.size(),
                room = current.header.meta_room(),
                "revalidated meta does not fit its large cache entry; entry dropped"
            );
            self.stats.meta_outgrown.fetch_add(1, Ordering::Relaxed);
            self.remove_at(key, loc);
            return Ok(Rewrite::Outgrown);
        };
        let slot = 1 - current.index;
        let mut bytes = Vec::with_capacity(meta.size());
        bytes.extend_from_slice(&meta.internal);
        bytes.extend_from_slice(&meta.header);
        segment.write(header.meta_offset(slot) as u64, &bytes)?;
        segment.write((slot * HEADER_LEN) as u64, &header.encode())?;
        Ok(Rewrite::Rewritten)
    }
}
