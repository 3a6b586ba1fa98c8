//! Cache keys as the storage sees them: pingora's 128-bit Blake2b digest of the request's key.

use pingora_cache::key::HashBinary;

/// Keys are already digests: hashing them again (std's and moka's default is SipHash) only
/// costs time, so maps keyed by them take eight of their bytes as the hash.
#[derive(Clone, Copy, Default, Debug)]
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

/// Which of `n` shards a key belongs to (its last byte; the first eight are the hash).
pub fn shard_of(key: &HashBinary, n: usize) -> usize {
    usize::from(key[15]) % n
}
