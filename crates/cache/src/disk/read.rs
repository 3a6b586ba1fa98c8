//! Lookups and checked reads. A small entry is read whole and every part checked before any
//! byte is handed out; a large entry's header, meta and block table are checked at lookup and
//! each body block as it is read, so a range reads only the blocks it covers. A failed check
//! drops the index entry and counts it: the lookup is a miss (the caller refetches), or a read
//! in mid-body an error (the response is aborted rather than carry a wrong byte).
//!
//! A large entry's meta is that of its newest header slot whose header and meta check out
//! (see `format`). Lookups take no lock; one that finds no slot checking out reads again with
//! meta rewrites held off, since two rewrites in the middle of its reads could be the cause.

use super::format::{self, Header, Invalid, Slot, HEADER_LEN, SLOTS_LEN};
use super::index::Loc;
use super::segment::Segment;
use super::DiskTier;
use crate::meta::SerializedMeta;
use bytes::Bytes;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What a lookup found.
pub enum Found {
    /// The whole entry, checked.
    Small { meta: SerializedMeta, body: Bytes },
    /// Header, meta and block table checked; the body is read block by block.
    Large {
        meta: SerializedMeta,
        body: LargeBody,
    },
}

/// The body of a large entry, read on demand.
#[derive(Clone)]
pub struct LargeBody {
    segment: Arc<Segment>,
    key: [u8; 16],
    body_offset: u64,
    pub len: u64,
    crcs: Arc<[u32]>,
}

/// A large entry's checked header, meta and block CRCs.
pub(super) struct LargeParts {
    pub header: Header,
    pub meta: SerializedMeta,
    pub crcs: Vec<u32>,
}

impl LargeBody {
    pub(super) fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    pub(super) fn key(&self) -> &[u8; 16] {
        &self.key
    }
}

impl DiskTier {
    /// Looks `key` up and checks what it finds. A broken entry is dropped, counted, and
    /// reported as a miss.
    pub fn lookup(&self, key: &[u8; 16]) -> Option<Found> {
        let loc = self.index.get(key)?;
        let Some(segment) = self.segments().get(loc.segment()) else {
            // Its segment was evicted while the entry was being written.
            self.index.remove(key, loc);
            return None;
        };
        match self.read_entry(&segment, key, loc) {
            Ok(found) => Some(found),
            Err(Invalid::Empty) => None, // a fingerprint collision: someone else's entry
            Err(Invalid::Corrupt(why)) => {
                self.drop_corrupt(key, loc, why);
                None
            }
        }
    }

    pub(super) fn drop_corrupt(&self, key: &[u8; 16], loc: Loc, why: &'static str) {
        tracing::warn!(?loc, why, "corrupt cache entry dropped");
        self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
        self.index.remove(key, loc);
    }

    fn read_entry(
        &self,
        segment: &Arc<Segment>,
        key: &[u8; 16],
        loc: Loc,
    ) -> Result<Found, Invalid> {
        let Loc::Small { offset, len, .. } = loc else {
            let unreadable = Invalid::Corrupt("entry cannot be read");
            let parts = match Self::large_parts(segment, Some(key), unreadable) {
                // Perhaps meta rewrites ran between its reads: read again, holding them off.
                Err(Invalid::Corrupt(_)) => {
                    let _rewrites = self.meta_rewrites();
                    Self::large_parts(segment, Some(key), unreadable)
                }
                parts => parts,
            }?;
            return Ok(Found::Large {
                meta: parts.meta,
                body: LargeBody {
                    segment: segment.clone(),
                    key: *key,
                    body_offset: parts.header.body_offset() as u64,
                    len: parts.header.body_len,
                    crcs: parts.crcs.into(),
                },
            });
        };
        let bytes = segment
            .read(u64::from(offset), len as usize)
            .map_err(|_| Invalid::Corrupt("entry cannot be read"))?;
        let header = Header::decode(&bytes)?;
        if &header.key != key {
            return Err(Invalid::Empty);
        }
        if header.layout != format::Layout::Single {
            return Err(Invalid::Corrupt(
                "a large entry's header in a small segment",
            ));
        }
        if header.entry_len() != bytes.len() {
            return Err(Invalid::Corrupt("entry length"));
        }
        let meta = owned(header.check_meta(&bytes[HEADER_LEN..header.body_offset()])?);
        let crcs = header.check_table(&bytes[header.table_offset()..])?;
        let body = &bytes[header.body_offset()..header.table_offset()];
        for (block, crc) in body.chunks(format::BLOCK).zip(&crcs) {
            format::check_block(block, *crc)?;
        }
        let body = Bytes::from(bytes).slice(header.body_offset()..header.table_offset());
        Ok(Found::Small { meta, body })
    }

