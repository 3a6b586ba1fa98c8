//! The in-RAM index of the disk tier: 64-bit key fingerprint → where the entry lives. 16
//! shards, each a hash map of 8-byte keys and 16-byte slots (about 25 bytes a slot before
//! the map's load factor; `bytes_per_object` reports the real figure). The full 128-bit key is
//! in the entry's header and checked on every read, so a fingerprint collision is a miss,
//! never a wrong object.

use std::collections::HashMap;
use std::sync::RwLock;

const SHARDS: usize = 16;

/// Where an entry lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    /// An entry inside a small segment, read and checked whole.
    Small { segment: u64, offset: u32, len: u32 },
    /// The one entry of a large segment, read block by block.
    Large { segment: u64 },
}

impl Loc {
    pub fn segment(&self) -> u64 {
        match *self {
            Loc::Small { segment, .. } | Loc::Large { segment } => segment,
        }
    }
}

/// A `Loc` as the map holds it, in 16 bytes: a small entry is never empty (its header alone
/// is 64 bytes), so a length of 0 marks a large segment's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    segment: u64,
    offset: u32,
    len: u32,
}

impl From<Loc> for Slot {
    fn from(loc: Loc) -> Slot {
        match loc {
            Loc::Small {
                segment,
                offset,
                len,
            } => Slot {
                segment,
                offset,
                len,
            },
            Loc::Large { segment } => Slot {
                segment,
                offset: 0,
                len: 0,
            },
        }
    }
}

impl From<Slot> for Loc {
    fn from(slot: Slot) -> Loc {
        match slot.len {
            0 => Loc::Large {
                segment: slot.segment,
            },
            len => Loc::Small {
                segment: slot.segment,
                offset: slot.offset,
                len,
            },
        }
    }
}

pub fn fingerprint(key: &[u8; 16]) -> u64 {
    u64::from_le_bytes(key[..8].try_into().expect("8 bytes"))
}

#[derive(Debug)]
pub struct Index {
    shards: Vec<RwLock<HashMap<u64, Slot>>>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }
}

impl Index {
    fn shard(&self, fp: u64) -> &RwLock<HashMap<u64, Slot>> {
        &self.shards[(fp >> 60) as usize % SHARDS]
    }

    pub fn get(&self, key: &[u8; 16]) -> Option<Loc> {
        let fp = fingerprint(key);
        self.shard(fp)
            .read()
            .expect("index poisoned")
            .get(&fp)
            .map(|slot| Loc::from(*slot))
    }

    pub fn insert(&self, key: &[u8; 16], loc: Loc) {
        let fp = fingerprint(key);
        self.shard(fp)
            .write()
            .expect("index poisoned")
            .insert(fp, Slot::from(loc));
    }

    /// Removes the entry for `key` if it still points at `loc` (a newer copy elsewhere stays).
    pub fn remove(&self, key: &[u8; 16], loc: Loc) -> bool {
        let fp = fingerprint(key);
        let mut shard = self.shard(fp).write().expect("index poisoned");
        if shard.get(&fp) == Some(&Slot::from(loc)) {
            shard.remove(&fp);
            true
        } else {
            false
        }
    }

    /// Forgets every entry and gives back the maps' memory.
    pub fn clear(&self) {
        for shard in &self.shards {
            *shard.write().expect("index poisoned") = HashMap::new();
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
            let slot = std::mem::size_of::<(u64, Slot)>() + 1;
            bytes += map.capacity() * slot * 8 / 7 + std::mem::size_of::<HashMap<u64, Slot>>();
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
        let here = Loc::Small {
            segment: 3,
            offset: 100,
            len: 50,
        };
        index.insert(&key, here);
        assert!(
            !index.remove(&key, Loc::Large { segment: 2 }),
            "a newer copy elsewhere stays"
        );
        assert_eq!(index.get(&key), Some(here));
        assert!(index.remove(&key, here));
        assert!(index.is_empty());
        let large = Loc::Large { segment: 9 };
        index.insert(&key, large);
        assert_eq!(
            index.get(&key),
            Some(large),
            "a large entry reads back as one"
        );
    }
}
