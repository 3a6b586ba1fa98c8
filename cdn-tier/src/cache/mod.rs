//! Cache storage behind pingora-cache, configured per tier: a memory tier (`memory`), a disk
//! tier (`disk`), and the engine that puts them together for pingora (`engine`).

pub mod disk;
mod engine;
mod memory;

pub use engine::{EngineUsage, TieredStorage};
pub use memory::MemoryTier;

use crate::config::CacheConfig;
use disk::DiskTier;

/// The storage a tier caches into, opened (and its disk index rebuilt) now. Lives for the whole
/// process, as pingora wants.
pub fn storage(config: &CacheConfig) -> std::io::Result<&'static TieredStorage> {
    let memory = (config.memory_bytes > 0).then(|| {
        // One object may take at most a quarter of the memory tier.
        let max = config.max_object_bytes.min(config.memory_bytes / 4);
        MemoryTier::new(
            config.memory_bytes,
            usize::try_from(max).unwrap_or(usize::MAX),
        )
    });
    let disk = match &config.disk {
        Some(d) => Some(DiskTier::open(&d.path, d.size_bytes).map_err(|e| {
            std::io::Error::new(e.kind(), format!("disk cache at {}: {e}", d.path.display()))
        })?),
        None => None,
    };
    Ok(Box::leak(Box::new(TieredStorage::new(memory, disk))))
}
