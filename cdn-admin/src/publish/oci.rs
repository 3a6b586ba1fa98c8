//! Publishing an image into registry:2's storage layout, as a `docker push` to registry:2
//! would leave it: blobs by digest, each config and layer linked into the repository, each
//! manifest linked as a revision, and the tag's current and index links, written last so that
//! a reader never meets a tag whose content is not there yet.

use super::source::{Files, METADATA_LIMIT};
use super::store::Dest;
use cdn_registry::digest::Digest;
use cdn_registry::oci::{self, Layout};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::Path;

pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Publishes the image tagged `tag` in `source` (an OCI image layout, or a `docker save`
/// output, directory or tar) as `<name>:<tag>` under `root` in `dest`. Returns the digest
/// of the manifest the tag now names.
pub async fn publish(
    dest: &Dest,
    root: &str,
    source: &Path,
    name_tag: &str,
) -> Result<Digest, String> {
    let (name, tag) = parse_reference(name_tag)?;
    let files = Files::open(source)?;
    let plan = if files.size("index.json")?.is_some() {
        plan_oci_layout(&files, tag)?
    } else if files.size("manifest.json")?.is_some() {
        plan_docker_save(&files, tag)?
    } else {
        return Err(format!(
            "{}: neither an OCI image layout (index.json) nor a docker save (manifest.json)",
            source.display()
        ));
    };
    write(dest, &Layout::new(root), &files, &plan, name, tag).await?;
    Ok(plan.top)
}

/// `name:tag`, both as the registry API takes them.
pub fn parse_reference(name_tag: &str) -> Result<(&str, &str), String> {
    let (name, tag) = name_tag
        .rsplit_once(':')
        .ok_or_else(|| format!("{name_tag:?}: give the image as NAME:TAG"))?;
    if !oci::valid_name(name) {
        return Err(format!(
            "{name:?}: not a repository name (lower-case letters, digits, '.', '_', '-', '/')"
        ));
    }
    if !oci::valid_tag(tag) {
        return Err(format!(
            "{tag:?}: not a tag (letters, digits, '_', '.', '-')"
        ));
    }
    Ok((name, tag))
}

/// What to write: blobs still in the source, manifests already read (children before the
/// manifest that lists them), and the manifest the tag names.
struct Plan {
    blobs: Vec<BlobRef>,
    manifests: Vec<(Digest, Vec<u8>)>,
    top: Digest,
}

/// A config or layer: its digest and size, and the file holding it in the source.
struct BlobRef {
    digest: Digest,
    size: u64,
    path: String,
}

/// A descriptor (`mediaType`, `digest`, `size`) from a manifest or index.
struct Descriptor {
    digest: Digest,
    size: u64,
    media_type: Option<String>,
}

fn descriptor(value: &Value, whose: &str) -> Result<Descriptor, String> {
    let text = value
        .get("digest")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let digest =
        Digest::parse(text).map_err(|e| format!("{whose}: descriptor digest {text:?}: {e}"))?;
    let size = value
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{whose}: descriptor {digest} has no size"))?;
    let media_type = value
        .get("mediaType")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Descriptor {
        digest,
        size,
        media_type,
    })
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn parse_json(bytes: &[u8], whose: &str) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("{whose}: not JSON: {e}"))
}

