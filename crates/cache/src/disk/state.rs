//! The disk tier's state: the segments that exist, which one takes small entries, which large
//! ones are still being written, and the bytes they all count against the bound. Held under
//! one mutex, taken briefly: segment files are created and renamed under it, but no entry is
//! read or written, and no evicted segment walked or deleted, while it is held.

use super::segment::Segment;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct Segments {
    /// Every segment by id; ids order them by when they were finished (oldest first).
    pub all: BTreeMap<u64, Arc<Segment>>,
    /// The small segment entries are appended to.
    pub active: Option<Arc<Segment>>,
    /// Large segments still being written: not evictable.
    pub filling: Vec<u64>,
    next_id: u64,
    /// Bytes all segments count against the bound (allocated, not used).
    pub used: u64,
}

impl Default for Segments {
    fn default() -> Self {
        Segments {
            all: BTreeMap::new(),
            active: None,
            filling: Vec::new(),
            next_id: 1,
            used: 0,
        }
    }
}

impl Segments {
    /// A fresh segment id; taken even if creating the file then fails, so no id is retried.
    pub fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Makes sure ids handed out from now on are past `id` (one found on disk).
    pub fn seen_id(&mut self, id: u64) {
        self.next_id = self.next_id.max(id.saturating_add(1));
    }

    pub fn get(&self, id: u64) -> Option<Arc<Segment>> {
        self.all.get(&id).cloned()
    }

    /// Adds a segment and counts what it takes.
    pub fn add(&mut self, segment: Arc<Segment>) {
        self.used += segment.allocated();
        self.all.insert(segment.id, segment);
    }

    /// Takes a segment out and gives back what it took.
    pub fn remove(&mut self, id: u64) -> Option<Arc<Segment>> {
        self.filling.retain(|f| *f != id);
        let segment = self.all.remove(&id)?;
        self.used -= segment.allocated();
        Some(segment)
    }

    /// The oldest segment that may be evicted: not the active one, not one being filled.
    pub fn oldest_evictable(&self) -> Option<u64> {
        let active = self.active.as_ref().map(|a| a.id);
        self.all
            .keys()
            .copied()
            .find(|id| Some(*id) != active && !self.filling.contains(id))
    }
}
