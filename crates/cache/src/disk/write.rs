//! Writing entries. A small entry is encoded whole and appended to the active small segment. A
//! large entry streams into a segment of its own as its body arrives: meta first (in the first
//! of its two meta regions, see `format`), body and block checksums as they come, then the
//! table and, last, header slot 0 that makes it valid; on commit the file takes a fresh id, so
//! ids order segments by when they were finished. Its space is reserved as it grows (at most
//! 64 MiB ahead), not from the announced length, so a request that announces a huge body and
//! stops cannot flush the cache.

use super::format::{self, BlockSums, Header, Layout, SLOTS_LEN};
use super::index::Loc;
use super::segment::{Kind, Segment};
use super::{now_secs, DiskTier};
use crate::meta::SerializedMeta;
use bytes::Bytes;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Largest first reservation for a large entry; it grows as bytes arrive.
const FIRST_RESERVATION: u64 = 64 << 20;

impl DiskTier {
    /// Stores a complete small entry.
    pub fn insert_small(
        &self,
        key: &[u8; 16],
        meta: &SerializedMeta,
        body: &[Bytes],
    ) -> io::Result<()> {
        let entry = format::encode_entry(*key, meta, body, now_secs());
        let len = entry.len() as u64;
        if len > self.segment_size {
            return Err(io::Error::other("entry larger than a segment"));
        }
        let mut victims = Vec::new();
        let placed = (|| {
            let mut segs = self.segments();
            let fits = segs
                .active
                .as_ref()
                .is_some_and(|a| a.write_pos.load(Ordering::Relaxed) + len <= a.allocated());
            if !fits {
                victims = self.make_room(&mut segs, self.segment_size)?;
                let id = segs.take_id();
                let segment = Arc::new(Segment::create(
                    &self.dir,
                    id,
                    Kind::Small,
                    self.segment_size,
                )?);
                segs.add(segment.clone());
                segs.active = Some(segment);
            }
            let active = segs.active.clone().expect("an active segment");
            let offset = active.write_pos.fetch_add(len, Ordering::Relaxed);
            Ok::<_, io::Error>((active, offset))
        })();
        for victim in victims {
            self.evict(&victim);
        }
        let (segment, offset) = placed?;
        segment.write(offset, &entry)?;
        let loc = Loc::Small {
            segment: segment.id,
            offset: offset as u32,
            len: len as u32,
        };
        self.index.insert(key, loc);
        Ok(())
    }

    /// Starts streaming a large entry into a segment of its own.
    pub fn begin_large(
        self: &Arc<Self>,
        key: [u8; 16],
        meta: SerializedMeta,
        expected: u64,
    ) -> io::Result<LargeWriter> {
        let meta_room = format::meta_room_for(meta.size());
        let body_offset = (SLOTS_LEN + 2 * meta_room as usize) as u64;
        let reserve = body_offset + expected.min(FIRST_RESERVATION);
        let mut victims = Vec::new();
        let created = (|| {
            let mut segs = self.segments();
            victims = self.make_room(&mut segs, reserve)?;
            let id = segs.take_id();
            let segment = Arc::new(Segment::create(&self.dir, id, Kind::Large, reserve)?);
            segs.add(segment.clone());
            segs.filling.push(id);
            Ok::<_, io::Error>(segment)
        })();
        for victim in victims {
            self.evict(&victim);
        }
        // From here on the writer's Drop gives the reservation back, whatever fails.
        let writer = LargeWriter {
            tier: self.clone(),
            segment: created?,
            key,
            meta,
            meta_room,
            body_offset,
            written: 0,
            sums: BlockSums::default(),
            done: false,
        };
        let at = SLOTS_LEN as u64;
        writer.segment.write(at, &writer.meta.internal)?;
        let at = at + writer.meta.internal.len() as u64;
        writer.segment.write(at, &writer.meta.header)?;
        Ok(writer)
    }
}

/// Streams one large entry to disk; dropped without `commit`, it removes its file.
pub struct LargeWriter {
    tier: Arc<DiskTier>,
    segment: Arc<Segment>,
    key: [u8; 16],
    meta: SerializedMeta,
    meta_room: u32,
    body_offset: u64,
    written: u64,
    sums: BlockSums,
    done: bool,
}

impl LargeWriter {
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let end = self.body_offset + self.written + data.len() as u64;
        if end > self.segment.allocated() {
            // Past the reservation: reserve more before writing, an eighth of the size so far
            // at least, so a big object does not take the lock for every block.
            let grow = (end - self.segment.allocated())
                .max(self.segment.allocated() / 8)
                .max(4 << 20);
            let victims = {
                let mut segs = self.tier.segments();
                let victims = self.tier.make_room(&mut segs, grow)?;
                segs.used += grow;
                self.segment.set_allocated(self.segment.allocated() + grow);
                victims
            };
            for victim in victims {
                self.tier.evict(&victim);
            }
        }
        self.segment.write(self.body_offset + self.written, data)?;
        self.sums.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// Bytes of body written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// A handle readers can use while the writer goes on.
    pub fn reader(&self) -> FillReader {
        FillReader {
            segment: self.segment.clone(),
            body_offset: self.body_offset,
        }
    }

    /// Writes the block table, then the header (slot 0, generation 0) that makes the entry
    /// valid, and indexes it.
    pub fn commit(mut self) -> io::Result<()> {
        let sums = std::mem::take(&mut self.sums);
        let (table, table_crc) = sums.finish();
        self.segment
            .write(self.body_offset + self.written, &table)?;
        let header = Header {
            key: self.key,
            meta_internal_len: self.meta.internal.len() as u32,
            meta_header_len: self.meta.header.len() as u32,
            body_len: self.written,
            meta_crc: format::meta_crc(&self.meta),
            table_crc,
            written_at: now_secs(),
            layout: Layout::Slotted {
                meta_room: self.meta_room,
                generation: 0,
            },
        };
        self.segment.write(0, &header.encode())?;
        let committed = {
            let mut segs = self.tier.segments();
            let id = segs.take_id();
            let committed = Arc::new(self.segment.renamed(&self.tier.dir, id)?);
            segs.remove(self.segment.id);
            committed.set_allocated(header.entry_len() as u64);
            segs.add(committed.clone());
            committed
        };
        let loc = Loc::Large {
            segment: committed.id,
        };
        self.tier.index.insert(&self.key, loc);
        self.done = true;
        Ok(())
    }
}

impl Drop for LargeWriter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.tier.segments().remove(self.segment.id);
        let _ = std::fs::remove_file(&self.segment.path);
    }
}

/// Reads body bytes of a large entry still being written.
#[derive(Clone)]
pub struct FillReader {
    segment: Arc<Segment>,
    body_offset: u64,
}

impl FillReader {
    /// Reads `len` bytes at body offset `at`; the caller knows they were written. Blocks.
    pub fn read(&self, at: u64, len: usize) -> io::Result<Vec<u8>> {
        self.segment.read(self.body_offset + at, len)
    }
}
