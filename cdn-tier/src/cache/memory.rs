//! The memory tier: a byte-bounded moka cache of finished objects. Bodies are kept as the
//! chunks they arrived in (shared `Bytes`, never copied per hit). moka's TinyLFU admission
//! decides whether a new object may displace others, so one scan of cold keys cannot flush
//! the hot set; promotion from disk goes through the same door.

use bytes::{Bytes, BytesMut};
use pingora::cache::key::HashBinary;
use pingora::cache::CacheMeta;
use pingora::http::ResponseHeader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// Meta as pingora serializes it: (internal, header).
pub type SerializedMeta = (Vec<u8>, Vec<u8>);

/// A cache meta kept parsed, so a memory hit rebuilds it with one header copy instead of
/// decoding the serialized form (MessagePack, a compressed header block, a header parse).
#[derive(Clone)]
pub struct MetaParts {
    fresh_until: SystemTime,
    updated: SystemTime,
    stale_while_revalidate: u32,
    stale_if_error: u32,
    header: ResponseHeader,
}

impl MetaParts {
    pub fn of(meta: &CacheMeta) -> MetaParts {
        MetaParts {
            fresh_until: meta.fresh_until(),
            updated: meta.updated(),
            stale_while_revalidate: meta.stale_while_revalidate_sec(),
            stale_if_error: meta.stale_if_error_sec(),
            header: meta.response_header_copy(),
        }
    }

    /// The meta again. Its age counts from the last update, as the original's does.
    pub fn meta(&self) -> CacheMeta {
        CacheMeta::new(
            self.fresh_until,
            self.updated,
            self.stale_while_revalidate,
            self.stale_if_error,
            self.header.clone(),
        )
    }
}

/// A finished object held in memory.
pub struct MemObject {
    pub meta: SerializedMeta,
    pub parts: MetaParts,
    pub chunks: Arc<[Bytes]>,
    pub len: usize,
}

/// Joins the chunks a body arrived in into pieces of about `PIECE` bytes, so a hit is sent in
/// a few large writes rather than many small ones. Done once, when a fill finishes.
pub fn coalesce(chunks: &[Bytes]) -> Vec<Bytes> {
    const PIECE: usize = 1 << 20;
    let mut out = Vec::new();
    let mut piece = BytesMut::new();
    for chunk in chunks {
        if piece.is_empty() && chunk.len() >= PIECE {
            out.push(chunk.clone());
            continue;
        }
        piece.extend_from_slice(chunk);
        if piece.len() >= PIECE {
            out.push(std::mem::take(&mut piece).freeze());
        }
    }
    if !piece.is_empty() {
        out.push(piece.freeze());
    }
    out
}

/// Keys are already 128-bit Blake2b digests: hashing them again (moka's default is SipHash)
/// only costs time, so the map takes eight of their bytes as the hash.
#[derive(Clone, Copy, Default)]
pub struct KeyHash;

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

#[derive(Default)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A digest arrives whole; anything else (a length prefix) is folded in cheaply.
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
    }
}

pub struct MemoryTier {
    objects: moka::sync::Cache<HashBinary, Arc<MemObject>, KeyHash>,
    max_object: usize,
    evictions: Arc<AtomicU64>,
}

impl MemoryTier {
    /// A tier holding at most `capacity` bytes; objects over `max_object` bytes are not taken.
    pub fn new(capacity: u64, max_object: usize) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = evictions.clone();
        let objects = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_, o: &Arc<MemObject>| {
                let weight = o.len + o.meta.0.len() + o.meta.1.len();
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
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

    pub fn get(&self, key: &HashBinary) -> Option<Arc<MemObject>> {
        self.objects.get(key)
    }

    /// Offers a new version of an object; admission may still turn it away. One too big for
    /// the tier removes any older version, which would otherwise shadow it.
    pub fn insert(&self, key: HashBinary, object: Arc<MemObject>) {
        if object.len <= self.max_object {
            self.objects.insert(key, object);
        } else {
            self.objects.invalidate(&key);
        }
    }

    /// Offers a copy read from disk, unless a (possibly newer) version is already here.
    pub fn promote(&self, key: HashBinary, object: Arc<MemObject>) {
        if object.len <= self.max_object {
            self.objects.entry(key).or_insert(object);
        }
    }

    pub fn remove(&self, key: &HashBinary) -> bool {
        self.objects.remove(key).is_some()
    }

    /// Finished objects and the bytes they weigh (moka settles its books lazily; this settles
    /// them first).
    /// Objects evicted to make room so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    pub fn usage(&self) -> (u64, u64) {
        self.objects.run_pending_tasks();
        (self.objects.entry_count(), self.objects.weighted_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalescing_keeps_every_byte_in_order() {
        let chunks: Vec<Bytes> = (0..700u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 3000 + (i as usize % 7)]))
            .collect();
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let pieces = coalesce(&chunks);
        assert!(pieces.len() <= 3, "{} pieces", pieces.len());
        assert_eq!(
            pieces
                .iter()
                .flat_map(|c| c.iter().copied())
                .collect::<Vec<u8>>(),
            joined
        );
        assert!(coalesce(&[]).is_empty());
        let big = Bytes::from(vec![1u8; 2 << 20]);
        assert_eq!(
            coalesce(std::slice::from_ref(&big))[0].as_ptr(),
            big.as_ptr(),
            "a big chunk is not copied"
        );
    }
}
