//! The disk tier: log-structured segments under one directory, bounded in bytes, evicted a
//! whole segment at a time (oldest first), with a small in-RAM index rebuilt from the segment
//! headers at start-up.
//!
//! - Entries up to `small_limit` bytes are appended whole to the current small segment.
//! - Larger entries stream into a segment of their own as the body arrives; the header is
//!   written last, so an entry cut off by a crash has no valid header and is dropped at start-up.
//! - Every read checks the header, meta, block table and each body block it returns
//!   (see `format`); a failed check drops the entry, counts it, and the caller refetches.
//!
//! All functions here block; the engine calls them on the blocking pool.

pub mod format;
mod index;
mod segment;

use format::{BlockSums, Header, Invalid, HEADER_LEN};
use index::{Index, Loc};
use segment::{Kind, Segment};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Largest small segment; smaller disks get segments of an eighth of their size.
const MAX_SEGMENT: u64 = 64 << 20;

/// A large entry's checked header, meta (internal, header) and block CRCs.
type LargeParts = (Header, (Vec<u8>, Vec<u8>), Vec<u32>);

/// Counters the disk tier keeps.
#[derive(Debug, Default)]
pub struct DiskStats {
    pub corrupt: AtomicU64,
    pub evicted_segments: AtomicU64,
    pub evicted_objects: AtomicU64,
}

/// A snapshot for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DiskUsage {
    pub objects: usize,
    pub bytes: u64,
    pub capacity: u64,
    pub corrupt: u64,
    pub evicted_objects: u64,
    pub index_bytes_per_object: f64,
}

struct Segments {
    all: BTreeMap<u64, Arc<Segment>>,
    /// The small segment entries are appended to.
    active: Option<Arc<Segment>>,
    /// Large segments still being written: not evictable.
    filling: Vec<u64>,
    next_id: u64,
    used: u64,
}

impl Segments {
    /// A fresh segment id; taken even if creating the file then fails, so no id is retried.
    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// Largest first reservation for a large entry; it grows as bytes arrive, so a request that
/// announces a huge body and then stops cannot flush the cache.
const FIRST_RESERVATION: u64 = 64 << 20;

pub struct DiskTier {
    dir: PathBuf,
    capacity: u64,
    segment_size: u64,
    small_limit: usize,
    index: Index,
    segments: Mutex<Segments>,
    pub stats: DiskStats,
}

/// What a lookup found.
pub enum Found {
    /// The whole entry, checked: meta (internal, header) and body.
    Small {
        meta: (Vec<u8>, Vec<u8>),
        body: bytes::Bytes,
    },
    /// Header, meta and block table checked; the body is read block by block.
    Large {
        meta: (Vec<u8>, Vec<u8>),
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

impl DiskTier {
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
            segments: Mutex::new(Segments {
                all: BTreeMap::new(),
                active: None,
                filling: Vec::new(),
                next_id: 1,
                used: 0,
            }),
            stats: DiskStats::default(),
        };
        tier.rebuild()?;
        Ok(tier)
    }

    /// Entries at most this big are appended to shared segments; larger ones stream to their own.
    pub fn small_limit(&self) -> usize {
        self.small_limit
    }

    pub fn usage(&self) -> DiskUsage {
        let used = self.segments.lock().expect("segments poisoned").used;
        DiskUsage {
            objects: self.index.len(),
            bytes: used,
            capacity: self.capacity,
            corrupt: self.stats.corrupt.load(Ordering::Relaxed),
            evicted_objects: self.stats.evicted_objects.load(Ordering::Relaxed),
            index_bytes_per_object: self.index.bytes_per_object(),
        }
    }

