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

/// Too many open files, in the process and in the system (Linux errno values).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

impl DiskTier {
    pub(super) fn recover(&self) -> io::Result<()> {
        let started = Instant::now();
        let mut found: Vec<(u64, Kind, PathBuf)> = Vec::new();
        // Bytes on this disk the bound must count though no segment holds them: files that
        // are not segments, and segments that cannot be opened or removed.
        let mut unusable = 0u64;
        let size_of = |path: &std::path::Path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
        };
        for dirent in std::fs::read_dir(&self.dir)? {
            let dirent = dirent?;
            let name = dirent.file_name();
            match name.to_str().and_then(segment::parse_name) {
                Some((id, kind)) => found.push((id, kind, dirent.path())),
                None => {
                    let path = dirent.path();
                    tracing::warn!(path = %path.display(), "a file in the cache folder that is not the cache's: counted against its size, left alone");
                    unusable += size_of(&path);
                }
            }
        }
        found.sort_by_key(|(id, _, _)| *id);
        for (id, kind, path) in found {
            self.segments().seen_id(id);
            let segment = match Segment::open(&path, id, kind) {
                Ok(s) => Arc::new(s),
                // Out of descriptors says nothing of the file: the tier cannot start as set up.
                Err(e) if matches!(e.raw_os_error(), Some(EMFILE | ENFILE)) => return Err(e),
                Err(e) => {
                    // Unreadable: of no use to the cache, so removed; if even that fails, its
                    // bytes are counted so the folder still keeps to its size.
                    tracing::warn!(path = %path.display(), error = %e, "cache segment cannot be opened; removed");
                    if std::fs::remove_file(&path).is_err() {
                        unusable += size_of(&path);
                    }
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
        self.segments().used += unusable;
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
