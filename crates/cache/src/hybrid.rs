//! The storage pingora-cache talks to: which tier is asked first, what moves between them, and
//! what a write goes to.
//!
//! - Lookup: a fill in progress → memory → disk (on the blocking pool). A small disk hit is
//!   offered to the memory tier (promotion; admission decides, and a version already in memory
//!   is never overwritten by an older one from disk).
//! - Store: small objects go to memory and to disk (write-through, so memory eviction never
//!   loses an object that is on disk); large ones are committed on disk by their writer, and any
//!   older copy leaves the memory tier so it cannot shadow them.
//! - Purge: the key leaves every tier; a fill in progress still finishes for its clients but
//!   stores nothing. A 304 (`update_meta`) rewrites a small object with the new meta; a large one
//!   is dropped and refetched next time (its body is not copied to change a header).

use crate::disk::{DiskTier, Found};
use crate::fills::{Fill, Fills};
use crate::hit::Hit;
use crate::memory::MemoryTier;
use crate::meta::Meta;
use crate::miss::MissWriter;
use crate::object::Object;
use crate::Usage;
use async_trait::async_trait;
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::storage::{HitHandler, MissHandler, PurgeOutcome, PurgeTarget};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, CacheMeta, PurgeType, Storage};
use pingora_error::{Error, ErrorType, Result};
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct HybridStorage {
    memory: Option<MemoryTier>,
    disk: Option<Arc<DiskTier>>,
    fills: Fills,
    next_write_id: AtomicU64,
}

impl HybridStorage {
    pub fn new(memory: Option<MemoryTier>, disk: Option<DiskTier>) -> Self {
        HybridStorage {
            memory,
            disk: disk.map(Arc::new),
            fills: Fills::default(),
            next_write_id: AtomicU64::new(1),
        }
    }

    pub fn usage(&self) -> Usage {
        let memory = self.memory.as_ref();
        let (memory_objects, memory_bytes) = memory.map_or((0, 0), MemoryTier::usage);
        Usage {
            memory_objects,
            memory_bytes,
            memory_evictions: memory.map_or(0, MemoryTier::evictions),
            disk: self.disk.as_ref().map(|d| d.usage()),
        }
    }

    pub(crate) fn disk(&self) -> Option<&Arc<DiskTier>> {
        self.disk.as_ref()
    }

    pub(crate) fn fills(&self) -> &Fills {
        &self.fills
    }

    /// Whether a body of `len` bytes goes to a disk segment of its own.
    pub(crate) fn is_large(&self, len: u64) -> bool {
        self.disk
            .as_ref()
            .is_some_and(|d| len > d.small_limit() as u64)
    }

    /// Stores a finished small object: memory (admission decides) and disk.
    pub(crate) async fn store(&self, key: HashBinary, object: Arc<Object>) -> Result<()> {
        if let Some(memory) = &self.memory {
            memory.insert(key, object.clone());
        }
        if let Some(disk) = self.disk.clone() {
            crate::blocking("writing a small disk entry", move || {
                disk.insert_small(&key, object.meta.serialized(), object.body())
            })
            .await?;
        }
        Ok(())
    }

    /// A large copy of `key` was committed on disk: a smaller, older one must not shadow it
    /// from the memory tier.
    pub(crate) fn replaced_by_large(&self, key: &HashBinary) {
        if let Some(memory) = &self.memory {
            memory.remove(key);
        }
    }

    /// What the disk tier holds for `key`, checked, looked up on the blocking pool.
    async fn on_disk(&self, key: HashBinary) -> Result<Option<(Arc<DiskTier>, Found)>> {
        let Some(disk) = self.disk.clone() else {
            return Ok(None);
        };
        let found = crate::blocking("looking up the disk cache", move || {
            Ok(disk.lookup(&key).map(|found| (disk, found)))
        });
        found.await
    }

    async fn disk_lookup(&self, key: HashBinary) -> Result<Option<(CacheMeta, Hit)>> {
        match self.on_disk(key).await? {
            None => Ok(None),
            Some((_, Found::Small { meta, body })) => {
                let (meta, cache_meta) = Meta::parse(meta)?;
                let object = Arc::new(Object::whole(meta, body));
                if let Some(memory) = &self.memory {
                    memory.promote(key, object.clone());
                }
                Ok(Some((cache_meta, Hit::memory(object))))
            }
            Some((disk, Found::Large { meta, body })) => {
                let (_, cache_meta) = Meta::parse(meta)?;
                Ok(Some((cache_meta, Hit::disk(disk, body))))
            }
        }
    }

    /// The stored object of `key` in RAM form, for a meta update: from memory, else a small
    /// entry read from disk. A large one on disk is dropped instead.
    async fn stored_object(&self, key: HashBinary) -> Result<Option<Arc<Object>>> {
        if let Some(object) = self.memory.as_ref().and_then(|m| m.get(&key)) {
            return Ok(Some(object));
        }
        match self.on_disk(key).await? {
            Some((_, Found::Small { meta, body })) => {
                let (meta, _) = Meta::parse(meta)?;
                Ok(Some(Arc::new(Object::whole(meta, body))))
            }
            Some((disk, Found::Large { .. })) => {
                disk.remove(&key);
                Ok(None)
            }
            None => Ok(None),
        }
    }
}

fn boxed((meta, hit): (CacheMeta, Hit)) -> (CacheMeta, HitHandler) {
    (meta, Box::new(hit))
}

#[async_trait]
impl Storage for HybridStorage {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let hash = key.combined_bin();
        if let Some(fill) = self.fills.newest(&hash) {
            return Ok(Some(boxed((fill.meta.cache_meta(), Hit::fill(fill)))));
        }
        if let Some(object) = self.memory.as_ref().and_then(|m| m.get(&hash)) {
            return Ok(Some(boxed((object.meta.cache_meta(), Hit::memory(object)))));
        }
        Ok(self.disk_lookup(hash).await?.map(boxed))
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
        let fill = <[u8; 8]>::try_from(tag).ok().and_then(|id| {
            self.fills
                .by_write(&key.combined_bin(), u64::from_be_bytes(id))
        });
        match fill {
            Some(fill) => Ok(Some(boxed((fill.meta.cache_meta(), Hit::fill(fill))))),
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
        let hash = key.combined_bin();
        let write_id = self.next_write_id.fetch_add(1, Ordering::Relaxed);
        let announced = meta
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let fill = Arc::new(Fill::new(write_id, Meta::of(meta)?));
        let writer = MissWriter::start(self, hash, fill.clone(), announced).await?;
        self.fills.insert(hash, fill);
        Ok(Box::new(writer))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _kind: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let hash = target.key().combined_bin();
        let fill = self.fills.purge(&hash);
        let memory = self.memory.as_ref().is_some_and(|m| m.remove(&hash));
        let disk = self.disk.as_ref().is_some_and(|d| d.remove(&hash));
        Ok(if fill || memory || disk {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    /// After a 304: the same body under new meta.
    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let hash = key.combined_bin();
        let Some(old) = self.stored_object(hash).await? else {
            return Ok(false);
        };
        let updated = Arc::new(old.with_meta(Meta::of(meta)?));
        self.store(hash, updated).await?;
        Ok(true)
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}