    fn rebuild(&self) -> io::Result<()> {
        let started = Instant::now();
        let mut found: Vec<(u64, Kind, PathBuf)> = Vec::new();
        for dirent in std::fs::read_dir(&self.dir)? {
            let dirent = dirent?;
            let name = dirent.file_name();
            if let Some((id, kind)) = name.to_str().and_then(segment::parse_name) {
                found.push((id, kind, dirent.path()));
            }
        }
        found.sort_by_key(|(id, _, _)| *id);
        let mut segments = self.segments.lock().expect("segments poisoned");
        for (id, kind, path) in found {
            segments.next_id = segments.next_id.max(id.saturating_add(1));
            let segment = match Segment::open(&path, id, kind) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    // Not proof the content is bad (e.g. out of descriptors): leave the file.
                    tracing::warn!(path = %path.display(), error = %e, "cache segment cannot be opened; skipped");
                    continue;
                }
            };
            let entries = self.scan(&segment);
            if kind == Kind::Large && entries == 0 {
                // Never committed: the writer stopped before its header.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            segments.used += segment.allocated();
            segments.all.insert(id, segment);
        }
        // The bound may have been lowered since these were written.
        let victims = self.make_room(&mut segments, 0).unwrap_or_default();
        drop(segments);
        for victim in victims {
            self.evict(&victim);
        }
        let segments = self.segments.lock().expect("segments poisoned");
        tracing::info!(
            dir = %self.dir.display(),
            objects = self.index.len(),
            bytes = segments.used,
            millis = started.elapsed().as_millis() as u64,
            "disk cache index rebuilt"
        );
        Ok(())
    }

