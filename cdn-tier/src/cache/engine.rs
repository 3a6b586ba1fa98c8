//! The storage engine pingora-cache talks to: memory tier in front of disk tier, and the
//! objects still being filled, which readers stream as they arrive.
//!
//! - Lookup: a fill in progress → memory → disk (on the blocking pool). A small disk hit is
//!   offered to the memory tier (promotion; admission decides).
//! - Fill: bodies are written as they arrive. A fill starts in RAM and, past the disk tier's
//!   small-entry limit (or when `Content-Length` says it will be), streams to a disk segment
//!   of its own, so RAM per fill stays bounded whatever the object's size.
//! - Finish: small objects go to memory and to disk (write-through, so memory eviction never
//!   loses an object that is on disk); large ones are committed on disk.
//!
//! **Invariant:** a reader of a fill whose writer dies gets an error, never a clean end of
//! body, so a truncated object cannot pass for a whole one (pingora issue 932).

use super::disk::{DiskTier, DiskUsage, FillReader, Found, LargeBody, LargeWriter};
use super::memory::{coalesce, MemObject, MemoryTier, MetaParts, SerializedMeta};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta, PurgeType, Storage};
use pingora::{Error, ErrorType, Result};
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use tokio::sync::watch;

/// Largest read from disk at once while streaming an unfinished fill.
const FILL_READ: usize = 256 * 1024;
/// Largest read of a finished large object per trip to the blocking pool.
const DISK_READ: usize = 1 << 20;

pub struct TieredStorage {
    memory: Option<MemoryTier>,
    disk: Option<Arc<DiskTier>>,
    fills: Mutex<Fills>,
    next_write_id: AtomicU64,
}

/// Fills in progress: the newest per key (what lookups join), and every one by its write id
/// (what a writer's own reader asks for).
#[derive(Default)]
struct Fills {
    current: HashMap<HashBinary, Arc<Fill>>,
    by_id: HashMap<u64, Arc<Fill>>,
}

/// What the engine holds, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineUsage {
    pub memory_objects: u64,
    pub memory_bytes: u64,
    pub disk: Option<DiskUsage>,
}

impl TieredStorage {
    pub fn new(memory: Option<MemoryTier>, disk: Option<DiskTier>) -> Self {
        TieredStorage {
            memory,
            disk: disk.map(Arc::new),
            fills: Mutex::new(Fills::default()),
            next_write_id: AtomicU64::new(1),
        }
    }

    pub fn usage(&self) -> EngineUsage {
        let (memory_objects, memory_bytes) = self.memory.as_ref().map_or((0, 0), MemoryTier::usage);
        EngineUsage {
            memory_objects,
            memory_bytes,
            disk: self.disk.as_ref().map(|d| d.usage()),
        }
    }

    /// The figures the metrics report.
    pub fn figures(&self) -> crate::metrics::CacheFigures {
        let usage = self.usage();
        let disk = usage.disk.unwrap_or_default();
        crate::metrics::CacheFigures {
            memory_objects: usage.memory_objects,
            memory_bytes: usage.memory_bytes,
            memory_evictions: self.memory.as_ref().map_or(0, MemoryTier::evictions),
            disk_objects: disk.objects as u64,
            disk_bytes: disk.bytes,
            disk_evictions: disk.evicted_objects,
            corrupt: disk.corrupt,
        }
    }

    fn fill_for(&self, key: &HashBinary) -> Option<Arc<Fill>> {
        self.fills
            .lock()
            .expect("fills poisoned")
            .current
            .get(key)
            .cloned()
    }

    fn forget_fill(&self, key: &HashBinary, write_id: u64) {
        let mut fills = self.fills.lock().expect("fills poisoned");
        fills.by_id.remove(&write_id);
        if fills
            .current
            .get(key)
            .is_some_and(|f| f.write_id == write_id)
        {
            fills.current.remove(key);
        }
    }

