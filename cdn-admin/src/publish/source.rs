//! The files of an image to publish, by their path inside it: an OCI image layout or a
//! `docker save` output, either as a directory or as a tar (optionally gzipped).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Read no metadata file (index.json, manifests, configs) larger than this: they are small,
/// and a huge one is a mistake, not an image.
pub const METADATA_LIMIT: u64 = 16 << 20;

/// An image's files.
pub struct Files {
    shown: String,
    kind: Kind,
}

enum Kind {
    Dir(PathBuf),
    Tar {
        file: PathBuf,
        /// Holds a gzipped tar's decompressed copy for as long as it is read.
        _unzipped: Option<tempfile::TempPath>,
        entries: HashMap<String, Entry>,
    },
}

/// Where a regular file's bytes sit in the (uncompressed) tar.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    size: u64,
}

impl Files {
    /// `path` is a directory or a tar file.
    pub fn open(path: &Path) -> Result<Files, String> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
        let kind = if meta.is_dir() {
            Kind::Dir(path.to_owned())
        } else {
            open_tar(path).map_err(|e| format!("{shown}: {e}"))?
        };
        Ok(Files { shown, kind })
    }

    /// How to name `rel` in a message.
    pub fn name(&self, rel: &str) -> String {
        format!("{}: {rel}", self.shown)
    }

    /// The size of `rel`, `None` when the image has no such file.
    pub fn size(&self, rel: &str) -> Result<Option<u64>, String> {
        match &self.kind {
            Kind::Dir(dir) => {
                let path = under(dir, rel).ok_or_else(|| self.bad_path(rel))?;
                match std::fs::metadata(&path) {
                    Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
                    Ok(_) => Err(format!("{}: not a file", self.name(rel))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(format!("{}: {e}", self.name(rel))),
                }
            }
            Kind::Tar { entries, .. } => Ok(entries.get(&normal(rel)).map(|e| e.size)),
        }
    }

    /// The bytes of `rel`, refusing more than `limit` of them.
    pub fn read(&self, rel: &str, limit: u64) -> Result<Vec<u8>, String> {
        let size = self
            .size(rel)?
            .ok_or_else(|| format!("{}: missing from the image", self.name(rel)))?;
        if size > limit {
            return Err(format!(
                "{}: {size} bytes, more than the {limit} expected",
                self.name(rel)
            ));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        self.reader(rel)?
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", self.name(rel)))?;
        if bytes.len() as u64 != size {
            return Err(format!("{}: truncated", self.name(rel)));
        }
        Ok(bytes)
    }

    /// A reader over `rel`'s bytes (for hashing a large layer without holding it).
    pub fn reader(&self, rel: &str) -> Result<Box<dyn Read + '_>, String> {
        let fail = |e: std::io::Error| format!("{}: {e}", self.name(rel));
        match &self.kind {
            Kind::Dir(dir) => {
                let path = under(dir, rel).ok_or_else(|| self.bad_path(rel))?;
                Ok(Box::new(File::open(path).map_err(fail)?))
            }
            Kind::Tar { file, entries, .. } => {
                let entry = entries
                    .get(&normal(rel))
                    .ok_or_else(|| format!("{}: missing from the image", self.name(rel)))?;
                let mut f = File::open(file).map_err(fail)?;
                f.seek(SeekFrom::Start(entry.offset)).map_err(fail)?;
                Ok(Box::new(f.take(entry.size)))
            }
        }
    }

    fn bad_path(&self, rel: &str) -> String {
        format!("{}: not a path inside the image", self.name(rel))
    }
}

/// `rel` under `dir`, unless it climbs out.
fn under(dir: &Path, rel: &str) -> Option<PathBuf> {
    let rel = normal(rel);
    let climbs = rel.is_empty() || rel.split('/').any(|c| c == ".." || c.is_empty());
    (!climbs).then(|| dir.join(rel))
}

/// A path inside an archive without `./` segments or a leading `/`.
fn normal(rel: &str) -> String {
    rel.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn open_tar(path: &Path) -> Result<Kind, String> {
    let mut magic = [0u8; 2];
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let gzipped = f.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let (file, unzipped) = if gzipped {
        let temp = gunzip_to_temp(path)?;
        (temp.to_path_buf(), Some(temp))
    } else {
        (path.to_owned(), None)
    };
    let entries = index_tar(&file)?;
    Ok(Kind::Tar {
        file,
        _unzipped: unzipped,
        entries,
    })
}

fn gunzip_to_temp(path: &Path) -> Result<tempfile::TempPath, String> {
    let input = File::open(path).map_err(|e| e.to_string())?;
    let mut temp = tempfile::NamedTempFile::new().map_err(|e| format!("temporary file: {e}"))?;
    std::io::copy(&mut flate2::read::GzDecoder::new(input), &mut temp)
        .map_err(|e| format!("not a readable gzip file: {e}"))?;
    Ok(temp.into_temp_path())
}

/// Every regular file of the tar with where its bytes are; links (docker save links repeated
/// layers) resolve to the file they name.
fn index_tar(path: &Path) -> Result<HashMap<String, Entry>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(file);
    let mut entries = HashMap::new();
    let mut links = Vec::new();
    for entry in archive
        .entries()
        .map_err(|e| format!("not a tar file: {e}"))?
    {
        let entry = entry.map_err(|e| format!("not a readable tar file: {e}"))?;
        let name = normal(&entry.path().map_err(|e| e.to_string())?.to_string_lossy());
        let kind = entry.header().entry_type();
        if kind.is_file() {
            let at = Entry {
                offset: entry.raw_file_position(),
                size: entry.size(),
            };
            entries.insert(name, at);
        } else if kind.is_symlink() || kind.is_hard_link() {
            if let Some(target) = entry.link_name().ok().flatten() {
                let target = target.to_string_lossy().into_owned();
                let target = if kind.is_symlink() {
                    beside(&name, &target)
                } else {
                    normal(&target)
                };
                links.push((name, target));
            }
        }
    }
    for (name, target) in links {
        if let Some(at) = entries.get(&target).copied() {
            entries.insert(name, at);
        }
    }
    Ok(entries)
}

/// A symlink's target, resolved from the folder the link is in.
fn beside(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}
