//! The in-RAM index of the disk tier: 64-bit key fingerprint → where the entry lives. 16
//! shards, each a hash map of 8-byte keys and 12-byte locations (about 25 bytes a slot before
//! the map's load factor; `bytes_per_object` reports the real figure). The full 128-bit key is
//! in the entry's header and checked on every read, so a fingerprint collision is a miss,
//! never a wrong object.

use std::collections::HashMap;
use std::sync::RwLock;

const SHARDS: usize = 16;

/// Where an entry lives: segment, offset and length (0 for a large segment's single entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub segment: u64,
    pub offset: u32,
    len: u32,
}

impl Loc {
    pub fn new(segment: u64, offset: u32, len: u32) -> Loc {
        Loc {
            segment,
            offset,
            len,
        }
    }

    pub fn len(&self) -> u32 {
        self.len
    }
}

pub fn fingerprint(key: &[u8; 16]) -> u64 {
    u64::from_le_bytes(key[..8].try_into().expect("8 bytes"))
}

#[derive(Debug)]
pub struct Index {
    shards: Vec<RwLock<HashMap<u64, Loc>>>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }
}

impl Index {
    fn shard(&self, fp: u64) -> &RwLock<HashMap<u64, Loc>> {
        &self.shards[(fp >> 60) as usize % SHARDS]
    }

    pub fn get(&self, key: &[u8; 16]) -> Option<Loc> {
        let fp = fingerprint(key);
        self.shard(fp)
            .read()
            .expect("index poisoned")
            .get(&fp)
            .copied()
    }

    pub fn insert(&self, key: &[u8; 16], loc: Loc) {
        let fp = fingerprint(key);
        self.shard(fp)
            .write()
            .expect("index poisoned")
            .insert(fp, loc);
    }

    /// Removes the entry for `key`; with `only_at`, only if it still points there.
    pub fn remove(&self, key: &[u8; 16], only_at: Option<(u64, u32)>) -> bool {
        let fp = fingerprint(key);
        let mut shard = self.shard(fp).write().expect("index poisoned");
        match (shard.get(&fp), only_at) {
            (Some(loc), Some((segment, offset)))
                if (loc.segment, loc.offset) != (segment, offset) =>
            {
                false
            }
            (Some(_), _) => shard.remove(&fp).is_some(),
            (None, _) => false,
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().expect("index poisoned").len())
            .sum()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// RAM the maps hold (slots, control bytes), divided by the entries they index.
    pub fn bytes_per_object(&self) -> f64 {
        let (mut bytes, mut entries) = (0usize, 0usize);
        for shard in &self.shards {
            let map = shard.read().expect("index poisoned");
            let slot = std::mem::size_of::<(u64, Loc)>() + 1;
            bytes += map.capacity() * slot * 8 / 7 + std::mem::size_of::<HashMap<u64, Loc>>();
            entries += map.len();
        }
        if entries == 0 {
            0.0
        } else {
            bytes as f64 / entries as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_only_where_it_points() {
        let index = Index::default();
        let key = [7u8; 16];
        index.insert(&key, Loc::new(3, 100, 50));
        assert!(
            !index.remove(&key, Some((2, 100))),
            "a newer copy elsewhere stays"
        );
        assert_eq!(index.get(&key).unwrap().len(), 50);
        assert!(index.remove(&key, Some((3, 100))));
        assert!(index.is_empty());
    }
}