    async fn disk_lookup(
        &'static self,
        key: HashBinary,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(disk) = self.disk.clone() else {
            return Ok(None);
        };
        let found = blocking(move || Ok(disk.lookup(&key))).await?;
        match found {
            None => Ok(None),
            Some(Found::Small { meta, body }) => {
                let cache_meta = CacheMeta::deserialize(&meta.0, &meta.1)?;
                let len = body.len();
                let object = Arc::new(MemObject {
                    parts: MetaParts::of(&cache_meta),
                    meta,
                    chunks: Arc::from(vec![body]),
                    len,
                });
                if let Some(memory) = &self.memory {
                    memory.promote(key, object.clone());
                }
                Ok(Some((cache_meta, Box::new(MemoryHit::new(object)))))
            }
            Some(Found::Large { meta, body }) => {
                let cache_meta = CacheMeta::deserialize(&meta.0, &meta.1)?;
                let disk = self.disk.clone().expect("disk tier present");
                let end = body.len;
                Ok(Some((
                    cache_meta,
                    Box::new(DiskHit {
                        disk,
                        body,
                        pos: 0,
                        end,
                        ahead: None,
                    }),
                )))
            }
        }
    }
}

/// Runs blocking disk work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Error::e_explain(ErrorType::InternalError, format!("disk cache: {e}")),
        Err(e) => Error::e_explain(ErrorType::InternalError, format!("disk cache task: {e}")),
    }
}

fn hash_of(key: &CacheKey) -> HashBinary {
    key.combined_bin()
}

