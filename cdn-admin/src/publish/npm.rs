//! Publishing `npm pack` tarballs into Verdaccio's storage layout: the tarball beside the
//! package's packument, and the packument updated with the version (written after the
//! tarball, so a reader never meets a version whose tarball is not there yet).

use super::store::Dest;
use cdn_registry::digest::npm_integrity;
use cdn_registry::npm::{self, Added, Dist, Layout};
use serde_json::Value;
use sha1::{Digest as _, Sha1};
use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

/// A package.json larger than this is refused: no real one is.
const PACKAGE_JSON_LIMIT: u64 = 8 << 20;

/// What one tarball became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub name: String,
    pub version: String,
    /// The tarball's file name beside the packument.
    pub file: String,
    pub added: Added,
}

/// Publishes the tarball at `tarball` under `root` in `dest`, pointing `dist-tags.<tag>` at it.
pub async fn publish(
    dest: &Dest,
    root: &str,
    tarball: &Path,
    tag: &str,
) -> Result<Published, String> {
    let shown = tarball.display().to_string();
    let bytes = std::fs::read(tarball).map_err(|e| format!("{shown}: {e}"))?;
    let package_json = package_json(&bytes).map_err(|e| format!("{shown}: {e}"))?;
    let name = package_json
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let version = package_json
        .get("version")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let dist = Dist {
        file: npm::tarball_file(&name, &version),
        integrity: npm_integrity(&bytes),
        shasum: sha1_hex(&bytes),
    };
    let layout = Layout::new(root);
    let key = layout.packument(&name);
    let stored = match dest.get(&key).await? {
        Some(body) => Some(
            serde_json::from_slice::<Value>(&body).map_err(|e| format!("{key}: not JSON: {e}"))?,
        ),
        None => None,
    };
    let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let (packument, added) = npm::add_version(stored.clone(), &package_json, &dist, tag, &now)
        .map_err(|e| format!("{shown}: {e}"))?;
    if added == Added::New {
        dest.put(&layout.tarball(&name, &dist.file), bytes).await?;
    }
    if stored.as_ref() != Some(&packument) {
        let body = serde_json::to_vec_pretty(&packument).map_err(|e| e.to_string())?;
        dest.put(&key, body).await?;
    }
    Ok(Published {
        name,
        version,
        file: dist.file,
        added,
    })
}

/// The `package.json` at the top folder of a gzipped package tarball (`package/` for `npm
/// pack`; some tools name the folder otherwise, npm accepts any single one).
pub fn package_json(tgz: &[u8]) -> Result<Value, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let entries = archive
        .entries()
        .map_err(|e| format!("not a gzipped tar: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("not a readable gzipped tar: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        if parts.len() != 2 || parts[1] != "package.json" || !entry.header().entry_type().is_file()
        {
            continue;
        }
        if entry.size() > PACKAGE_JSON_LIMIT {
            return Err(format!(
                "{path}: {} bytes, too large for a package.json",
                entry.size()
            ));
        }
        let mut text = Vec::new();
        entry
            .take(PACKAGE_JSON_LIMIT)
            .read_to_end(&mut text)
            .map_err(|e| format!("{path}: {e}"))?;
        let value: Value =
            serde_json::from_slice(&text).map_err(|e| format!("{path}: not JSON: {e}"))?;
        if !value.is_object() {
            return Err(format!("{path}: not a JSON object"));
        }
        return Ok(value);
    }
    Err("no package/package.json inside".to_owned())
}

/// `dist.shasum`: the tarball's sha1 in hex (older npm clients check it).
fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
