//! Package fixtures for end-to-end tests driven by real clients (`skopeo`, `npm`): small but
//! valid OCI image layouts (one image, or a linux/amd64 + linux/arm64 index) with
//! deterministic content per seed, real `npm pack` tarballs, and publishing them into a
//! directory with the very code `cdn-admin publish` runs.
//!
//! A directory destination stands for a bucket: to publish under a registry:2
//! `rootdirectory` or a Verdaccio `storage` prefix, pass `bucket_dir.join(prefix)`.

use cdn_admin::publish::{self, npm::Published, Dest};
use cdn_registry::digest::Digest;
use cdn_registry::oci::{OCI_INDEX, OCI_MANIFEST};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A blob of a layout: what a registry names it by, and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
}

/// One image written by [`oci_image`] (or one platform of [`oci_index`]).
#[derive(Debug, Clone)]
pub struct OciImage {
    /// The ref name annotation in `index.json` (empty for an index's platform images).
    pub tag: String,
    pub manifest: Blob,
    pub config: Blob,
    /// The two gzipped tar layers, in manifest order.
    pub layers: Vec<Blob>,
    /// `amd64` or `arm64`; the OS is `linux`.
    pub architecture: String,
}

impl OciImage {
    /// Config and layers: what a pull fetches besides the manifest.
    pub fn blobs(&self) -> Vec<&Blob> {
        std::iter::once(&self.config).chain(&self.layers).collect()
    }
}

/// A multi-arch image written by [`oci_index`].
#[derive(Debug, Clone)]
pub struct OciIndex {
    pub tag: String,
    /// The image index the tag names.
    pub index: Blob,
    /// linux/amd64, then linux/arm64.
    pub images: Vec<OciImage>,
}

/// Writes an OCI image layout at `dir` holding one linux/amd64 image tagged `latest`.
pub fn oci_image(dir: &Path, seed: u64) -> OciImage {
    oci_image_tagged(dir, seed, "latest")
}

/// Writes an OCI image layout at `dir` holding one linux/amd64 image tagged `tag`; the same
/// seed gives the same bytes, so the same digests.
pub fn oci_image_tagged(dir: &Path, seed: u64, tag: &str) -> OciImage {
    let mut image = write_image(dir, seed, "amd64");
    image.tag = tag.to_owned();
    write_layout(dir, &[(OCI_MANIFEST, &image.manifest, tag)]);
    image
}

/// Writes an OCI image layout at `dir` holding an image index tagged `latest` over a
/// linux/amd64 and a linux/arm64 image (different layers, from `seed`).
pub fn oci_index(dir: &Path, seed: u64) -> OciIndex {
    oci_index_tagged(dir, seed, "latest")
}

pub fn oci_index_tagged(dir: &Path, seed: u64, tag: &str) -> OciIndex {
    let images = vec![
        write_image(dir, seed, "amd64"),
        write_image(dir, seed.wrapping_add(0x9e37_79b9), "arm64"),
    ];
    let manifests: Vec<Value> = images
        .iter()
        .map(|image| {
            json!({
                "mediaType": OCI_MANIFEST,
                "digest": image.manifest.digest.to_string(),
                "size": image.manifest.size,
                "platform": {"architecture": image.architecture, "os": "linux"},
            })
        })
        .collect();
    let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let index = write_blob(dir, body.to_string().as_bytes());
    write_layout(dir, &[(OCI_INDEX, &index, tag)]);
    OciIndex {
        tag: tag.to_owned(),
        index,
        images,
    }
}

