//! Publishing into a directory and reading back exactly what registry:2 and Verdaccio would
//! find there.

use super::{block_on, npm, oci, Dest};
use cdn_registry::digest::{npm_integrity, Digest, Expected};
use cdn_registry::oci::{Layout, OCI_INDEX, OCI_MANIFEST};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

/// Writes `bytes` as a blob of the OCI layout at `dir`; returns its descriptor.
fn blob(dir: &Path, media_type: &str, bytes: &[u8]) -> Value {
    let digest = Digest::of(bytes);
    let path = dir.join("blobs/sha256").join(digest.hex());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()})
}

/// An image (config + two layers) in the layout at `dir`; returns the manifest's descriptor
/// and the config and layer digests.
fn image(dir: &Path, arch: &str) -> (Value, Vec<Digest>) {
    let l1 = blob(
        dir,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        format!("layer one {arch}").as_bytes(),
    );
    let l2 = blob(
        dir,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        b"layer two, shared",
    );
    let config =
        json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}});
    let c = blob(dir, oci::OCI_CONFIG, config.to_string().as_bytes());
    let manifest =
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": c, "layers": [l1, l2]});
    let mut m = blob(dir, OCI_MANIFEST, manifest.to_string().as_bytes());
    m["platform"] = json!({"architecture": arch, "os": "linux"});
    let digests = [&c, &l1, &l2].iter().map(|d| digest(d)).collect();
    (m, digests)
}

fn digest(desc: &Value) -> Digest {
    Digest::parse(desc["digest"].as_str().unwrap()).unwrap()
}

fn write_index(dir: &Path, entries: &[(Value, &str)]) {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(desc, tag)| {
            let mut d = desc.clone();
            d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
            d
        })
        .collect();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

/// Every file under `root`, relative to it.
fn files_under(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out
}

/// What registry:2 holds after pushing `manifests` (and their `blobs`) to `name:tag`.
fn expect_registry(
    dest: &Path,
    root: &str,
    name: &str,
    tag: &str,
    top: &Digest,
    manifests: &[Digest],
    blobs: &[Digest],
) {
    let layout = Layout::new(root);
    let mut expected = BTreeSet::new();
    let mut link = |key: String, d: &Digest| {
        assert_eq!(
            std::fs::read_to_string(dest.join(&key)).unwrap(),
            d.to_string(),
            "{key}"
        );
        expected.insert(key);
    };
    for d in blobs {
        link(layout.layer_link(name, d), d);
    }
    for d in manifests {
        link(layout.manifest_link(name, d), d);
    }
    link(layout.tag_link(name, tag), top);
    link(layout.tag_index_link(name, tag, top), top);
    for d in blobs.iter().chain(manifests) {
        let key = layout.blob_data(d);
        assert_eq!(
            &Digest::of(&std::fs::read(dest.join(&key)).unwrap()),
            d,
            "{key}"
        );
        expected.insert(key);
    }
    assert_eq!(files_under(dest), expected);
}

fn publish_oci(dest: &Path, root: &str, source: &Path, reference: &str) -> Result<Digest, String> {
    let store = Dest::directory(dest)?;
    block_on(oci::publish(&store, root, source, reference))
}

