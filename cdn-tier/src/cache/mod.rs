//! Cache storage behind pingora-cache, configured per tier. Today the memory tier alone; the
//! disk tier and the engine that combines them will sit behind the same `storage` function.

mod memory;

pub use memory::MemoryStorage;

use crate::config::CacheConfig;

/// The storage a tier caches into. Lives for the whole process (pingora wants `&'static`).
pub fn storage(config: &CacheConfig) -> &'static MemoryStorage {
    if let Some(disk) = &config.disk {
        tracing::warn!(
            path = %disk.path.display(),
            "a disk tier is configured, but this build caches in memory only; the path is not used"
        );
    }
    Box::leak(Box::new(MemoryStorage::new(config.memory_bytes)))
}