/// Writes an image's layers, config and manifest as blobs of the layout at `dir`.
fn write_image(dir: &Path, seed: u64, architecture: &str) -> OciImage {
    let tars = [
        layer_tar(&[("etc/fixture-seed", format!("{seed}\n").into_bytes())]),
        layer_tar(&[
            (
                "data/random.bin",
                crate::pattern(3000 + (seed % 1000) as usize, seed),
            ),
            ("data/arch", architecture.as_bytes().to_vec()),
        ]),
    ];
    let diff_ids: Vec<String> = tars.iter().map(|t| Digest::of(t).to_string()).collect();
    let layers: Vec<Blob> = tars.iter().map(|t| write_blob(dir, &gzip(t))).collect();
    let config = json!({
        "architecture": architecture,
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": [format!("FIXTURE_SEED={seed}")]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "testkit layer 1"}, {"created_by": "testkit layer 2"}],
    });
    let config = write_blob(dir, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(CONFIG, &config),
        "layers": layers.iter().map(|l| descriptor(LAYER_GZIP, l)).collect::<Vec<_>>(),
    });
    let manifest = write_blob(dir, manifest.to_string().as_bytes());
    OciImage {
        tag: String::new(),
        manifest,
        config,
        layers,
        architecture: architecture.to_owned(),
    }
}

fn descriptor(media_type: &str, blob: &Blob) -> Value {
    json!({"mediaType": media_type, "digest": blob.digest.to_string(), "size": blob.size})
}