#[test]
fn an_oci_layout_is_published_by_tag() {
    let src = tempfile::tempdir().unwrap();
    let (amd, amd_blobs) = image(src.path(), "amd64");
    let (arm, _) = image(src.path(), "arm64");
    write_index(src.path(), &[(amd.clone(), "1.0"), (arm, "2.0")]);
    let dest = tempfile::tempdir().unwrap();
    let top = publish_oci(dest.path(), "reg", src.path(), "acme/app:1.0").unwrap();
    assert_eq!(top, digest(&amd));
    expect_registry(
        dest.path(),
        "reg",
        "acme/app",
        "1.0",
        &top,
        std::slice::from_ref(&top),
        &amd_blobs,
    );

    let err = publish_oci(dest.path(), "reg", src.path(), "acme/app:3.0").unwrap_err();
    assert!(err.contains("no image tagged \"3.0\""), "{err}");
    for bad in ["acme/app", "Acme/app:1", "acme/app:-x"] {
        assert!(
            publish_oci(dest.path(), "", src.path(), bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn a_multi_arch_index_is_published_with_every_child() {
    let src = tempfile::tempdir().unwrap();
    let (amd, amd_blobs) = image(src.path(), "amd64");
    let (arm, arm_blobs) = image(src.path(), "arm64");
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd, arm]});
    let idx = blob(src.path(), OCI_INDEX, index.to_string().as_bytes());
    write_index(src.path(), &[(idx.clone(), "latest")]);
    let dest = tempfile::tempdir().unwrap();
    let top = publish_oci(dest.path(), "", src.path(), "multi:latest").unwrap();
    assert_eq!(top, digest(&idx));
    let mut blobs: Vec<Digest> = amd_blobs.into_iter().chain(arm_blobs).collect();
    blobs.dedup();
    expect_registry(
        dest.path(),
        "",
        "multi",
        "latest",
        &top,
        &[digest(&amd), digest(&arm), top.clone()],
        &blobs,
    );
}

#[test]
fn corrupt_or_missing_blobs_are_refused() {
    let src = tempfile::tempdir().unwrap();
    let (m, blobs) = image(src.path(), "amd64");
    write_index(src.path(), &[(m, "1")]);
    let layer = src.path().join("blobs/sha256").join(blobs[1].hex());
    std::fs::write(&layer, b"layer one amd6X").unwrap();
    let dest = tempfile::tempdir().unwrap();
    let err = publish_oci(dest.path(), "", src.path(), "app:1").unwrap_err();
    assert!(
        err.contains(blobs[1].hex()) && err.contains("hashes to"),
        "{err}"
    );
    assert!(!dest
        .path()
        .join(Layout::new("").tag_link("app", "1"))
        .exists());
    std::fs::remove_file(&layer).unwrap();
    let err = publish_oci(dest.path(), "", src.path(), "app:1").unwrap_err();
    assert!(err.contains("missing"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = publish_oci(dest.path(), "", empty.path(), "app:1").unwrap_err();
    assert!(err.contains("neither an OCI image layout"), "{err}");
}

/// A tar of `(path, bytes)` files and `(path, target)` symlinks.
fn tar_of(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, *bytes).unwrap();
    }
    for (path, target) in links {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder.append_link(&mut header, path, target).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn a_legacy_docker_save_becomes_an_oci_manifest() {
    let layer1 = tar_of(&[("etc/hostname", b"box\n")], &[]);
    let layer2 = tar_of(&[("app/run", b"#!/bin/sh\n")], &[]);
    let (d1, d2) = (Digest::of(&layer1), Digest::of(&layer2));
    let config = json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [d1.to_string(), d2.to_string(), d1.to_string()]}})
    .to_string();
    let dc = Digest::of(config.as_bytes());
    let config_file = format!("{}.json", dc.hex());
    let manifest = json!([{"Config": config_file, "RepoTags": ["acme/app:7", "other:x"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"]}])
    .to_string();
    let save = tar_of(
        &[
            ("manifest.json", manifest.as_bytes()),
            (&config_file, config.as_bytes()),
            ("aaa/layer.tar", &layer1),
            ("bbb/layer.tar", &layer2),
        ],
        &[("ccc/layer.tar", "../aaa/layer.tar")],
    );
    let src = tempfile::tempdir().unwrap();
    let save_path = src.path().join("save.tar");
    std::fs::write(&save_path, &save).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let top = publish_oci(dest.path(), "", &save_path, "acme/app:7").unwrap();
    let layout = Layout::new("");
    let body = std::fs::read(dest.path().join(layout.blob_data(&top))).unwrap();
    let m: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(
        m["config"],
        json!({"mediaType": oci::OCI_CONFIG, "digest": dc.to_string(), "size": config.len()})
    );
    assert_eq!(
        m["layers"][1],
        json!({"mediaType": oci::OCI_LAYER_TAR, "digest": d2.to_string(), "size": layer2.len()})
    );
    assert_eq!(m["layers"].as_array().unwrap().len(), 3);
    expect_registry(
        dest.path(),
        "",
        "acme/app",
        "7",
        &top,
        std::slice::from_ref(&top),
        &[dc, d1.clone(), d2],
    );

    // Gzipped, it is the same image.
    let gz_path = src.path().join("save.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &save).unwrap();
    std::fs::write(&gz_path, gz.finish().unwrap()).unwrap();
    let again = tempfile::tempdir().unwrap();
    assert_eq!(
        publish_oci(again.path(), "", &gz_path, "acme/app:7").unwrap(),
        top
    );

    // A layer that is not what the config's diff_ids say is refused.
    let bad = tar_of(
        &[
            ("manifest.json", manifest.as_bytes()),
            (&config_file, config.as_bytes()),
            ("aaa/layer.tar", &layer2),
            ("bbb/layer.tar", &layer2),
        ],
        &[("ccc/layer.tar", "../aaa/layer.tar")],
    );
    std::fs::write(&save_path, bad).unwrap();
    let err = publish_oci(dest.path(), "", &save_path, "acme/app:7").unwrap_err();
    assert!(
        err.contains("aaa/layer.tar") && err.contains("diff_id"),
        "{err}"
    );
}

/// An `npm pack`-like tarball of `package.json` plus one file.
fn npm_tgz(package_json: &Value, extra: &[u8]) -> Vec<u8> {
    let tar = tar_of(
        &[
            ("package/package.json", package_json.to_string().as_bytes()),
            ("package/index.js", extra),
        ],
        &[],
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

#[test]
fn npm_versions_are_published_and_immutable() {
    let work = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let store = Dest::directory(dest.path()).unwrap();
    let publish = |bytes: &[u8], file: &str, tag: &str| {
        let path = work.path().join(file);
        std::fs::write(&path, bytes).unwrap();
        block_on(npm::publish(&store, "storage", &path, tag))
    };
    let v1 = npm_tgz(
        &json!({"name": "@acme/util", "version": "1.0.0", "dependencies": {"x": "^1"}}),
        b"one",
    );
    let v2 = npm_tgz(&json!({"name": "@acme/util", "version": "1.1.0"}), b"two");
    let one = publish(&v1, "a.tgz", "latest").unwrap();
    assert_eq!(one.added, cdn_registry::npm::Added::New);
    assert_eq!(one.file, "util-1.0.0.tgz");
    publish(&v2, "b.tgz", "next").unwrap();

    let layout = cdn_registry::npm::Layout::new("storage");
    let packument: Value = serde_json::from_slice(
        &std::fs::read(dest.path().join(layout.packument("@acme/util"))).unwrap(),
    )
    .unwrap();
    assert_eq!(packument["name"], "@acme/util");
    assert_eq!(
        packument["dist-tags"],
        json!({"latest": "1.0.0", "next": "1.1.0"})
    );
    for (version, bytes) in [("1.0.0", &v1), ("1.1.0", &v2)] {
        let doc = &packument["versions"][version];
        let file = format!("util-{version}.tgz");
        assert_eq!(
            &std::fs::read(dest.path().join(layout.tarball("@acme/util", &file))).unwrap(),
            bytes
        );
        assert_eq!(doc["dist"]["integrity"], npm_integrity(bytes));
        assert!(
            Expected::from_integrity(doc["dist"]["integrity"].as_str().unwrap())
                .unwrap()
                .matches(bytes)
        );
        let sha1: String = <sha1::Sha1 as sha1::Digest>::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(doc["dist"]["shasum"], sha1);
        assert_eq!(doc["dist"]["tarball"], format!("@acme/util/-/{file}"));
        assert!(packument["time"][version].is_string());
    }
    assert_eq!(packument["versions"]["1.0.0"]["dependencies"]["x"], "^1");

    let same = publish(&v1, "a.tgz", "latest").unwrap();
    assert_eq!(same.added, cdn_registry::npm::Added::Unchanged);
    let other = npm_tgz(
        &json!({"name": "@acme/util", "version": "1.0.0", "dependencies": {"x": "^1"}}),
        b"ONE",
    );
    let err = publish(&other, "c.tgz", "latest").unwrap_err();
    assert!(err.contains("c.tgz") && err.contains("immutable"), "{err}");
    let err = publish(b"not gzip", "d.tgz", "latest").unwrap_err();
    assert!(err.contains("d.tgz"), "{err}");
}
