//! The memory tier in front of the disk tier: which is asked first, what moves between them,
//! and where a finished object goes.
//!
//! - Lookup: memory, then disk (on the blocking pool). A small disk hit is offered to the memory
//!   tier (promotion: admission decides, and a version already in memory is never overwritten
//!   by an older one from disk).
//! - Store: a small object goes to memory and to disk (write-through, so memory eviction never
//!   loses an object that is on disk); a large one is committed on disk by its writer, and any
//!   older copy leaves the memory tier so it cannot shadow it.
//! - A meta update (after a 304) rewrites a small object with the new meta; a large one has
//!   its meta rewritten in place on disk, its body neither read nor copied (`disk::rewrite`);
//!   if the new meta does not fit there, it is dropped and refetched next time.

use crate::disk::DiskUsage;
use crate::disk::{DiskTier, Found, LargeBody, Rewrite};
use crate::hit::Hit;
use crate::memory::MemoryTier;
use crate::meta::Meta;
use crate::object::Object;
use pingora_cache::key::HashBinary;
use pingora_cache::CacheMeta;
use pingora_error::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the storage holds, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub memory_objects: u64,
    pub memory_bytes: u64,
    /// Objects the memory tier evicted to make room, so far.
    pub memory_evictions: u64,
    pub disk: Option<DiskUsage>,
    /// Disk writes that failed since start-up.
    pub disk_faults: u64,
    /// A disk write failed lately: misses pass through uncached.
    pub degraded: bool,
}

pub struct Hybrid {
    memory: Option<MemoryTier>,
    disk: Option<Arc<DiskTier>>,
    faults: Faults,
}

/// Disk writes that failed (a full or read-only disk, too many open files, an I/O error): each
/// is counted, logged (at most once a second), and for `DEGRADED_FOR` after the last one new
/// fills are not admitted, so misses pass through uncached while hits are still served.
#[derive(Default)]
struct Faults {
    count: AtomicU64,
    /// Milliseconds since `EPOCH` of the last one, plus one (0: none yet).
    last: AtomicU64,
    logged: AtomicU64,
}