#[async_trait]
impl Storage for TieredStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let hash = hash_of(key);
        if let Some(fill) = self.fill_for(&hash) {
            return fill.reader();
        }
        if let Some(object) = self.memory.as_ref().and_then(|m| m.get(&hash)) {
            return Ok(Some((
                object.parts.meta(),
                Box::new(MemoryHit::new(object)),
            )));
        }
        self.disk_lookup(hash).await
    }

    /// The writer's own fill, by its write id; never another fill or a stored object, which
    /// could carry a different body under this writer's headers.
    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        streaming_write_tag: Option<&[u8]>,
        trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let Some(tag) = streaming_write_tag else {
            return self.lookup(key, trace).await;
        };
        let id = <[u8; 8]>::try_from(tag).map(u64::from_be_bytes).ok();
        let fill = id.and_then(|id| {
            self.fills
                .lock()
                .expect("fills poisoned")
                .by_id
                .get(&id)
                .cloned()
        });
        match fill {
            Some(fill) => fill.reader(),
            None => Error::e_explain(
                ErrorType::InternalError,
                "no fill in progress for this write",
            ),
        }
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let hash = hash_of(key);
        let write_id = self.next_write_id.fetch_add(1, Ordering::Relaxed);
        let serialized = meta.serialize()?;
        let announced = meta
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let fill = Arc::new(Fill {
            write_id,
            meta: serialized,
            parts: MetaParts::of(meta),
            chunks: RwLock::new(Vec::new()),
            disk: OnceLock::new(),
            state: watch::channel(FillState::default()).0,
            purged: Default::default(),
        });
        let mut miss = TieredMiss {
            storage: self,
            key: hash,
            fill: fill.clone(),
            large: None,
            announced,
            tag: write_id.to_be_bytes(),
            finished: false,
            failed: false,
        };
        if let (Some(disk), Some(len)) = (&self.disk, announced) {
            if len > disk.small_limit() as u64 {
                miss.go_large(len).await?;
            }
        }
        let mut fills = self.fills.lock().expect("fills poisoned");
        fills.by_id.insert(write_id, fill.clone());
        fills.current.insert(hash, fill);
        drop(fills);
        Ok(Box::new(miss))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _kind: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let hash = target.key().combined_bin();
        let fill = match self
            .fills
            .lock()
            .expect("fills poisoned")
            .current
            .remove(&hash)
        {
            Some(fill) => {
                // Its writer still finishes for the clients it serves, but stores nothing.
                fill.purged.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        };
        let memory = self.memory.as_ref().is_some_and(|m| m.remove(&hash));
        let disk = self.disk.as_ref().is_some_and(|d| d.remove(&hash));
        Ok(if fill || memory || disk {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    /// After a 304: new meta for the same body. Small objects are rewritten with it; a large
    /// one on disk is dropped and refetched next time (its body is not copied to change a header).
    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let hash = hash_of(key);
        let serialized = meta.serialize()?;
        let object = match self.memory.as_ref().and_then(|m| m.get(&hash)) {
            Some(object) => Some(object),
            None => match &self.disk {
                Some(disk) => {
                    let disk = disk.clone();
                    match blocking(move || Ok(disk.lookup(&hash))).await? {
                        Some(Found::Small {
                            meta: old_meta,
                            body,
                        }) => {
                            let len = body.len();
                            Some(Arc::new(MemObject {
                                meta: old_meta,
                                parts: MetaParts::of(meta),
                                chunks: Arc::from(vec![body]),
                                len,
                            }))
                        }
                        Some(Found::Large { .. }) => {
                            self.disk.as_ref().map(|d| d.remove(&hash));
                            None
                        }
                        None => None,
                    }
                }
                None => None,
            },
        };
        let Some(old) = object else { return Ok(false) };
        let updated = Arc::new(MemObject {
            meta: serialized,
            parts: MetaParts::of(meta),
            chunks: old.chunks.clone(),
            len: old.len,
        });
        if let Some(memory) = &self.memory {
            memory.insert(hash, updated.clone());
        }
        if let Some(disk) = self.disk.clone() {
            blocking(move || {
                disk.insert_small(&hash, (&updated.meta.0, &updated.meta.1), &updated.chunks)
            })
            .await?;
        }
        Ok(true)
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Progress of a fill as readers see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FillState {
    /// Body bytes written so far.
    written: u64,
    /// Of those, the first `in_ram` are in `Fill::chunks`; the rest are on disk.
    in_ram: u64,
    done: bool,
    failed: bool,
}

/// An object being filled.
struct Fill {
    write_id: u64,
    meta: SerializedMeta,
    parts: MetaParts,
    chunks: RwLock<Vec<Bytes>>,
    disk: OnceLock<FillReader>,
    state: watch::Sender<FillState>,
    /// Purged while filling: finish stores nothing.
    purged: std::sync::atomic::AtomicBool,
}

impl Fill {
    fn reader(self: Arc<Self>) -> Result<Option<(CacheMeta, HitHandler)>> {
        let meta = self.parts.meta();
        let state = self.state.subscribe();
        Ok(Some((
            meta,
            Box::new(FillHit {
                fill: self,
                state,
                pos: 0,
                next_chunk: 0,
            }),
        )))
    }
}

/// Streams a fill while its writer is still going.
struct FillHit {
    fill: Arc<Fill>,
    state: watch::Receiver<FillState>,
    pos: u64,
    next_chunk: usize,
}

#[async_trait]
impl HandleHit for FillHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            let st = *self.state.borrow_and_update();
            if st.failed {
                return Error::e_explain(
                    ErrorType::InternalError,
                    "cache fill failed before the body was complete",
                );
            }
            if self.pos < st.in_ram {
                let chunk = self
                    .fill
                    .chunks
                    .read()
                    .expect("chunks poisoned")
                    .get(self.next_chunk)
                    .cloned();
                if let Some(chunk) = chunk {
                    self.next_chunk += 1;
                    self.pos += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
            }
            if self.pos < st.written {
                let Some(reader) = self.fill.disk.get().cloned() else {
                    return Error::e_explain(
                        ErrorType::InternalError,
                        "fill bytes neither in RAM nor on disk",
                    );
                };
                let (at, len) = (self.pos, ((st.written - self.pos) as usize).min(FILL_READ));
                let data = blocking(move || reader.read(at, len)).await?;
                self.pos += data.len() as u64;
                return Ok(Some(Bytes::from(data)));
            }
            if st.done {
                return Ok(None);
            }
            if self.state.changed().await.is_err() {
                return Error::e_explain(ErrorType::InternalError, "cache fill abandoned");
            }
        }
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn should_count_access(&self) -> bool {
        false
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Writes one object; dropped without `finish`, the fill is marked failed and any partial
/// disk file removed.
struct TieredMiss {
    storage: &'static TieredStorage,
    key: HashBinary,
    fill: Arc<Fill>,
    large: Option<LargeWriter>,
    announced: Option<u64>,
    tag: [u8; 8],
    finished: bool,
    /// A write failed: the fill must not be stored, even if `finish` is called.
    failed: bool,
}

impl TieredMiss {
    /// Moves the fill to a disk segment of its own, writing what RAM holds so far.
    async fn go_large(&mut self, expected: u64) -> Result<()> {
        let disk = self
            .storage
            .disk
            .clone()
            .expect("only called with a disk tier");
        let (key, meta) = (self.key, self.fill.meta.clone());
        let held: Vec<Bytes> = self.fill.chunks.read().expect("chunks poisoned").clone();
        let writer = blocking(move || {
            let mut writer = disk.begin_large(key, meta, expected)?;
            for chunk in &held {
                writer.write(chunk)?;
            }
            Ok(writer)
        })
        .await?;
        let _ = self.fill.disk.set(writer.reader());
        self.large = Some(writer);
        Ok(())
    }
}

#[async_trait]
impl HandleMiss for TieredMiss {
    async fn write_body(&mut self, data: Bytes, eof: bool) -> Result<()> {
        let written = self.write_body_inner(data, eof).await;
        if written.is_err() {
            self.failed = true;
        }
        written
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        if self.failed {
            return Error::e_explain(ErrorType::InternalError, "cache write failed earlier");
        }
        let written = self.fill.state.borrow().written as usize;
        let purged = self.fill.purged.load(Ordering::Relaxed);
        if let Some(writer) = self.large.take() {
            if !purged {
                blocking(move || writer.commit()).await?;
            }
            // A smaller, older copy must not shadow this one from the memory tier.
            if let Some(memory) = &self.storage.memory {
                memory.remove(&self.key);
            }
        } else if !purged {
            let chunks: Arc<[Bytes]> =
                coalesce(&self.fill.chunks.read().expect("chunks poisoned")).into();
            let object = Arc::new(MemObject {
                meta: self.fill.meta.clone(),
                parts: self.fill.parts.clone(),
                chunks,
                len: written,
            });
            if let Some(memory) = &self.storage.memory {
                memory.insert(self.key, object.clone());
            }
            if let Some(disk) = self.storage.disk.clone() {
                let key = self.key;
                blocking(move || {
                    disk.insert_small(&key, (&object.meta.0, &object.meta.1), &object.chunks)
                })
                .await?;
            }
        }
        self.fill.state.send_modify(|st| st.done = true);
        self.storage.forget_fill(&self.key, self.fill.write_id);
        self.finished = true;
        Ok(MissFinishType::Created(written))
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(&self.tag)
    }
}

impl TieredMiss {
    async fn write_body_inner(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let len = data.len() as u64;
        if let Some(mut writer) = self.large.take() {
            let writer = blocking(move || {
                writer.write(&data)?;
                Ok(writer)
            })
            .await?;
            self.large = Some(writer);
            self.fill.state.send_modify(|st| st.written += len);
            return Ok(());
        }
        self.fill
            .chunks
            .write()
            .expect("chunks poisoned")
            .push(data);
        self.fill.state.send_modify(|st| {
            st.written += len;
            st.in_ram += len;
        });
        let in_ram = self.fill.state.borrow().in_ram;
        if let Some(disk) = &self.storage.disk {
            if in_ram > disk.small_limit() as u64 {
                self.go_large(self.announced.unwrap_or(in_ram * 2).max(in_ram))
                    .await?;
            }
        }
        Ok(())
    }
}

impl Drop for TieredMiss {
    fn drop(&mut self) {
        if !self.finished {
            self.fill.state.send_modify(|st| st.failed = true);
            self.storage.forget_fill(&self.key, self.fill.write_id);
        }
    }
}

/// Reads a finished object held in RAM, whole or one range of it.
struct MemoryHit {
    object: Arc<MemObject>,
    /// Next chunk to send, bytes to skip at its start, its body offset, where to stop.
    next: usize,
    skip: usize,
    pos: usize,
    end: usize,
    done: bool,
}

impl MemoryHit {
    fn new(object: Arc<MemObject>) -> Self {
        let end = object.len;
        MemoryHit {
            object,
            next: 0,
            skip: 0,
            pos: 0,
            end,
            done: false,
        }
    }
}

#[async_trait]
impl HandleHit for MemoryHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        while !self.done {
            let Some(chunk) = self.object.chunks.get(self.next) else {
                break;
            };
            let (start, chunk_end) = (self.pos, self.pos + chunk.len());
            self.next += 1;
            self.pos = chunk_end;
            let from = std::mem::take(&mut self.skip);
            let to = chunk.len().min(self.end.saturating_sub(start));
            if chunk_end >= self.end {
                self.done = true;
            }
            if to > from {
                return Ok(Some(chunk.slice(from..to)));
            }
        }
        self.done = true;
        Ok(None)
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.object.len;
        if start >= len && len > 0 {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start {start} past body of {len}"),
            );
        }
        self.end = end.map_or(len, |e| e.min(len));
        let (mut next, mut pos) = (0, 0);
        while let Some(chunk) = self.object.chunks.get(next) {
            if pos + chunk.len() > start {
                break;
            }
            pos += chunk.len();
            next += 1;
        }
        (self.next, self.pos, self.skip) = (next, pos, start - pos);
        self.done = start >= self.end;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.object.len
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Reads a large object from disk block by block, each block checked before it is sent.
struct DiskHit {
    disk: Arc<DiskTier>,
    body: LargeBody,
    pos: u64,
    end: u64,
    /// The next read, already under way while the previous piece is being sent.
    ahead: Option<(u64, BlockRead)>,
}

/// A read of blocks on the blocking pool: the bytes and the body offset they start at.
type BlockRead = tokio::task::JoinHandle<std::io::Result<(Bytes, u64)>>;

impl DiskHit {
    /// Starts reading the blocks from body offset `at`: up to 1 MiB per trip to the blocking
    /// pool, no more than the range still needs.
    fn read_from(&self, at: u64) -> BlockRead {
        let (disk, body) = (self.disk.clone(), self.body.clone());
        let want = ((self.end - at) as usize)
            .saturating_add(super::disk::format::BLOCK)
            .min(DISK_READ);
        tokio::task::spawn_blocking(move || disk.read_blocks(&body, at, want))
    }
}

#[async_trait]
impl HandleHit for DiskHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let read = match self.ahead.take() {
            Some((at, read)) if at == self.pos => read,
            _ => self.read_from(self.pos),
        };
        let (block, start) = match read.await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                return Error::e_explain(ErrorType::InternalError, format!("disk cache: {e}"))
            }
            Err(e) => {
                return Error::e_explain(ErrorType::InternalError, format!("disk cache task: {e}"))
            }
        };
        let from = (self.pos - start) as usize;
        let to = ((self.end - start) as usize).min(block.len());
        self.pos = start + to as u64;
        // Read ahead: the next piece comes off the disk while this one goes to the client.
        if self.pos < self.end {
            self.ahead = Some((self.pos, self.read_from(self.pos)));
        }
        Ok(Some(block.slice(from..to)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.body.len;
        if start as u64 >= len && len > 0 {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start {start} past body of {len}"),
            );
        }
        self.pos = start as u64;
        self.end = end.map_or(len, |e| (e as u64).min(len));
        self.ahead = None;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.body.len as usize
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}
