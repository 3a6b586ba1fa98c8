//! Segment files. A *small* segment is preallocated to the segment size and filled by appending
//! whole entries; a *large* segment holds one entry streamed as it arrives. Sealed data is read
//! through a shared read-only memory map; every read here blocks (page faults included), so
//! callers run them on the blocking pool, never on an async worker.
#![allow(unsafe_code)]

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Small,
    Large,
}

impl Kind {
    fn extension(self) -> &'static str {
        match self {
            Kind::Small => "seg",
            Kind::Large => "obj",
        }
    }
}

#[derive(Debug)]
pub struct Segment {
    pub id: u64,
    pub kind: Kind,
    pub path: PathBuf,
    file: File,
    map: OnceLock<Mmap>,
    /// Bytes this segment counts against the disk bound.
    allocated: AtomicU64,
    /// Small segments: where the next entry goes.
    pub write_pos: AtomicU64,
}

pub fn file_name(id: u64, kind: Kind) -> String {
    format!("{id:020}.{}", kind.extension())
}

/// Parses a segment file name back into (id, kind).
pub fn parse_name(name: &str) -> Option<(u64, Kind)> {
    let (stem, ext) = name.split_once('.')?;
    let kind = match ext {
        "seg" => Kind::Small,
        "obj" => Kind::Large,
        _ => return None,
    };
    Some((stem.parse().ok()?, kind))
}

impl Segment {
    /// Creates a new segment file; small ones are sized (sparsely) to `size` and mapped now.
    /// On failure no file is left behind.
    pub fn create(dir: &Path, id: u64, kind: Kind, size: u64) -> io::Result<Segment> {
        let path = dir.join(file_name(id, kind));
        let made = Self::create_at(path.clone(), id, kind, size);
        if made.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        made
    }

    fn create_at(path: PathBuf, id: u64, kind: Kind, size: u64) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let segment = Segment {
            id,
            kind,
            path,
            file,
            map: OnceLock::new(),
            allocated: AtomicU64::new(size),
            write_pos: AtomicU64::new(0),
        };
        if kind == Kind::Small {
            segment.file.set_len(size)?;
            segment.map_now()?;
        }
        Ok(segment)
    }

    /// Opens an existing segment file (at start-up); small ones are mapped.
    pub fn open(path: &Path, id: u64, kind: Kind) -> io::Result<Segment> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        let segment = Segment {
            id,
            kind,
            path: path.to_owned(),
            file,
            map: OnceLock::new(),
            allocated: AtomicU64::new(len),
            write_pos: AtomicU64::new(len),
        };
        if len > 0 && kind == Kind::Small {
            segment.map_now()?;
        }
        Ok(segment)
    }

    /// Maps the file as it is now (small segments only: large ones are read with `pread`, so
    /// they hold a descriptor but no mapping).
    fn map_now(&self) -> io::Result<()> {
        // SAFETY: the file is created and written only by this process through `write_at`,
        // and never truncated while the map lives; the map is read-only and shared, so reads
        // see what `write_at` wrote. A file shortened by someone else would fault on read;
        // that is outside what the cache directory may be used for (see ARCHITECTURE.md).
        let map = unsafe { Mmap::map(&self.file)? };
        let _ = self.map.set(map);
        Ok(())
    }

    pub fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    pub fn set_allocated(&self, bytes: u64) {
        self.allocated.store(bytes, Ordering::Relaxed);
    }

    /// The `len` bytes at `offset`, mapped rather than copied: a committed large entry's body
    /// goes to the client straight from the page cache. Each window is a mapping of its own,
    /// populated at once (no page faults one by one) and unmapped when the bytes are dropped,
    /// so a big object streaming through does not stay in the process's resident memory.
    /// Blocks: populating may read from the disk.
    pub fn window(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let file_len = self.file.metadata()?.len();
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > file_len)
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the segment",
            ));
        }
        // SAFETY: as for `map_now`; a committed large entry's file is whole and never written
        // again but for its meta slots, outside any body window.
        let map = unsafe {
            MmapOptions::new()
                .offset(offset)
                .len(len)
                .populate()
                .map(&self.file)?
        };
        Ok(Bytes::from_owner(map))
    }

    /// Copies `len` bytes at `offset` out of the segment. Blocks. Small segments are read
    /// through the map; large ones with `pread`.
    pub fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        if let Some(map) = self.map.get() {
            let end = start
                .checked_add(len)
                .filter(|&e| e <= map.len())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "read past the end of the segment",
                    )
                })?;
            return Ok(map[start..end].to_vec());
        }
        // Read into spare capacity rather than a zeroed buffer: a zeroed allocation of this
        // size comes as fresh pages, which the kernel faults in and clears on every read (a
        // quarter of a large object's stream time, measured in benches/README.md); a plain one
        // reuses the allocator's pages.
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            let at = offset + buf.len() as u64;
            match rustix::io::pread(&self.file, rustix::buffer::spare_capacity(&mut buf), at) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "read past the end of the segment",
                    ))
                }
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The allocator may have given more room than asked, and the read may have filled it.
        buf.truncate(len);
        Ok(buf)
    }

    /// A small segment's mapped bytes, for scanning at start-up and at eviction.
    pub fn mapped(&self) -> &[u8] {
        self.map.get().map_or(&[], |m| &m[..])
    }

    /// Writes at `offset`. Blocks.
    pub fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    /// The same open file under a new id and name (a committed large entry takes a fresh id,
    /// so eviction and recovery order it by when it was finished, not begun).
    pub fn renamed(&self, dir: &Path, id: u64) -> io::Result<Segment> {
        let path = dir.join(file_name(id, self.kind));
        std::fs::rename(&self.path, &path)?;
        Ok(Segment {
            id,
            kind: self.kind,
            path,
            file: self.file.try_clone()?,
            map: OnceLock::new(),
            allocated: AtomicU64::new(self.allocated()),
            write_pos: AtomicU64::new(self.write_pos.load(Ordering::Relaxed)),
        })
    }
}
