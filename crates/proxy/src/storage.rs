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

/// Descriptors a tier's cache may hold open at once: one per disk segment (each large object
/// of 16 MiB or more has its own; small ones share segments of up to 64 MiB), and a few for
/// the process itself.
pub fn descriptors_needed(config: &CacheConfig) -> u64 {
    let disk = config.disk.as_ref().map_or(0, |d| d.size_bytes);
    disk / (16 << 20) + disk / (64 << 20) + 256
}

/// Descriptors to leave for connections beyond the cache's.
pub const FOR_CONNECTIONS: u64 = 4096;

/// Raises the soft descriptor limit to the hard one and returns it (current, hard).
pub fn raise_descriptor_limit() -> (u64, u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if limit.current.is_some_and(|c| c < hard) {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "could not raise the descriptor limit");
        }
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    (now, hard)
}