/// `oci-layout` and `index.json` listing `(media type, blob, ref name)` entries.
fn write_layout(dir: &Path, entries: &[(&str, &Blob, &str)]) {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(media_type, blob, tag)| {
            let mut d = descriptor(media_type, blob);
            d["annotations"] = json!({ REF_NAME: tag });
            d
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    write(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    write(&dir.join("index.json"), index.to_string().as_bytes());
}

fn write_blob(dir: &Path, bytes: &[u8]) -> Blob {
    let digest = Digest::of(bytes);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("make the layout's blobs folder");
    write(&blobs.join(digest.hex()), bytes);
    Blob {
        digest,
        size: bytes.len() as u64,
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// A tar of regular files with fixed metadata, so equal content gives equal bytes.
fn layer_tar(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_767_225_600);
        builder
            .append_data(&mut header, path, bytes.as_slice())
            .expect("tar in memory");
    }
    builder.into_inner().expect("tar in memory")
}

/// Gzip with no file name and mtime 0 (flate2's default header): deterministic.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).expect("gzip in memory");
    gz.finish().expect("gzip in memory")
}

/// Publishes the image tagged by `name_tag`'s tag in the layout (or docker save) at
/// `layout_dir` into registry:2's layout in `dest_root`, as `cdn-admin publish oci` does.
/// Returns the digest the tag names.
pub fn publish_oci(dest_root: &Path, layout_dir: &Path, name_tag: &str) -> Digest {
    let dest = Dest::directory(dest_root).unwrap_or_else(|e| panic!("{e}"));
    publish::block_on(publish::oci::publish(&dest, "", layout_dir, name_tag))
        .unwrap_or_else(|e| panic!("publish {name_tag}: {e}"))
}

/// Publishes `npm pack` tarballs into Verdaccio's layout in `dest_root` with dist-tag
/// `latest`, as `cdn-admin publish npm` does.
pub fn publish_npm(dest_root: &Path, tarballs: &[PathBuf]) -> Vec<Published> {
    let dest = Dest::directory(dest_root).unwrap_or_else(|e| panic!("{e}"));
    tarballs
        .iter()
        .map(|tarball| {
            publish::block_on(publish::npm::publish(&dest, "", tarball, "latest"))
                .unwrap_or_else(|e| panic!("publish {}: {e}", tarball.display()))
        })
        .collect()
}

/// Writes a package (`package.json` with `dependencies`, and an `index.js`) under `work` and
/// packs it with the real `npm pack`, offline, with a cache inside `work`. Returns the
/// tarball's path (in `work`).
pub fn npm_pack(work: &Path, name: &str, version: &str, dependencies: &[(&str, &str)]) -> PathBuf {
    let folder = work.join(format!("src-{}-{version}", name.replace(['@', '/'], "_")));
    std::fs::create_dir_all(&folder).expect("make the package folder");
    let deps: serde_json::Map<String, Value> = dependencies
        .iter()
        .map(|(n, range)| ((*n).to_owned(), Value::from(*range)))
        .collect();
    let package = json!({
        "name": name,
        "version": version,
        "description": "testkit fixture",
        "main": "index.js",
        "license": "MIT",
        "dependencies": deps,
    });
    write(&folder.join("package.json"), package.to_string().as_bytes());
    let index = format!("module.exports = {{ name: {name:?}, version: {version:?} }};\n");
    write(&folder.join("index.js"), index.as_bytes());
    let out = Command::new("npm")
        .arg("pack")
        .arg("--json")
        .arg("--pack-destination")
        .arg(work)
        .arg("--cache")
        .arg(work.join(".npm-cache"))
        .args([
            "--offline",
            "--ignore-scripts",
            "--no-update-notifier",
            "--no-audit",
            "--no-fund",
        ])
        .current_dir(&folder)
        .output()
        .expect("run npm (is it installed?)");
    assert!(
        out.status.success(),
        "npm pack {name}@{version}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "npm pack --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let file = report[0]["filename"]
        .as_str()
        .unwrap_or_else(|| panic!("npm pack --json named no file: {report}"));
    work.join(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdn_registry::oci::Layout;

    fn link(root: &Path, key: &str) -> String {
        std::fs::read_to_string(root.join(key)).unwrap_or_else(|e| panic!("{key}: {e}"))
    }

    fn blob_hashes_to(root: &Path, blob: &Blob) {
        let key = Layout::new("").blob_data(&blob.digest);
        let bytes = std::fs::read(root.join(&key)).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(Digest::of(&bytes), blob.digest, "{key}");
        assert_eq!(bytes.len() as u64, blob.size, "{key}");
    }

    #[test]
    fn an_image_is_deterministic_and_publishes() {
        let (a, b, dest) = (tempdir(), tempdir(), tempdir());
        let image = oci_image_tagged(a.path(), 7, "v1");
        assert_eq!(oci_image_tagged(b.path(), 7, "v1").manifest, image.manifest);
        assert_ne!(oci_image(b.path(), 8).manifest, image.manifest);
        let top = publish_oci(dest.path(), a.path(), "fixtures/app:v1");
        assert_eq!(top, image.manifest.digest);
        let layout = Layout::new("");
        assert_eq!(
            link(dest.path(), &layout.tag_link("fixtures/app", "v1")),
            top.to_string()
        );
        blob_hashes_to(dest.path(), &image.manifest);
        for blob in image.blobs() {
            blob_hashes_to(dest.path(), blob);
        }
        skopeo_accepts(a.path(), "v1");
    }

    #[test]
    fn an_index_publishes_with_both_platforms() {
        let (src, dest) = (tempdir(), tempdir());
        let index = oci_index(src.path(), 3);
        assert_eq!(index.images.len(), 2);
        assert_ne!(index.images[0].layers, index.images[1].layers);
        let top = publish_oci(dest.path(), src.path(), "multi:latest");
        assert_eq!(top, index.index.digest);
        blob_hashes_to(dest.path(), &index.index);
        for image in &index.images {
            blob_hashes_to(dest.path(), &image.manifest);
            image
                .blobs()
                .into_iter()
                .for_each(|b| blob_hashes_to(dest.path(), b));
        }
        skopeo_accepts(src.path(), "latest");
    }

    #[test]
    fn npm_pack_tarballs_publish() {
        let (work, dest) = (tempdir(), tempdir());
        let dep = npm_pack(work.path(), "fixture-dep", "1.0.0", &[]);
        let app = npm_pack(
            work.path(),
            "@fixtures/app",
            "2.1.0",
            &[("fixture-dep", "^1.0.0")],
        );
        assert_eq!(app.file_name().unwrap(), "fixtures-app-2.1.0.tgz");
        let published = publish_npm(dest.path(), &[dep, app.clone()]);
        assert_eq!(published[1].file, "app-2.1.0.tgz");
        let layout = cdn_registry::npm::Layout::new("");
        let packument: Value = serde_json::from_slice(
            &std::fs::read(dest.path().join(layout.packument("@fixtures/app"))).unwrap(),
        )
        .unwrap();
        let doc = &packument["versions"]["2.1.0"];
        assert_eq!(doc["dependencies"]["fixture-dep"], "^1.0.0");
        let bytes = std::fs::read(&app).unwrap();
        let stored = std::fs::read(
            dest.path()
                .join(layout.tarball("@fixtures/app", "app-2.1.0.tgz")),
        )
        .unwrap();
        assert_eq!(stored, bytes);
        let integrity = doc["dist"]["integrity"].as_str().unwrap();
        assert!(cdn_registry::digest::Expected::from_integrity(integrity)
            .unwrap()
            .matches(&bytes));
    }

    /// The S3 path of the CLI (path-style, plain HTTP, a key prefix) against a real
    /// signature-checking S3 server.
    #[test]
    fn publishing_into_a_bucket() {
        use cdn_admin::publish::{S3Credentials, S3Options};
        let (src, work) = (tempdir(), tempdir());
        let image = oci_image(src.path(), 11);
        let tarball = npm_pack(work.path(), "@fixtures/s3", "0.1.0", &[]);
        let server = crate::S3Server::start("packages");
        let s3 = S3Options {
            endpoint: Some(server.endpoint()),
            credentials: Some(S3Credentials {
                access_key_id: crate::s3::ACCESS_KEY.to_owned(),
                secret_access_key: crate::s3::SECRET_KEY.to_owned(),
            }),
            ..S3Options::default()
        };
        let dest = Dest::open("s3://packages/pre", &s3).unwrap();
        let top = publish::block_on(publish::oci::publish(
            &dest,
            "reg",
            src.path(),
            "app:latest",
        ))
        .unwrap();
        assert_eq!(top, image.manifest.digest);
        let tag = Layout::new("reg").tag_link("app", "latest");
        assert_eq!(
            std::fs::read_to_string(server.object_path(&format!("pre/{tag}"))).unwrap(),
            top.to_string()
        );
        publish::block_on(publish::npm::publish(&dest, "storage", &tarball, "latest")).unwrap();
        let packument = cdn_registry::npm::Layout::new("storage").packument("@fixtures/s3");
        assert!(server.object_path(&format!("pre/{packument}")).is_file());

        let wrong = S3Options {
            credentials: Some(S3Credentials {
                access_key_id: crate::s3::ACCESS_KEY.to_owned(),
                secret_access_key: "wrong".to_owned(),
            }),
            ..s3
        };
        let dest = Dest::open("s3://packages", &wrong).unwrap();
        let err = publish::block_on(publish::oci::publish(&dest, "", src.path(), "app:latest"))
            .unwrap_err();
        assert!(err.contains("s3://packages"), "{err}");
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temporary folder")
    }

    /// `skopeo inspect` reads the layout, when skopeo is installed (it is not everywhere).
    fn skopeo_accepts(dir: &Path, tag: &str) {
        let found = Command::new("sh")
            .args(["-c", "command -v skopeo"])
            .output();
        if !found.is_ok_and(|o| o.status.success()) {
            println!("skopeo is not installed: skipping its check of the layout");
            return;
        }
        // The manifest as stored, and skopeo's reading of the image.
        for raw in [true, false] {
            let out = Command::new("skopeo")
                .arg("inspect")
                .args(raw.then_some("--raw"))
                .arg(format!("oci:{}:{tag}", dir.display()))
                .output()
                .expect("run skopeo");
            assert!(
                out.status.success(),
                "skopeo inspect: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
