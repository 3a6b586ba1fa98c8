//! A tier's cache storage from its `cache:` settings: a memory tier if it has memory, a disk
//! tier (its index rebuilt now) if it has a folder. Pingora wants storage for the life of the
//! process, so it is leaked; a tier run in-process keeps its storage until the process ends.

use cdn_cache::{DiskTier, HybridStorage, MemoryTier};
use cdn_config::CacheConfig;

pub fn open(config: &CacheConfig) -> std::io::Result<&'static HybridStorage> {
    let memory = (config.memory_bytes > 0)
        .then(|| MemoryTier::new(config.memory_bytes, config.max_object_bytes));
    let disk = match &config.disk {
        Some(d) => Some(DiskTier::open(&d.path, d.size_bytes).map_err(|e| {
            std::io::Error::new(e.kind(), format!("disk cache at {}: {e}", d.path.display()))
        })?),
        None => None,
    };
    Ok(Box::leak(Box::new(HybridStorage::new(memory, disk))))
}