    /// Indexes every valid entry of a segment, in order; stops at the first that is not.
    fn scan(&self, segment: &Segment) -> usize {
        if segment.kind == Kind::Large {
            return match self.check_large(segment) {
                Ok(header) => {
                    self.index.insert(&header.key, Loc::new(segment.id, 0, 0));
                    1
                }
                Err(Invalid::Empty) => 0,
                Err(Invalid::Corrupt(why)) => {
                    tracing::warn!(
                        segment = segment.id,
                        why,
                        "large cache entry failed its checks at start-up; dropped"
                    );
                    self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                    0
                }
            };
        }
        let bytes = segment.mapped();
        let (mut offset, mut count) = (0usize, 0usize);
        while offset + HEADER_LEN <= bytes.len() {
            let header = match Header::decode(&bytes[offset..]) {
                Ok(h) => h,
                Err(Invalid::Empty) => break,
                Err(Invalid::Corrupt(why)) => {
                    tracing::warn!(
                        segment = segment.id,
                        offset,
                        why,
                        "cache segment ends in a broken entry"
                    );
                    self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
            let end = offset.saturating_add(header.entry_len());
            let valid = end <= bytes.len()
                && header
                    .check_meta(&bytes[offset + HEADER_LEN..offset + header.body_offset()])
                    .is_ok()
                && header
                    .check_table(&bytes[offset + header.table_offset()..end])
                    .is_ok();
            if !valid {
                tracing::warn!(
                    segment = segment.id,
                    offset,
                    "cache entry failed its checks at start-up; dropped"
                );
                self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                break;
            }
            self.index.insert(
                &header.key,
                Loc::new(segment.id, offset as u32, header.entry_len() as u32),
            );
            count += 1;
            offset = end;
        }
        segment.write_pos.store(offset as u64, Ordering::Relaxed);
        count
    }

    /// Reads and checks a large segment's header, meta and block table; returns them with the
    /// meta split into (internal, header) and one CRC per block. `on_io` is what a failed read
    /// counts as; with `key`, an entry for another key is `Empty` before anything else is read.
    fn large_parts(
        segment: &Segment,
        key: Option<&[u8; 16]>,
        on_io: Invalid,
    ) -> Result<LargeParts, Invalid> {
        let read = |at: u64, len: usize| segment.read(at, len).map_err(|_| on_io);
        let header = Header::decode(&read(0, HEADER_LEN)?)?;
        if key.is_some_and(|k| k != &header.key) {
            return Err(Invalid::Empty);
        }
        let meta = read(HEADER_LEN as u64, header.meta_len())?;
        let (internal, meta_header) = header.check_meta(&meta)?;
        let meta = (internal.to_vec(), meta_header.to_vec());
        let crcs = header.check_table(&read(header.table_offset() as u64, 4 * header.blocks())?)?;
        Ok((header, meta, crcs))
    }

    /// Reads and checks a large segment's header, meta and block table.
    fn check_large(&self, segment: &Segment) -> Result<Header, Invalid> {
        Self::large_parts(segment, None, Invalid::Empty).map(|(header, _, _)| header)
    }

    /// Looks `key` up and checks what it finds. A broken entry is dropped, counted, and
    /// reported as a miss.
    pub fn lookup(&self, key: &[u8; 16]) -> Option<Found> {
        let loc = self.index.get(key)?;
        let segment = self
            .segments
            .lock()
            .expect("segments poisoned")
            .all
            .get(&loc.segment)
            .cloned();
        let Some(segment) = segment else {
            // Its segment was evicted while the entry was being written.
            self.index.remove(key, Some((loc.segment, loc.offset)));
            return None;
        };
        match self.read_entry(&segment, key, loc) {
            Ok(found) => Some(found),
            Err(Invalid::Empty) => None, // a fingerprint collision: someone else's entry
            Err(Invalid::Corrupt(why)) => {
                self.drop_corrupt(key, &loc, why);
                None
            }
        }
    }

    fn drop_corrupt(&self, key: &[u8; 16], loc: &Loc, why: &'static str) {
        tracing::warn!(
            segment = loc.segment,
            offset = loc.offset,
            why,
            "corrupt cache entry dropped"
        );
        self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
        self.index.remove(key, Some((loc.segment, loc.offset)));
    }

    fn read_entry(
        &self,
        segment: &Arc<Segment>,
        key: &[u8; 16],
        loc: Loc,
    ) -> Result<Found, Invalid> {
        let io = |_| Invalid::Corrupt("entry cannot be read");
        if loc.len() > 0 {
            let bytes = segment
                .read(u64::from(loc.offset), loc.len() as usize)
                .map_err(io)?;
            let header = Header::decode(&bytes)?;
            if &header.key != key {
                return Err(Invalid::Empty);
            }
            if header.entry_len() != bytes.len() {
                return Err(Invalid::Corrupt("entry length"));
            }
            let (internal, meta_header) =
                header.check_meta(&bytes[HEADER_LEN..header.body_offset()])?;
            let crcs = header.check_table(&bytes[header.table_offset()..])?;
            let body = &bytes[header.body_offset()..header.table_offset()];
            for (block, crc) in body.chunks(format::BLOCK).zip(&crcs) {
                format::check_block(block, *crc)?;
            }
            let meta = (internal.to_vec(), meta_header.to_vec());
            let body = bytes::Bytes::from(bytes).slice(header.body_offset()..header.table_offset());
            return Ok(Found::Small { meta, body });
        }
        let (header, meta, crcs) =
            Self::large_parts(segment, Some(key), Invalid::Corrupt("entry cannot be read"))?;
        Ok(Found::Large {
            meta,
            body: LargeBody {
                segment: segment.clone(),
                key: *key,
                body_offset: header.body_offset() as u64,
                len: header.body_len,
                crcs: crcs.into(),
            },
        })
    }

    /// Reads and checks the blocks from the one holding body offset `at`, up to `max` bytes
    /// (whole blocks, at least one); returns them and the body offset they start at. A failed
    /// check drops the entry and is an error.
    pub fn read_blocks(
        &self,
        body: &LargeBody,
        at: u64,
        max: usize,
    ) -> io::Result<(bytes::Bytes, u64)> {
        let block_size = format::BLOCK as u64;
        let first = at / block_size;
        let start = first * block_size;
        let blocks = (max as u64 / block_size).max(1);
        let end = (start + blocks * block_size).min(body.len);
        let data = body
            .segment
            .read(body.body_offset + start, (end - start) as usize)?;
        for (i, block) in data.chunks(format::BLOCK).enumerate() {
            let crc = body
                .crcs
                .get(first as usize + i)
                .copied()
                .unwrap_or_default();
            if format::check_block(block, crc).is_err() {
                let loc = Loc::new(body.segment.id, 0, 0);
                self.drop_corrupt(&body.key, &loc, "body block checksum");
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "corrupt cache block",
                ));
            }
        }
        Ok((bytes::Bytes::from(data), start))
    }

