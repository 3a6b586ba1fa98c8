//! Start-up: every segment file in the folder is opened and walked, each entry checked (header,
//! meta, block table) and indexed, and the bound enforced (it may have been lowered since the
//! files were written). A small segment's walk stops at its first broken entry; a large segment
//! without a valid header was never committed and is deleted (one whose newest header slot is
//! broken, by a meta rewrite cut off, goes by the other slot).

use super::format::{Invalid, HEADER_LEN};
use super::scan::{self, Entry};
use super::segment::{self, Kind, Segment};
use super::DiskTier;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

impl DiskTier {
    pub(super) fn recover(&self) -> io::Result<()> {
        let started = Instant::now();
        let mut found: Vec<(u64, Kind, PathBuf)> = Vec::new();
        for dirent in std::fs::read_dir(&self.dir)? {
            let dirent = dirent?;
            let name = dirent.file_name();
            if let Some((id, kind)) = name.to_str().and_then(segment::parse_name) {
                found.push((id, kind, dirent.path()));
            }
        }
        found.sort_by_key(|(id, _, _)| *id);
        for (id, kind, path) in found {
            self.segments().seen_id(id);
            let segment = match Segment::open(&path, id, kind) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    // Not proof the content is bad (e.g. out of descriptors): leave the file.
                    tracing::warn!(path = %path.display(), error = %e, "cache segment cannot be opened; skipped");
                    continue;
                }
            };
            let entries = self.index_segment(&segment);
            if kind == Kind::Large && entries == 0 {
                // Never committed: the writer stopped before its header.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            self.segments().add(segment);
        }
        // The bound may have been lowered since these were written.
        let victims = self.make_room(&mut self.segments(), 0).unwrap_or_default();
        for victim in victims {
            self.evict(&victim);
        }
        tracing::info!(
            dir = %self.dir.display(),
            objects = self.index.len(),
            bytes = self.segments().used,
            millis = started.elapsed().as_millis() as u64,
            "disk cache index rebuilt"
        );
        Ok(())
    }

    /// Checks and indexes every entry of a segment, in order, up to the first that does not
    /// check out; returns how many it indexed. A small segment's appends resume after them.
    fn index_segment(&self, segment: &Segment) -> usize {
        let (mut count, mut end) = (0, 0);
        for walked in scan::walk(segment) {
            let (offset, checked) = match walked {
                Ok(entry) => (entry.offset, self.check(segment, &entry).map(|()| entry)),
                Err(broken) => (broken.offset, Err(Invalid::Corrupt(broken.why))),
            };
            let entry = match checked {
                Ok(entry) => entry,
                // A large entry whose parts cannot be read back: never committed.
                Err(Invalid::Empty) => break,
                Err(Invalid::Corrupt(why)) => {
                    tracing::warn!(
                        segment = segment.id,
                        offset,
                        why,
                        "cache entry failed its checks at start-up; dropped"
                    );
                    self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
            self.index.insert(&entry.header.key, entry.loc);
            count += 1;
            end = entry.offset + entry.header.entry_len() as u64;
        }
        segment.write_pos.store(end, Ordering::Relaxed);
        count
    }

    /// Checks the parts of an entry the walk did not: its meta and its block table.
    fn check(&self, segment: &Segment, entry: &Entry) -> Result<(), Invalid> {
        let h = &entry.header;
        match segment.kind {
            Kind::Small => {
                let bytes = &segment.mapped()[entry.offset as usize..];
                h.check_meta(&bytes[HEADER_LEN..h.body_offset()])?;
                h.check_table(&bytes[h.table_offset()..h.entry_len()])?;
                Ok(())
            }
            Kind::Large => Self::large_parts(segment, None, Invalid::Empty).map(|_| ()),
        }
    }
}
