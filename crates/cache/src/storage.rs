//! The storage pingora-cache talks to: fills in progress first (readers stream them as they
//! arrive), then the hybrid of memory and disk. It hands out one hit type and one miss writer,
//! and keeps the write ids that tie a writer to its own fill.
//!
//! A purge takes the key out of every tier; a fill in progress still finishes for its clients
//! but stores nothing. Purging a primary key takes its `Vary` variants with it: pingora-cache
//! would only judge them by time against the next primary, and a copy's creation time is its
//! age as the upstream's `Date` tells it, good to a second, so a variant stored in the same
//! second as the purge could outlive it.

use crate::disk::DiskTier;
use crate::fills::{Fill, Fills};
use crate::hit::Hit;
use crate::hybrid::Hybrid;
use crate::hybrid::Usage;
use crate::memory::MemoryTier;
use crate::meta::Meta;
use crate::miss::MissWriter;
use crate::object::Object;
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
    hybrid: Hybrid,
    fills: Fills,
    next_write_id: AtomicU64,
    /// The variants stored under each primary key since start-up (bounded: past the bound,
    /// the least used primaries are forgotten, and their variants fall back on pingora-cache's
    /// judgement by time).
    variants: moka::sync::Cache<HashBinary, Vec<HashBinary>>,
}

/// Primary keys whose variants are remembered.
const VARIANT_PRIMARIES: u64 = 1 << 18;

impl HybridStorage {
    pub fn new(memory: Option<MemoryTier>, disk: Option<DiskTier>) -> Self {
        HybridStorage {
            hybrid: Hybrid::new(memory, disk),
            fills: Fills::default(),
            next_write_id: AtomicU64::new(1),
            variants: moka::sync::Cache::new(VARIANT_PRIMARIES),
        }
    }

    /// Drops what is stored or filling under a key (its combined hash) and, for a primary key,
    /// under every variant of it stored since start-up; whether anything was.
    pub fn invalidate(&self, key: HashBinary) -> bool {
        let variants = self.variants.remove(&key).unwrap_or_default();
        let mut dropped = false;
        for hash in std::iter::once(key).chain(variants) {
            let filling = self.fills.purge(&hash);
            let stored = self.hybrid.remove(&hash);
            dropped |= filling || stored;
        }
        dropped
    }

    /// Whether a response may be stored under `key`: not a variant, a variant already stored,
    /// or one more while its object has fewer than `max` (so variants a client invents in its
    /// request fields cannot fill the cache, nor make the list copied on each store long). The
    /// first variant seen takes the primary slot (pingora-cache's), the others a slot of
    /// their own each, remembered here.
    pub fn admits_variant(&self, key: &CacheKey, max: usize) -> bool {
        if key.variance_bin().is_none() {
            return true;
        }
        let combined = key.combined_bin();
        self.variants
            .get(&key.primary_bin())
            .is_none_or(|known| known.len() + 1 < max || known.contains(&combined))
    }

    /// Remembers a variant's key under its primary, for `invalidate`.
    fn remember_variant(&self, key: &CacheKey) {
        if key.variance_bin().is_none() {
            return;
        }
        let combined = key.combined_bin();
        self.variants
            .entry(key.primary_bin())
            .and_upsert_with(|known| {
                let mut list = known.map(|e| e.into_value()).unwrap_or_default();
                if !list.contains(&combined) {
                    list.push(combined);
                }
                list
            });
    }

    /// The finished object of `key` (a combined hash) in the memory tier, unless a fill of the
    /// key is running (a lookup would hand out the fill): what a hit answered before
    /// pingora-cache reads.
    pub fn in_memory(&self, key: &HashBinary) -> Option<Arc<Object>> {
        if self.fills.any() && self.fills.newest(key).is_some() {
            return None;
        }
        self.hybrid.in_memory(key)
    }

    /// The fields a lookup of `key` (a combined hash) would find, with no body read: the
    /// running fill's, or the stored copy's (from memory, or read and checked off the disk).
    pub async fn stored_meta(&self, key: &HashBinary) -> Option<CacheMeta> {
        if let Some(fill) = self.fills.newest(key) {
            return Some(fill.meta.cache_meta());
        }
        let found = self.hybrid.lookup(*key).await.ok()??;
        Some(found.0)
    }

    /// Whether a fill of `key` is running, or the object is stored: something a lookup that
    /// missed moments ago would now find.
    pub fn arrived_since_lookup(&self, key: &HashBinary) -> bool {
        self.fills.newest(key).is_some() || self.hybrid.holds(key)
    }

    /// How many requests stream the running fill of `key` (0 when none runs); cheap while no
    /// fill runs at all.
    pub fn fill_readers(&self, key: &HashBinary) -> usize {
        if !self.fills.any() {
            return 0;
        }
        // The registry and the writer hold it too.
        self.fills.holders(key).saturating_sub(2)
    }

    /// A disk write failed lately (a full or read-only disk, too many open files, an I/O
    /// error): new fills are not admitted until a while has passed without one.
    pub fn degraded(&self) -> bool {
        self.hybrid.degraded()
    }

    pub fn usage(&self) -> Usage {
        self.hybrid.usage()
    }

    /// Lets go of what the storage holds once nothing will use it again (pingora keeps storage
    /// for the life of the process; a tier stopped in a process that goes on calls this): the
    /// memory tier is emptied and the disk tier's files closed. The files stay on disk.
    pub fn close(&self) {
        self.hybrid.close();
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
        Ok(self.hybrid.lookup(hash).await?.map(boxed))
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
        self.remember_variant(key);
        let writer =
            MissWriter::start(&self.hybrid, &self.fills, hash, fill.clone(), announced).await?;
        self.fills.insert(hash, fill);
        Ok(Box::new(writer))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _kind: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        Ok(if self.invalidate(target.key().combined_bin()) {
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
        self.hybrid.update_meta(key.combined_bin(), meta).await
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}