    /// Stores a complete small entry.
    pub fn insert_small(
        &self,
        key: &[u8; 16],
        meta: (&[u8], &[u8]),
        body: &[bytes::Bytes],
    ) -> io::Result<()> {
        let entry = format::encode_entry(*key, meta, body, now_secs());
        let len = entry.len() as u64;
        if len > self.segment_size {
            return Err(io::Error::other("entry larger than a segment"));
        }
        let mut victims = Vec::new();
        let placed = (|| {
            let mut segs = self.segments.lock().expect("segments poisoned");
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
                segs.used += self.segment_size;
                segs.all.insert(id, segment.clone());
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
        self.index
            .insert(key, Loc::new(segment.id, offset as u32, len as u32));
        Ok(())
    }

    /// Starts streaming a large entry into a segment of its own.
    pub fn begin_large(
        self: &Arc<Self>,
        key: [u8; 16],
        meta: (Vec<u8>, Vec<u8>),
        expected: u64,
    ) -> io::Result<LargeWriter> {
        let body_offset = (HEADER_LEN + meta.0.len() + meta.1.len()) as u64;
        let reserve = body_offset + expected.min(FIRST_RESERVATION);
        let mut victims = Vec::new();
        let created = (|| {
            let mut segs = self.segments.lock().expect("segments poisoned");
            victims = self.make_room(&mut segs, reserve)?;
            let id = segs.take_id();
            let segment = Arc::new(Segment::create(&self.dir, id, Kind::Large, reserve)?);
            segs.used += reserve;
            segs.filling.push(id);
            segs.all.insert(id, segment.clone());
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
            body_offset,
            written: 0,
            sums: BlockSums::default(),
            done: false,
        };
        writer.segment.write(HEADER_LEN as u64, &writer.meta.0)?;
        writer.segment.write(
            HEADER_LEN as u64 + writer.meta.0.len() as u64,
            &writer.meta.1,
        )?;
        Ok(writer)
    }

    /// Takes oldest segments out until `extra` more bytes fit under the bound, and returns them;
    /// the caller calls `evict` on each once the lock is released.
    fn make_room(&self, segs: &mut Segments, extra: u64) -> io::Result<Vec<Arc<Segment>>> {
        if extra > self.capacity {
            return Err(io::Error::other("object larger than the disk tier"));
        }
        let mut victims = Vec::new();
        while segs.used + extra > self.capacity {
            let active = segs.active.as_ref().map(|a| a.id);
            let victim = segs
                .all
                .keys()
                .copied()
                .find(|id| Some(*id) != active && !segs.filling.contains(id));
            let victim = match victim {
                Some(id) => id,
                None if active.is_some() => {
                    segs.active = None;
                    continue;
                }
                None => {
                    return Err(io::Error::other(
                        "disk tier full of entries still being written",
                    ))
                }
            };
            let segment = segs.all.remove(&victim).expect("victim exists");
            segs.used -= segment.allocated();
            victims.push(segment);
        }
        Ok(victims)
    }

    /// Forgets every entry of a segment and deletes its file. Readers still holding it keep
    /// their map until they finish.
    fn evict(&self, segment: &Segment) {
        let mut removed = 0u64;
        if segment.kind == Kind::Large {
            let head = segment.read(0, HEADER_LEN).map_err(|_| Invalid::Empty);
            if let Ok(header) = head.and_then(|h| Header::decode(&h)) {
                removed += u64::from(self.index.remove(&header.key, Some((segment.id, 0))));
            }
        } else {
            let bytes = segment.mapped();
            let mut offset = 0usize;
            while offset + HEADER_LEN <= bytes.len() {
                let Ok(header) = Header::decode(&bytes[offset..]) else {
                    break;
                };
                if self
                    .index
                    .remove(&header.key, Some((segment.id, offset as u32)))
                {
                    removed += 1;
                }
                offset = offset.saturating_add(header.entry_len());
            }
        }
        self.stats.evicted_segments.fetch_add(1, Ordering::Relaxed);
        self.stats
            .evicted_objects
            .fetch_add(removed, Ordering::Relaxed);
        if let Err(e) = std::fs::remove_file(&segment.path) {
            tracing::warn!(path = %segment.path.display(), error = %e, "evicted segment not removed");
        }
    }

    /// Forgets `key`. A large entry's file is deleted too, so it stays gone after a restart;
    /// a small entry's bytes stay in their segment until it is evicted.
    pub fn remove(&self, key: &[u8; 16]) -> bool {
        let Some(loc) = self.index.get(key) else {
            return false;
        };
        let removed = self.index.remove(key, Some((loc.segment, loc.offset)));
        if removed && loc.len() == 0 {
            let mut segs = self.segments.lock().expect("segments poisoned");
            if let Some(segment) = segs.all.remove(&loc.segment) {
                segs.used -= segment.allocated();
                drop(segs);
                let _ = std::fs::remove_file(&segment.path);
            }
        }
        removed
    }
}

/// Streams one large entry to disk; dropped without `commit`, it removes its file.
pub struct LargeWriter {
    tier: Arc<DiskTier>,
    segment: Arc<Segment>,
    key: [u8; 16],
    meta: (Vec<u8>, Vec<u8>),
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
                let mut segs = self.tier.segments.lock().expect("segments poisoned");
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

    /// Reads back body bytes already written (for readers of an unfinished fill).
    pub fn read_written(&self, at: u64, len: usize) -> io::Result<Vec<u8>> {
        let len = len.min(self.written.saturating_sub(at) as usize);
        self.segment.read(self.body_offset + at, len)
    }

    /// A handle readers can use while the writer goes on.
    pub fn reader(&self) -> FillReader {
        FillReader {
            segment: self.segment.clone(),
            body_offset: self.body_offset,
        }
    }

    /// Writes the block table, then the header that makes the entry valid, and indexes it.
    pub fn commit(mut self) -> io::Result<()> {
        let sums = std::mem::take(&mut self.sums);
        let (table, table_crc) = sums.finish();
        self.segment
            .write(self.body_offset + self.written, &table)?;
        let meta_crc = crc32c::crc32c_append(crc32c::crc32c(&self.meta.0), &self.meta.1);
        let header = Header {
            key: self.key,
            meta_internal_len: self.meta.0.len() as u32,
            meta_header_len: self.meta.1.len() as u32,
            body_len: self.written,
            meta_crc,
            table_crc,
            written_at: now_secs(),
        };
        self.segment.write(0, &header.encode())?;
        let actual = header.entry_len() as u64;
        let committed = {
            let mut segs = self.tier.segments.lock().expect("segments poisoned");
            let id = segs.take_id();
            let committed = Arc::new(self.segment.renamed(&self.tier.dir, id)?);
            segs.filling.retain(|f| *f != self.segment.id);
            segs.all.remove(&self.segment.id);
            segs.used = segs.used - self.segment.allocated() + actual;
            committed.set_allocated(actual);
            segs.all.insert(id, committed.clone());
            committed
        };
        self.tier
            .index
            .insert(&self.key, Loc::new(committed.id, 0, 0));
        self.done = true;
        Ok(())
    }
}

impl Drop for LargeWriter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut segs = self.tier.segments.lock().expect("segments poisoned");
        segs.filling.retain(|id| *id != self.segment.id);
        if segs.all.remove(&self.segment.id).is_some() {
            segs.used -= self.segment.allocated();
        }
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
