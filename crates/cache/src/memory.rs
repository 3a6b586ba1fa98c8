//! The memory tier: a byte-bounded moka cache of finished objects. moka's TinyLFU admission
//! decides whether a new object may displace others, so one scan of cold keys cannot flush
//! the hot set; promotion from disk goes through the same door.

use crate::key::KeyHash;
use crate::object::Object;
use pingora_cache::key::HashBinary;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct MemoryTier {
    objects: moka::sync::Cache<HashBinary, Arc<Object>, KeyHash>,
    max_object: usize,
    evictions: Arc<AtomicU64>,
}

impl MemoryTier {
    /// A tier holding at most `capacity` bytes. Objects over `max_object` bytes, or over a
    /// quarter of the tier, are not taken.
    pub fn new(capacity: u64, max_object: u64) -> Self {
        let max_object = usize::try_from(max_object.min(capacity / 4)).unwrap_or(usize::MAX);
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = evictions.clone();
        let objects = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_, o: &Arc<Object>| u32::try_from(o.weight()).unwrap_or(u32::MAX))
            .eviction_listener(move |_, _, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build_with_hasher(KeyHash);
        MemoryTier {
            objects,
            max_object,
            evictions,
        }
    }

    pub fn get(&self, key: &HashBinary) -> Option<Arc<Object>> {
        self.objects.get(key)
    }

    /// Whether `key` is here, without counting it as a use.
    pub fn contains(&self, key: &HashBinary) -> bool {
        self.objects.contains_key(key)
    }

    /// Offers a new version of an object; admission may still turn it away. One too big for
    /// the tier removes any older version, which would otherwise shadow it.
    pub fn insert(&self, key: HashBinary, object: Arc<Object>) {
        if object.len() <= self.max_object {
            self.objects.insert(key, object);
        } else {
            self.objects.invalidate(&key);
        }
    }

    /// Offers a copy read from disk, unless a (possibly newer) version is already here.
    pub fn promote(&self, key: HashBinary, object: Arc<Object>) {
        if object.len() <= self.max_object {
            self.objects.entry(key).or_insert(object);
        }
    }

    pub fn remove(&self, key: &HashBinary) -> bool {
        self.objects.remove(key).is_some()
    }

    /// Drops every object.
    pub fn clear(&self) {
        self.objects.invalidate_all();
        self.objects.run_pending_tasks();
    }

    /// Objects evicted to make room so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Finished objects and the bytes they weigh (moka settles its books lazily; this settles
    /// them first).
    pub fn usage(&self) -> (u64, u64) {
        self.objects.run_pending_tasks();
        (self.objects.entry_count(), self.objects.weighted_size())
    }
}
