//! The memory tier: a byte-bounded moka cache of finished objects, plus the objects still
//! being written, which readers can stream while the writer fills them.
//!
//! Bodies are kept as the chunks they arrived in (shared `Bytes`, never copied per hit).
//! moka's TinyLFU admission keeps one scan of cold keys from flushing the hot set.
//!
//! **Invariant:** a reader of an object whose writer dies before finishing gets an error, never
//! a clean end of body, so a truncated object can't pass for a whole one (pingora issue 932).

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
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;

/// Meta as pingora serializes it: (internal, header).
type SerializedMeta = (Vec<u8>, Vec<u8>);

/// A finished object.
struct Object {
    meta: SerializedMeta,
    chunks: Arc<[Bytes]>,
    len: usize,
}

/// Progress of an object being written, as readers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fill {
    /// This many chunks are readable so far.
    Writing(usize),
    Done(usize),
    Failed,
}

/// An object being written.
struct Partial {
    write_id: u64,
    meta: SerializedMeta,
    chunks: RwLock<Vec<Bytes>>,
    fill: watch::Sender<Fill>,
}

pub struct MemoryStorage {
    objects: moka::sync::Cache<HashBinary, Arc<Object>>,
    partial: Mutex<HashMap<HashBinary, Arc<Partial>>>,
    next_write_id: AtomicU64,
}

