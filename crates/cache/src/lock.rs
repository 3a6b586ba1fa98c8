//! The cache lock pingora-cache collapses concurrent misses with, told about fills.
//!
//! pingora-cache looks a key up, and on a miss takes the key's lock: the first request gets
//! the write permit and fetches, later ones wait and look up again when it is released. With
//! streaming writes the permit is released as soon as the fill starts (its header is in), so a
//! request whose lookup missed just before that (a disk lookup takes a trip to the blocking
//! pool) would find no lock and become a second writer: a second upstream fetch of an object
//! already on its way. This lock checks for that case: a miss that finds a fill running (or
//! the object in memory) by the time it asks for the lock is told to look up again, at once,
//! instead of fetching.

use crate::storage::HybridStorage;
use pingora_cache::key::CacheHashKey;
use pingora_cache::lock::{CacheKeyLock, CacheLock, LockStatus, Locked, WritePermit};
use pingora_cache::CacheKey;
use std::time::Duration;

pub struct CollapseLock {
    inner: CacheLock,
    storage: &'static HybridStorage,
    age_timeout: Duration,
}

impl CollapseLock {
    /// A lock whose writers are presumed gone after `age_timeout` (waiters then compete again).
    pub fn new(storage: &'static HybridStorage, age_timeout: Duration) -> CollapseLock {
        CollapseLock {
            inner: CacheLock::new(age_timeout),
            storage,
            age_timeout,
        }
    }
}

impl CacheKeyLock for CollapseLock {
    fn lock(&self, key: &CacheKey, stale_writer: bool) -> Locked {
        if !stale_writer && self.storage.arrived_since_lookup(&key.combined_bin()) {
            // Already released: the waiter's wait returns at once and it looks up again.
            let (mut permit, stub) =
                WritePermit::new(self.age_timeout, false, http::Extensions::new());
            permit.unlock(LockStatus::Done);
            return Locked::Read(stub.read_lock());
        }
        self.inner.lock(key, stale_writer)
    }

    fn release(&self, key: &CacheKey, permit: WritePermit, reason: LockStatus) {
        self.inner.release(key, permit, reason);
    }
}
