//! The cache lock pingora-cache collapses concurrent misses with, told about fills.
//!
//! pingora-cache looks a key up, and on a miss takes the key's lock: the first request gets
//! the write permit and fetches, later ones wait and look up again when it is released. With
//! streaming writes the permit is released as soon as the fill starts (its header is in), so a
//! request whose lookup missed just before that (a disk lookup takes a trip to the blocking
//! pool) would find no lock and become a second writer: a second upstream fetch of an object
//! already on its way. This lock checks for that case, before it takes the lock and again once
//! it holds the write permit: a miss that finds a fill running, or the object stored (in
//! memory, or in the disk index), by then is told to look up again, at once, instead of
//! fetching.

use crate::storage::HybridStorage;
use pingora_cache::key::{CacheHashKey, HashBinary};
use pingora_cache::lock::{CacheKeyLock, CacheLock, LockStatus, Locked, WritePermit};
use pingora_cache::CacheKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct CollapseLock {
    inner: CacheLock,
    storage: &'static HybridStorage,
    age_timeout: Duration,
    /// Requests waiting for a key's fetch to start, by key: counted when they are told to
    /// wait, forgotten when the writer lets go (they then read the fill, and count as its
    /// readers) or after `age_timeout`, whichever comes first.
    waiting: Mutex<HashMap<HashBinary, (usize, Instant)>>,
    /// Keys in `waiting`: zero lets a request skip the map.
    keys: AtomicUsize,
}

impl CollapseLock {
    /// A lock whose writers are presumed gone after `age_timeout` (waiters then compete again).
    pub fn new(storage: &'static HybridStorage, age_timeout: Duration) -> CollapseLock {
        CollapseLock {
            inner: CacheLock::new(age_timeout),
            storage,
            age_timeout,
            waiting: Mutex::default(),
            keys: AtomicUsize::new(0),
        }
    }

    /// How many requests wait for `key`'s fetch to start, or stream its fill.
    pub fn waiters(&self, key: &HashBinary) -> usize {
        let waiting = if self.keys.load(Ordering::Relaxed) == 0 {
            0
        } else {
            let map = self.waiting.lock().expect("waiting poisoned");
            map.get(key)
                .filter(|(_, since)| since.elapsed() < self.age_timeout)
                .map_or(0, |(n, _)| *n)
        };
        waiting + self.storage.fill_readers(key)
    }

    /// A lock already let go: waiting on it returns at once, and the request looks up again.
    fn look_again(&self) -> Locked {
        let (mut permit, stub) = WritePermit::new(self.age_timeout, false, http::Extensions::new());
        permit.unlock(LockStatus::Done);
        Locked::Read(stub.read_lock())
    }

    fn waits(&self, key: HashBinary) {
        let mut map = self.waiting.lock().expect("waiting poisoned");
        let entry = map.entry(key).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.age_timeout {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        if map.len() > 1024 {
            let age = self.age_timeout;
            map.retain(|_, (_, since)| since.elapsed() < age);
        }
        self.keys.store(map.len(), Ordering::Relaxed);
    }

    fn released(&self, key: &HashBinary) {
        if self.keys.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut map = self.waiting.lock().expect("waiting poisoned");
        map.remove(key);
        self.keys.store(map.len(), Ordering::Relaxed);
    }
}

thread_local! {
    /// The key whose stored copy this thread's request was just refused (a forced miss).
    static FORCED_MISS: std::cell::Cell<Option<HashBinary>> = const { std::cell::Cell::new(None) };
}

impl CollapseLock {
    /// Says that the request on this thread is refusing the copy stored under `key` (a hit
    /// treated as a miss): pingora-cache takes the lock for it next, with no await between,
    /// and that request must fetch, not be sent back to the copy it refused.
    pub fn forcing_miss(key: HashBinary) {
        FORCED_MISS.with(|f| f.set(Some(key)));
    }
}

impl CacheKeyLock for CollapseLock {
    fn lock(&self, key: &CacheKey, stale_writer: bool) -> Locked {
        let hash = key.combined_bin();
        let forced = FORCED_MISS.with(|f| f.take()) == Some(hash);
        if !stale_writer && !forced && self.storage.arrived_since_lookup(&hash) {
            return self.look_again();
        }
        match self.inner.lock(key, stale_writer) {
            // Checked again once the permit is held: a writer may have started its fill and
            // let go between the check above and taking the lock.
            Locked::Write(permit)
                if !stale_writer && !forced && self.storage.arrived_since_lookup(&hash) =>
            {
                self.inner.release(key, permit, LockStatus::Done);
                self.look_again()
            }
            Locked::Write(permit) => Locked::Write(permit),
            Locked::Read(read) => {
                self.waits(hash);
                Locked::Read(read)
            }
        }
    }

    fn release(&self, key: &CacheKey, permit: WritePermit, reason: LockStatus) {
        self.released(&key.combined_bin());
        self.inner.release(key, permit, reason);
    }
}