/// The image `index.json` lists for `tag`: the entry whose ref name is the tag, or the only one.
fn plan_oci_layout(files: &Files, tag: &str) -> Result<Plan, String> {
    let whose = files.name("index.json");
    let index = parse_json(&files.read("index.json", METADATA_LIMIT)?, &whose)?;
    let entries = index
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{whose}: no `manifests` list"))?;
    let ref_name = |e: &Value| {
        e.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let chosen = match entries.iter().find(|e| ref_name(e).as_deref() == Some(tag)) {
        Some(entry) => entry,
        None if entries.len() == 1 => &entries[0],
        None => {
            let names: Vec<String> = entries.iter().filter_map(ref_name).collect();
            return Err(format!(
                "{whose}: no image tagged {tag:?} (tags: {names:?})"
            ));
        }
    };
    let top = descriptor(chosen, &whose)?;
    let mut plan = Plan {
        blobs: Vec::new(),
        manifests: Vec::new(),
        top: top.digest.clone(),
    };
    add_manifest(files, &top, &mut plan, 0)?;
    Ok(plan)
}

/// Adds the manifest `desc` names, and what it references, to `plan`.
fn add_manifest(
    files: &Files,
    desc: &Descriptor,
    plan: &mut Plan,
    depth: u8,
) -> Result<(), String> {
    if depth > 2 {
        return Err(format!(
            "{}: indexes nested too deep",
            blob_path(&desc.digest)
        ));
    }
    let path = blob_path(&desc.digest);
    let whose = files.name(&path);
    let body = files.read(&path, METADATA_LIMIT).map_err(|e| {
        format!(
            "{e} (manifest {} is referenced but not in the image)",
            desc.digest
        )
    })?;
    check(&body, desc, &whose)?;
    let value = parse_json(&body, &whose)?;
    let media_type = oci::media_type(&body).ok_or_else(|| format!("{whose}: not a manifest"))?;
    if media_type == oci::OCI_INDEX || media_type == oci::DOCKER_LIST {
        let children = value
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{whose}: index without `manifests`"))?;
        for child in children {
            add_manifest(files, &descriptor(child, &whose)?, plan, depth + 1)?;
        }
    } else if media_type == oci::OCI_MANIFEST || media_type == oci::DOCKER_MANIFEST {
        let config = value
            .get("config")
            .ok_or_else(|| format!("{whose}: manifest without `config`"))?;
        let layers = value
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{whose}: manifest without `layers`"))?;
        for blob in std::iter::once(config).chain(layers) {
            let blob = descriptor(blob, &whose)?;
            let path = blob_path(&blob.digest);
            if files.size(&path)?.is_none() {
                return Err(format!("{}: missing (named by {whose})", files.name(&path)));
            }
            plan.blobs.push(BlobRef {
                digest: blob.digest,
                size: blob.size,
                path,
            });
        }
    } else {
        return Err(format!("{whose}: media type {media_type} is not published"));
    }
    if desc.media_type.as_deref().is_some_and(|m| m != media_type) {
        return Err(format!(
            "{whose}: is a {media_type}, its descriptor says {:?}",
            desc.media_type
        ));
    }
    plan.manifests.push((desc.digest.clone(), body));
    Ok(())
}

/// Refuses `bytes` unless they are what `desc` says.
fn check(bytes: &[u8], desc: &Descriptor, whose: &str) -> Result<(), String> {
    let actual = Digest::of(bytes);
    if actual != desc.digest {
        return Err(format!(
            "{whose}: content hashes to {actual}, expected {}",
            desc.digest
        ));
    }
    if bytes.len() as u64 != desc.size {
        return Err(format!(
            "{whose}: {} bytes, expected {}",
            bytes.len(),
            desc.size
        ));
    }
    Ok(())
}

/// The legacy `docker save` format: `manifest.json` lists each image's config file, tags and
/// uncompressed layer tars; an OCI image manifest is made for the image tagged `tag`.
fn plan_docker_save(files: &Files, tag: &str) -> Result<Plan, String> {
    let whose = files.name("manifest.json");
    let list = parse_json(&files.read("manifest.json", METADATA_LIMIT)?, &whose)?;
    let images = list
        .as_array()
        .ok_or_else(|| format!("{whose}: not a list of images"))?;
    let tagged = |image: &&Value| {
        image
            .get("RepoTags")
            .and_then(Value::as_array)
            .is_some_and(|tags| {
                tags.iter()
                    .filter_map(Value::as_str)
                    .any(|t| t.rsplit_once(':').is_some_and(|(_, t)| t == tag))
            })
    };
    let image = match images.iter().find(tagged) {
        Some(image) => image,
        None if images.len() == 1 => &images[0],
        None => return Err(format!("{whose}: no image tagged {tag:?}")),
    };
    let config_path = image
        .get("Config")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{whose}: image without `Config`"))?;
    let config_bytes = files.read(config_path, METADATA_LIMIT)?;
    let config_digest = Digest::of(&config_bytes);
    if let Some(named) = named_digest(config_path) {
        if named != config_digest {
            return Err(format!(
                "{}: content hashes to {config_digest}, its name says {named}",
                files.name(config_path)
            ));
        }
    }
    let config = parse_json(&config_bytes, &files.name(config_path))?;
    let diff_ids = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{}: no rootfs.diff_ids", files.name(config_path)))?;
    let layer_paths = image
        .get("Layers")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{whose}: image without `Layers`"))?;
    if layer_paths.len() != diff_ids.len() {
        return Err(format!(
            "{whose}: {} layers, but the config lists {} diff_ids",
            layer_paths.len(),
            diff_ids.len()
        ));
    }
    let mut blobs = vec![BlobRef {
        digest: config_digest.clone(),
        size: config_bytes.len() as u64,
        path: config_path.to_owned(),
    }];
    let mut layers = Vec::new();
    for (path, diff_id) in layer_paths.iter().zip(diff_ids) {
        let path = path
            .as_str()
            .ok_or_else(|| format!("{whose}: a layer path is not a string"))?;
        let (digest, size) = hash_file(files, path)?;
        let expected = diff_id.as_str().unwrap_or_default();
        if digest.to_string() != expected {
            return Err(format!(
                "{}: content hashes to {digest}, the config's diff_id says {expected}",
                files.name(path)
            ));
        }
        layers
            .push(json!({"mediaType": OCI_LAYER_TAR, "digest": digest.to_string(), "size": size}));
        blobs.push(BlobRef {
            digest,
            size,
            path: path.to_owned(),
        });
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": layers,
    });
    let body = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let top = Digest::of(&body);
    Ok(Plan {
        blobs,
        manifests: vec![(top.clone(), body)],
        top,
    })
}