const DEGRADED_FOR: Duration = Duration::from_secs(5);
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl Hybrid {
    pub fn new(memory: Option<MemoryTier>, disk: Option<DiskTier>) -> Hybrid {
        Hybrid {
            memory,
            disk: disk.map(Arc::new),
            faults: Faults::default(),
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
            disk_faults: self.faults(),
            degraded: self.degraded(),
        }
    }

    /// A disk write failed: counted, logged, and new fills are not admitted for a while.
    pub fn fault(&self, doing: &str, error: &dyn std::fmt::Display) {
        let now = now_ms();
        self.faults.count.fetch_add(1, Ordering::Relaxed);
        self.faults.last.store(now, Ordering::Relaxed);
        let logged = self.faults.logged.load(Ordering::Relaxed);
        if now.saturating_sub(logged) >= 1000
            && self
                .faults
                .logged
                .compare_exchange(logged, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%error, doing, "disk cache write failed: misses pass through uncached for a while");
        }
    }

    /// Whether a disk write failed lately: new fills are then not admitted.
    pub fn degraded(&self) -> bool {
        let last = self.faults.last.load(Ordering::Relaxed);
        last != 0 && now_ms().saturating_sub(last) < DEGRADED_FOR.as_millis() as u64
    }

    /// Disk writes that failed since start-up.
    pub fn faults(&self) -> u64 {
        self.faults.count.load(Ordering::Relaxed)
    }

    pub fn disk(&self) -> Option<&Arc<DiskTier>> {
        self.disk.as_ref()
    }

    /// Whether a body of `len` bytes goes to a disk segment of its own.
    pub fn is_large(&self, len: u64) -> bool {
        self.disk
            .as_ref()
            .is_some_and(|d| len > d.small_limit() as u64)
    }

    /// The stored object of `key`: its meta and a hit that reads it.
    pub async fn lookup(&self, key: HashBinary) -> Result<Option<(CacheMeta, Hit)>> {
        if let Some(object) = self.memory.as_ref().and_then(|m| m.get(&key)) {
            return Ok(Some((object.meta.cache_meta(), Hit::memory(object))));
        }
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

    /// The finished object of `key` in the memory tier, if it is there (counted as a use).
    pub fn in_memory(&self, key: &HashBinary) -> Option<Arc<Object>> {
        self.memory.as_ref()?.get(key)
    }

    /// Whether either tier holds `key` now, by what is known without reading the disk.
    pub fn holds(&self, key: &HashBinary) -> bool {
        self.memory.as_ref().is_some_and(|m| m.contains(key))
            || self.disk.as_ref().is_some_and(|d| d.indexed(key))
    }

    /// Stores a finished small object: memory (admission decides) and disk.
    pub async fn store(&self, key: HashBinary, object: Arc<Object>) -> Result<()> {
        if let Some(memory) = &self.memory {
            memory.insert(key, object.clone());
        }
        if let Some(disk) = self.disk.clone() {
            crate::pool::blocking("writing a small disk entry", move || {
                disk.insert_small(&key, object.meta.serialized(), object.body())
            })
            .await?;
        }
        Ok(())
    }

    /// A large copy of `key` was committed on disk: a smaller, older one must not shadow it
    /// from the memory tier.
    pub fn replaced_by_large(&self, key: &HashBinary) {
        if let Some(memory) = &self.memory {
            memory.remove(key);
        }
    }

    /// Forgets `key` in both tiers; whether either held it.
    pub fn remove(&self, key: &HashBinary) -> bool {
        let memory = self.memory.as_ref().is_some_and(|m| m.remove(key));
        let disk = self.disk.as_ref().is_some_and(|d| d.remove(key));
        memory || disk
    }

    /// Gives the stored body of `key` the meta of a 304; whether there was one to update.
    pub async fn update_meta(&self, key: HashBinary, meta: &CacheMeta) -> Result<bool> {
        let meta = Meta::of(meta)?;
        let old = match self.memory.as_ref().and_then(|m| m.get(&key)) {
            Some(object) => object,
            None => match self.on_disk(key).await? {
                Some((_, Found::Small { meta, body })) => {
                    let (meta, _) = Meta::parse(meta)?;
                    Arc::new(Object::whole(meta, body))
                }
                Some((disk, Found::Large { body, .. })) => {
                    return Self::rewrite_large(disk, body, meta).await;
                }
                None => return Ok(false),
            },
        };
        self.store(key, Arc::new(old.with_meta(meta))).await?;
        Ok(true)
    }

    /// Rewrites a large disk entry's meta in place; whether it now goes by `meta` (if the meta
    /// did not fit, the entry is gone).
    async fn rewrite_large(disk: Arc<DiskTier>, body: LargeBody, meta: Meta) -> Result<bool> {
        let rewritten = crate::pool::blocking("rewriting a large disk entry's meta", move || {
            disk.rewrite_meta(&body, meta.serialized())
        });
        Ok(rewritten.await? == Rewrite::Rewritten)
    }

    /// Empties the memory tier and closes the disk tier's files (see `HybridStorage::close`).
    pub fn close(&self) {
        if let Some(memory) = &self.memory {
            memory.clear();
        }
        if let Some(disk) = &self.disk {
            disk.close();
        }
    }

    /// What the disk tier holds for `key`, checked, looked up on the blocking pool.
    async fn on_disk(&self, key: HashBinary) -> Result<Option<(Arc<DiskTier>, Found)>> {
        let Some(disk) = self.disk.clone() else {
            return Ok(None);
        };
        let found = crate::pool::blocking("looking up the disk cache", move || {
            Ok(disk.lookup(&key).map(|found| (disk, found)))
        });
        found.await
    }
}
