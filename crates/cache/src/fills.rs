//! Objects being filled, which readers stream as they arrive: the registry of fills in
//! progress, and each fill's body so far (in RAM, then on disk once it spills) with the
//! progress readers wait on.
//!
//! The registry is sharded by key and read-locked on lookups, and skipped entirely while no
//! fill is in progress, so a hit takes no lock shared across keys. A key may have more than
//! one fill at once (a writer whose cache lock timed out, and the next); lookups join the
//! newest while it runs, and a writer's own reader finds its fill by write id, so it cannot
//! get another fill's body under its own headers.

use crate::disk::FillReader;
use crate::key::{shard_of, KeyHash};
use crate::meta::Meta;
use bytes::Bytes;
use pingora_cache::key::HashBinary;
use pingora_error::{Error, ErrorType, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use tokio::sync::watch;

const SHARDS: usize = 16;
/// Largest read from disk at once while streaming an unfinished fill.
const FILL_READ: usize = 256 * 1024;

type Shard = RwLock<HashMap<HashBinary, KeyFills, KeyHash>>;

/// The fills of one key: usually one; more when a writer's cache lock timed out and another
/// writer started. Only the newest is joined; older ones finish for the clients they serve.
#[derive(Default)]
struct KeyFills {
    all: Vec<Arc<Fill>>,
    /// The write id lookups join, until it finishes, fails or is purged.
    current: Option<u64>,
}

/// The fills in progress, by key.
pub struct Fills {
    shards: Box<[Shard]>,
    /// Fills registered now, across all shards: zero lets a lookup skip the shards.
    active: AtomicUsize,
}

impl Default for Fills {
    fn default() -> Self {
        Fills {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            active: AtomicUsize::new(0),
        }
    }
}

impl Fills {
    fn shard(&self, key: &HashBinary) -> &Shard {
        &self.shards[shard_of(key, SHARDS)]
    }

    /// The fill a lookup of `key` joins: the newest, while it runs and was not purged. Once it
    /// ends, lookups go to the stored object, never back to an older fill.
    pub fn newest(&self, key: &HashBinary) -> Option<Arc<Fill>> {
        if self.active.load(Ordering::Acquire) == 0 {
            return None;
        }
        let shard = self.shard(key).read().expect("fills poisoned");
        let fills = shard.get(key)?;
        let current = fills.current?;
        fills.all.iter().find(|f| f.write_id == current).cloned()
    }

    /// How many hold the running fill of `key` (its readers, its writer, this registry); 0
    /// when none runs.
    pub fn holders(&self, key: &HashBinary) -> usize {
        self.newest(key)
            .map_or(0, |fill| Arc::strong_count(&fill) - 1)
    }

    /// Whether any fill runs.
    pub fn any(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    /// The fill of write `id` for `key`, purged or not: what its writer's own reader wants.
    pub fn by_write(&self, key: &HashBinary, id: u64) -> Option<Arc<Fill>> {
        let shard = self.shard(key).read().expect("fills poisoned");
        shard
            .get(key)?
            .all
            .iter()
            .find(|f| f.write_id == id)
            .cloned()
    }

    /// Registers a new fill of `key`; lookups join it from now on.
    pub fn insert(&self, key: HashBinary, fill: Arc<Fill>) {
        let mut shard = self.shard(&key).write().expect("fills poisoned");
        let fills = shard.entry(key).or_default();
        fills.current = Some(fill.write_id);
        fills.all.push(fill);
        self.active.fetch_add(1, Ordering::Release);
    }

    /// Forgets write `id` of `key`, finished or failed.
    pub fn remove(&self, key: &HashBinary, id: u64) {
        let mut shard = self.shard(key).write().expect("fills poisoned");
        let Some(fills) = shard.get_mut(key) else {
            return;
        };
        let before = fills.all.len();
        fills.all.retain(|f| f.write_id != id);
        let removed = before - fills.all.len();
        if fills.current == Some(id) {
            fills.current = None;
        }
        if fills.all.is_empty() {
            shard.remove(key);
        }
        self.active.fetch_sub(removed, Ordering::Release);
    }

    /// Marks every fill of `key` purged: lookups no longer join them, and their writers still
    /// finish for the clients they serve but store nothing. Whether any was running.
    pub fn purge(&self, key: &HashBinary) -> bool {
        let mut shard = self.shard(key).write().expect("fills poisoned");
        let Some(fills) = shard.get_mut(key) else {
            return false;
        };
        fills.current = None;
        for fill in &fills.all {
            fill.purged.store(true, Ordering::Relaxed);
        }
        !fills.all.is_empty()
    }
}

/// Progress of a fill as readers see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Progress {
    /// Body bytes written so far.
    written: u64,
    /// Of those, the first `in_ram` are in `Fill::chunks`; the rest are on disk.
    in_ram: u64,
    done: bool,
    failed: bool,
}

/// An object being filled.
pub struct Fill {
    pub write_id: u64,
    pub meta: Meta,
    chunks: RwLock<Vec<Bytes>>,
    disk: OnceLock<FillReader>,
    progress: watch::Sender<Progress>,
    purged: AtomicBool,
}

impl Fill {
    pub fn new(write_id: u64, meta: Meta) -> Fill {
        Fill {
            write_id,
            meta,
            chunks: RwLock::new(Vec::new()),
            disk: OnceLock::new(),
            progress: watch::channel(Progress::default()).0,
            purged: AtomicBool::new(false),
        }
    }

    /// Appends a chunk held in RAM; returns the bytes now held in RAM.
    pub fn push(&self, chunk: Bytes) -> u64 {
        let len = chunk.len() as u64;
        self.chunks.write().expect("chunks poisoned").push(chunk);
        let mut in_ram = 0;
        self.progress.send_modify(|p| {
            p.written += len;
            p.in_ram += len;
            in_ram = p.in_ram;
        });
        in_ram
    }

    /// What RAM holds so far, in order.
    pub fn chunks(&self) -> Vec<Bytes> {
        self.chunks.read().expect("chunks poisoned").clone()
    }

    /// From now on the body past what RAM holds is on disk, readable through `reader`.
    pub fn spilled(&self, reader: FillReader) {
        let _ = self.disk.set(reader);
    }

    /// `len` more bytes were written to disk.
    pub fn wrote_to_disk(&self, len: u64) {
        self.progress.send_modify(|p| p.written += len);
    }

    pub fn written(&self) -> u64 {
        self.progress.borrow().written
    }

    pub fn finish(&self) {
        self.progress.send_modify(|p| p.done = true);
    }

    /// The writer gave up: readers get an error, never a clean end of body.
    pub fn fail(&self) {
        self.progress.send_modify(|p| p.failed = true);
    }

    pub fn purged(&self) -> bool {
        self.purged.load(Ordering::Relaxed)
    }

    /// A reader positioned at the start of the body.
    pub fn reader(&self) -> FillCursor {
        FillCursor {
            progress: self.progress.subscribe(),
            pos: 0,
            next_chunk: 0,
        }
    }

    /// The next bytes for `cursor`, waiting for the writer if it has none yet.
    pub async fn read(&self, cursor: &mut FillCursor) -> Result<Option<Bytes>> {
        loop {
            let p = *cursor.progress.borrow_and_update();
            if p.failed {
                return Error::e_explain(
                    ErrorType::InternalError,
                    "cache fill failed before the body was complete",
                );
            }
            if cursor.pos < p.in_ram {
                let chunk = self
                    .chunks
                    .read()
                    .expect("chunks poisoned")
                    .get(cursor.next_chunk)
                    .cloned();
                if let Some(chunk) = chunk {
                    cursor.next_chunk += 1;
                    cursor.pos += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
            }
            if cursor.pos < p.written {
                let Some(reader) = self.disk.get().cloned() else {
                    return Error::e_explain(
                        ErrorType::InternalError,
                        "fill bytes neither in RAM nor on disk",
                    );
                };
                let (at, len) = (
                    cursor.pos,
                    ((p.written - cursor.pos) as usize).min(FILL_READ),
                );
                let data =
                    crate::pool::blocking("reading a fill from disk", move || reader.read(at, len))
                        .await?;
                cursor.pos += data.len() as u64;
                return Ok(Some(Bytes::from(data)));
            }
            if p.done {
                return Ok(None);
            }
            if cursor.progress.changed().await.is_err() {
                return Error::e_explain(ErrorType::InternalError, "cache fill abandoned");
            }
        }
    }
}

/// Where one reader of a fill is.
pub struct FillCursor {
    progress: watch::Receiver<Progress>,
    pos: u64,
    next_chunk: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(id: u64) -> Arc<Fill> {
        let header = pingora_http::ResponseHeader::build(200, None).unwrap();
        let now = std::time::SystemTime::now();
        let meta = pingora_cache::CacheMeta::new(now, now, 0, 0, header);
        Arc::new(Fill::new(id, Meta::of(&meta).unwrap()))
    }

    #[test]
    fn lookups_join_the_newest_and_writers_find_their_own() {
        let fills = Fills::default();
        let key = [3u8; 16];
        assert!(fills.newest(&key).is_none());
        fills.insert(key, fill(1));
        fills.insert(key, fill(2));
        assert_eq!(fills.newest(&key).unwrap().write_id, 2);
        assert_eq!(fills.by_write(&key, 1).unwrap().write_id, 1);
        assert!(
            fills.by_write(&[4u8; 16], 1).is_none(),
            "never by another key"
        );

        assert!(fills.purge(&key));
        assert!(fills.newest(&key).is_none(), "a purged fill is not joined");
        assert!(
            fills.by_write(&key, 2).is_some(),
            "but its writer still reads it"
        );

        fills.remove(&key, 1);
        fills.remove(&key, 2);
        assert!(fills.by_write(&key, 2).is_none());
        assert_eq!(fills.active.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_reader_of_a_failed_fill_gets_an_error_not_an_end() {
        let f = fill(1);
        let mut cursor = f.reader();
        f.push(Bytes::from_static(b"abc"));
        assert_eq!(f.read(&mut cursor).await.unwrap().unwrap(), &b"abc"[..]);
        f.fail();
        assert!(f.read(&mut cursor).await.is_err());
    }
}