/// The digest a docker save file name states (`<hex>.json`, `blobs/sha256/<hex>`), if any.
fn named_digest(path: &str) -> Option<Digest> {
    let last = path.rsplit('/').next()?;
    let hex = last.strip_suffix(".json").unwrap_or(last);
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// The sha256 and size of a source file, read as a stream.
fn hash_file(files: &Files, path: &str) -> Result<(Digest, u64), String> {
    let mut reader = files.reader(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", files.name(path)))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let digest = Digest::parse(&format!("sha256:{hex}")).map_err(|e| e.to_string())?;
    Ok((digest, size))
}

/// Writes the plan: blobs with their layer links, manifests with their revision links
/// (children first), then the tag.
async fn write(
    dest: &Dest,
    layout: &Layout,
    files: &Files,
    plan: &Plan,
    name: &str,
    tag: &str,
) -> Result<(), String> {
    for blob in &plan.blobs {
        if dest.size(&layout.blob_data(&blob.digest)).await? != Some(blob.size) {
            let bytes = files.read(&blob.path, u64::MAX)?;
            let desc = Descriptor {
                digest: blob.digest.clone(),
                size: blob.size,
                media_type: None,
            };
            check(&bytes, &desc, &files.name(&blob.path))?;
            dest.put(&layout.blob_data(&blob.digest), bytes).await?;
        }
        put_link(dest, &layout.layer_link(name, &blob.digest), &blob.digest).await?;
    }
    for (digest, body) in &plan.manifests {
        dest.put(&layout.blob_data(digest), body.clone()).await?;
        put_link(dest, &layout.manifest_link(name, digest), digest).await?;
    }
    put_link(
        dest,
        &layout.tag_index_link(name, tag, &plan.top),
        &plan.top,
    )
    .await?;
    put_link(dest, &layout.tag_link(name, tag), &plan.top).await
}

/// A registry:2 link file: the digest, no newline.
async fn put_link(dest: &Dest, key: &str, digest: &Digest) -> Result<(), String> {
    dest.put(key, digest.to_string().into_bytes()).await
}
