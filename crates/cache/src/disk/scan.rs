//! Walks the entries of one segment, header by header: the one walker recovery (which then
//! checks and indexes each entry) and eviction (which unindexes them) share.
//!
//! A small segment holds entries back to back from offset 0, then unwritten (zeroed) space; a
//! large segment holds one entry at offset 0, whose header is written last (the newest of its
//! header slots that checks out stands for it here; its meta is checked by whoever reads it).
//! The walk ends at unwritten space, and at the first header that does not check out, which it
//! reports: nothing after a broken entry can be trusted to start where the broken header says.

use super::format::{self, Header, Invalid, Layout, HEADER_LEN, SLOTS_LEN};
use super::index::Loc;
use super::segment::{Kind, Segment};

/// An entry whose header checks out and whose extent lies inside the segment.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub offset: u64,
    pub header: Header,
    /// Where the index finds it.
    pub loc: Loc,
}

/// Where and why a walk stopped before the end of what was written.
#[derive(Debug, Clone, Copy)]
pub struct Broken {
    pub offset: u64,
    pub why: &'static str,
}

/// The entries of `segment`, in order; an `Err` is the last item.
pub fn walk(segment: &Segment) -> Walk<'_> {
    Walk {
        segment,
        offset: 0,
        done: false,
    }
}

pub struct Walk<'a> {
    segment: &'a Segment,
    offset: u64,
    done: bool,
}

impl Walk<'_> {
    /// The header at the walk's offset: from the map of a small segment, read from a large one
    /// (never mapped). A large segment that cannot be read counts as never committed.
    fn header(&self) -> Result<Header, Invalid> {
        match self.segment.kind {
            Kind::Small => {
                let bytes = self.segment.mapped();
                let at = usize::try_from(self.offset).unwrap_or(usize::MAX);
                if at.saturating_add(HEADER_LEN) > bytes.len() {
                    return Err(Invalid::Empty);
                }
                let header = Header::decode(&bytes[at..])?;
                if header.layout != Layout::Single {
                    return Err(Invalid::Corrupt(
                        "a large entry's header in a small segment",
                    ));
                }
                Ok(header)
            }
            Kind::Large => {
                let head = self
                    .segment
                    .read(0, SLOTS_LEN)
                    .map_err(|_| Invalid::Empty)?;
                Ok(format::decode_slots(&head)?[0].header)
            }
        }
    }
}

impl Iterator for Walk<'_> {
    type Item = Result<Entry, Broken>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        // A large segment holds one entry.
        self.done = self.segment.kind == Kind::Large;
        let offset = self.offset;
        let header = match self.header() {
            Ok(header) => header,
            Err(Invalid::Empty) => {
                self.done = true;
                return None;
            }
            Err(Invalid::Corrupt(why)) => {
                self.done = true;
                return Some(Err(Broken { offset, why }));
            }
        };
        let end = offset.saturating_add(header.entry_len() as u64);
        if self.segment.kind == Kind::Small && end > self.segment.mapped().len() as u64 {
            self.done = true;
            return Some(Err(Broken {
                offset,
                why: "entry runs past its segment",
            }));
        }
        self.offset = end;
        let loc = match self.segment.kind {
            Kind::Small => Loc::Small {
                segment: self.segment.id,
                offset: offset as u32,
                len: header.entry_len() as u32,
            },
            Kind::Large => Loc::Large {
                segment: self.segment.id,
            },
        };
        Some(Ok(Entry {
            offset,
            header,
            loc,
        }))
    }
}