impl MemoryStorage {
    /// A memory tier holding at most `capacity` bytes of bodies and headers.
    pub fn new(capacity: u64) -> Self {
        let objects = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_, o: &Arc<Object>| {
                let weight = o.len + o.meta.0.len() + o.meta.1.len();
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .build();
        MemoryStorage {
            objects,
            partial: Mutex::new(HashMap::new()),
            next_write_id: AtomicU64::new(1),
        }
    }

    /// Finished objects and the bytes they weigh (moka's view, settled lazily).
    pub fn usage(&self) -> (u64, u64) {
        self.objects.run_pending_tasks();
        (self.objects.entry_count(), self.objects.weighted_size())
    }

    fn partial_for(&self, key: &HashBinary) -> Option<Arc<Partial>> {
        self.partial
            .lock()
            .expect("partial map poisoned")
            .get(key)
            .cloned()
    }

    fn forget_partial(&self, key: &HashBinary, write_id: u64) {
        let mut partial = self.partial.lock().expect("partial map poisoned");
        if partial.get(key).is_some_and(|p| p.write_id == write_id) {
            partial.remove(key);
        }
    }
}

fn meta_of(serialized: &SerializedMeta) -> Result<CacheMeta> {
    CacheMeta::deserialize(&serialized.0, &serialized.1)
}

fn partial_hit(p: Arc<Partial>) -> Result<Option<(CacheMeta, HitHandler)>> {
    let meta = meta_of(&p.meta)?;
    let fill = p.fill.subscribe();
    Ok(Some((
        meta,
        Box::new(PartialHit {
            object: p,
            fill,
            next: 0,
        }),
    )))
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let hash = key.combined_bin();
        if let Some(p) = self.partial_for(&hash) {
            return partial_hit(p);
        }
        let Some(object) = self.objects.get(&hash) else {
            return Ok(None);
        };
        let meta = meta_of(&object.meta)?;
        let hit = CompleteHit {
            end: object.len,
            object,
            next: 0,
            skip: 0,
            pos: 0,
            done: false,
        };
        Ok(Some((meta, Box::new(hit))))
    }

    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        streaming_write_tag: Option<&[u8]>,
        trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let hash = key.combined_bin();
        let wanted = streaming_write_tag
            .and_then(|t| <[u8; 8]>::try_from(t).ok())
            .map(u64::from_be_bytes);
        match self.partial_for(&hash) {
            Some(p) if Some(p.write_id) == wanted => partial_hit(p),
            _ => self.lookup(key, trace).await,
        }
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let hash = key.combined_bin();
        let write_id = self.next_write_id.fetch_add(1, Ordering::Relaxed);
        let partial = Arc::new(Partial {
            write_id,
            meta: meta.serialize()?,
            chunks: RwLock::new(Vec::new()),
            fill: watch::channel(Fill::Writing(0)).0,
        });
        self.partial
            .lock()
            .expect("partial map poisoned")
            .insert(hash, partial.clone());
        Ok(Box::new(MemoryMiss {
            storage: self,
            key: hash,
            partial,
            tag: write_id.to_be_bytes(),
            len: 0,
            finished: false,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _kind: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let hash = target.key().combined_bin();
        let partial = self
            .partial
            .lock()
            .expect("partial map poisoned")
            .remove(&hash)
            .is_some();
        let object = self.objects.remove(&hash).is_some();
        Ok(if partial || object {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let hash = key.combined_bin();
        let Some(old) = self.objects.get(&hash) else {
            return Ok(false);
        };
        let updated = Object {
            meta: meta.serialize()?,
            chunks: old.chunks.clone(),
            len: old.len,
        };
        self.objects.insert(hash, Arc::new(updated));
        Ok(true)
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// Reads a finished object, whole or one range of it.
struct CompleteHit {
    object: Arc<Object>,
    /// Next chunk to send, and bytes to skip at its start.
    next: usize,
    skip: usize,
    /// Body offset of chunk `next`, and where to stop (exclusive).
    pos: usize,
    end: usize,
    done: bool,
}

#[async_trait]
impl HandleHit for CompleteHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        while !self.done {
            let Some(chunk) = self.object.chunks.get(self.next) else {
                break;
            };
            let (start, chunk_end) = (self.pos, self.pos + chunk.len());
            self.next += 1;
            self.pos = chunk_end;
            let from = self.skip;
            self.skip = 0;
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
        if start >= len && !(start == 0 && len == 0) {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start {start} past body of {len}"),
            );
        }
        self.end = end.map_or(len, |e| e.min(len));
        // Find the chunk holding `start`.
        let (mut next, mut pos) = (0, 0);
        while let Some(chunk) = self.object.chunks.get(next) {
            if pos + chunk.len() > start {
                break;
            }
            pos += chunk.len();
            next += 1;
        }
        self.next = next;
        self.pos = pos;
        self.skip = start - pos;
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

/// Streams an object while its writer is still filling it.
struct PartialHit {
    object: Arc<Partial>,
    fill: watch::Receiver<Fill>,
    next: usize,
}

#[async_trait]
impl HandleHit for PartialHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            let fill = *self.fill.borrow_and_update();
            let available = match fill {
                Fill::Writing(n) | Fill::Done(n) => n,
                Fill::Failed => {
                    return Error::e_explain(
                        ErrorType::InternalError,
                        "cache fill failed before the body was complete",
                    )
                }
            };
            if self.next < available {
                let chunk = self.object.chunks.read().expect("chunks poisoned")[self.next].clone();
                self.next += 1;
                return Ok(Some(chunk));
            }
            if let Fill::Done(_) = fill {
                return Ok(None);
            }
            if self.fill.changed().await.is_err() {
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

/// Writes one object; dropped without `finish`, it marks the fill failed.
struct MemoryMiss {
    storage: &'static MemoryStorage,
    key: HashBinary,
    partial: Arc<Partial>,
    tag: [u8; 8],
    len: usize,
    finished: bool,
}

#[async_trait]
impl HandleMiss for MemoryMiss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.len += data.len();
        let count = {
            let mut chunks = self.partial.chunks.write().expect("chunks poisoned");
            chunks.push(data);
            chunks.len()
        };
        self.partial.fill.send_replace(Fill::Writing(count));
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        // Readers still attached to the partial keep reading its chunks; both share the bytes.
        let chunks: Arc<[Bytes]> = self
            .partial
            .chunks
            .read()
            .expect("chunks poisoned")
            .clone()
            .into();
        let count = chunks.len();
        let object = Object {
            meta: self.partial.meta.clone(),
            chunks,
            len: self.len,
        };
        self.storage.objects.insert(self.key, Arc::new(object));
        self.partial.fill.send_replace(Fill::Done(count));
        self.storage
            .forget_partial(&self.key, self.partial.write_id);
        self.finished = true;
        Ok(MissFinishType::Created(self.len))
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(&self.tag)
    }
}

impl Drop for MemoryMiss {
    fn drop(&mut self) {
        if !self.finished {
            self.partial.fill.send_replace(Fill::Failed);
            self.storage
                .forget_partial(&self.key, self.partial.write_id);
        }
    }
}