    /// Reads and checks a large segment's header, meta and block table. `on_io` is what a
    /// failed read counts as; with `key`, an entry for another key is `Empty` before anything
    /// else is read.
    pub(super) fn large_parts(
        segment: &Segment,
        key: Option<&[u8; 16]>,
        on_io: Invalid,
    ) -> Result<LargeParts, Invalid> {
        let (slot, meta) = Self::newest_meta(segment, key, on_io)?;
        let header = slot.header;
        let table = segment
            .read(header.table_offset() as u64, 4 * header.blocks())
            .map_err(|_| on_io)?;
        let crcs = header.check_table(&table)?;
        Ok(LargeParts { header, meta, crcs })
    }

    /// A large segment's newest header slot whose header and meta check out, and that meta.
    /// `on_io` and `key` as for `large_parts`.
    pub(super) fn newest_meta(
        segment: &Segment,
        key: Option<&[u8; 16]>,
        on_io: Invalid,
    ) -> Result<(Slot, SerializedMeta), Invalid> {
        let read = |at: usize, len: usize| segment.read(at as u64, len).map_err(|_| on_io);
        let slots = format::decode_slots(&read(0, SLOTS_LEN)?)?;
        if key.is_some_and(|k| k != &slots[0].header.key) {
            return Err(Invalid::Empty);
        }
        let mut failed = Invalid::Corrupt("no header slot checks out");
        for slot in slots {
            let h = &slot.header;
            let checked = read(h.meta_offset(slot.index), h.meta_len())
                .and_then(|bytes| h.check_meta(&bytes).map(owned));
            match checked {
                Ok(meta) => return Ok((slot, meta)),
                Err(why) => failed = why,
            }
        }
        Err(failed)
    }

    /// Reads and checks the blocks from the one holding body offset `at`, up to `max` bytes
    /// (whole blocks, at least one); returns them and the body offset they start at. A failed
    /// check drops the entry and is an error.
    pub fn read_blocks(&self, body: &LargeBody, at: u64, max: usize) -> io::Result<(Bytes, u64)> {
        let block_size = format::BLOCK as u64;
        let first = at / block_size;
        let start = first * block_size;
        let blocks = (max as u64 / block_size).max(1);
        let end = (start + blocks * block_size).min(body.len);
        let data = body
            .segment
            .window(body.body_offset + start, (end - start) as usize)?;
        for (i, block) in data.chunks(format::BLOCK).enumerate() {
            let crc = body
                .crcs
                .get(first as usize + i)
                .copied()
                .unwrap_or_default();
            if format::check_block(block, crc).is_err() {
                let loc = Loc::Large {
                    segment: body.segment.id,
                };
                self.drop_corrupt(&body.key, loc, "body block checksum");
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "corrupt cache block",
                ));
            }
        }
        Ok((data, start))
    }
}

/// A checked meta, copied out of the bytes it was read with.
fn owned((internal, header): (&[u8], &[u8])) -> SerializedMeta {
    SerializedMeta {
        internal: internal.to_vec(),
        header: header.to_vec(),
    }
}
