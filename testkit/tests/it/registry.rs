//! Docker/OCI pulls by the real `skopeo` through the edge, from registry:2's layout in a real
//! S3-compatible server: cold and then warm, every digest checked; a multi-arch index; the
//! registry's errors for an unknown tag, an unknown blob, another repository's blob and a
//! corrupted blob.

use cdn_registry::digest::Digest;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use testkit::packages::{oci_image, oci_index, publish_oci};
use testkit::{answered, request, sha256_hex, Backend, S3Server, Stack, StackOptions};

struct Registry {
    stack: Stack,
    s3: S3Server,
    /// `user:token` for `--creds`: a token scoped to the `acme/` repositories.
    creds: String,
}

fn registry() -> Registry {
    let s3 = S3Server::start("packages");
    let stack = Stack::start(StackOptions::new(Backend::s3(&s3)));
    let token = stack.mint("k1", "ci", "oci:acme/*", 600);
    Registry {
        stack,
        s3,
        creds: format!("ci:{token}"),
    }
}

impl Registry {
    /// registry:2's root in the bucket (the stack's `/v2/` route reads `v2`, which no other
    /// route's paths reach: `/v2/…` is its own).
    fn root(&self) -> std::path::PathBuf {
        self.s3.object_path("v2")
    }

    fn image(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.stack.edge)
    }

    fn skopeo(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("skopeo");
        cmd.arg("--insecure-policy").args(args);
        cmd.output()
            .expect("skopeo runs (deploy/local/setup.sh --tests installs it)")
    }

    fn copy(&self, name: &str, dir: &Path, all: bool) -> std::process::Output {
        let dest = format!("oci:{}:pulled", dir.display());
        let src = self.image(name);
        let mut args = vec!["copy", "--src-tls-verify=false", "--src-creds", &self.creds];
        if all {
            args.push("--all");
        }
        args.extend([src.as_str(), dest.as_str()]);
        self.skopeo(&args)
    }

    /// The token alone, as `Authorization: Bearer` carries it.
    fn token(&self) -> &str {
        self.creds.split_once(':').unwrap().1
    }

    fn get(&self, path: &str) -> testkit::Reply {
        let auth = format!("Bearer {}", self.token());
        request("GET", &self.stack.url(path), &[("authorization", &auth)])
    }
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "skopeo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every blob in an OCI layout hashes to its name; returns the digest `index.json` names.
fn verified_layout(dir: &Path) -> (Digest, usize) {
    let blobs = dir.join("blobs/sha256");
    let mut count = 0;
    for entry in std::fs::read_dir(&blobs).expect("blobs") {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let data = std::fs::read(entry.path()).unwrap();
        assert_eq!(sha256_hex(&data), name, "blob {name} in {}", dir.display());
        count += 1;
    }
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("a manifest");
    (Digest::parse(digest).unwrap(), count)
}

fn error_code(reply: &testkit::Reply) -> String {
    let body: Value =
        serde_json::from_slice(&reply.body).unwrap_or_else(|_| panic!("a JSON error: {:?}", reply));
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn skopeo_pulls_cold_then_warm_every_digest_verified() {
    let r = registry();
    let work = tempfile::tempdir().unwrap();
    let image = oci_image(&work.path().join("app"), 1);
    publish_oci(&r.root(), &work.path().join("app"), "acme/app:1.0");

    let inspected: Value = serde_json::from_str(&ok(&r.skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &r.creds,
        &r.image("acme/app:1.0"),
    ])))
    .unwrap();
    assert_eq!(inspected["Digest"], image.manifest.digest.to_string());
    let layers: Vec<&str> = inspected["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let want: Vec<String> = image.layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(layers, want);

    let origin = r.stack.origin_admin;
    let cold = work.path().join("cold");
    ok(&r.copy("acme/app:1.0", &cold, false));
    let (digest, blobs) = verified_layout(&cold);
    assert_eq!(digest, image.manifest.digest, "the manifest pulled cold");
    assert_eq!(blobs, image.layers.len() + 2, "config, layers and manifest");

    // Warm: every blob and the manifest by digest come from the edge's cache. The tag may be
    // revalidated (its TTL is 2 s here), nothing else goes to the origin.
    let before = answered(origin);
    let warm = work.path().join("warm");
    ok(&r.copy("acme/app:1.0", &warm, false));
    let (digest, _) = verified_layout(&warm);
    assert_eq!(digest, image.manifest.digest, "the manifest pulled warm");
    let after = answered(origin);
    assert!(
        after - before <= 1,
        "origin answered {} more",
        after - before
    );

    // Blobs by digest are kept for good; tags are not.
    let blob = r.get(&format!("/v2/acme/app/blobs/{}", image.layers[0].digest));
    assert_eq!(blob.status, 200);
    assert_eq!(sha256_hex(&blob.body), image.layers[0].digest.hex());
    assert_eq!(
        blob.header("docker-content-digest"),
        Some(image.layers[0].digest.to_string().as_str())
    );
    assert!(
        blob.header("cache-control")
            .unwrap_or_default()
            .contains("private"),
        "an authenticated answer is private to the client"
    );
    let range = request(
        "GET",
        &r.stack
            .url(&format!("/v2/acme/app/blobs/{}", image.layers[0].digest)),
        &[
            ("authorization", &format!("Bearer {}", r.token())),
            ("range", "bytes=10-19"),
        ],
    );
    assert_eq!(range.status, 206);
    assert_eq!(range.body.len(), 10);
    let manifest = r.get("/v2/acme/app/manifests/1.0");
    assert_eq!(
        manifest.header("content-type"),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(Digest::of(&manifest.body), image.manifest.digest);
    let head = request(
        "HEAD",
        &r.stack
            .url(&format!("/v2/acme/app/manifests/{}", image.manifest.digest)),
        &[("authorization", &format!("Bearer {}", r.token()))],
    );
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("docker-content-digest"),
        Some(image.manifest.digest.to_string().as_str())
    );
    let base = r.get("/v2/");
    assert_eq!(base.status, 200);
    assert_eq!(
        base.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
}

#[test]
fn skopeo_pulls_a_multi_arch_index() {
    let r = registry();
    let work = tempfile::tempdir().unwrap();
    let index = oci_index(&work.path().join("multi"), 2);
    publish_oci(&r.root(), &work.path().join("multi"), "acme/multi:2.0");

    let raw = ok(&r.skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &r.creds,
        &r.image("acme/multi:2.0"),
    ]));
    assert_eq!(
        Digest::of(raw.as_bytes()),
        index.index.digest,
        "the index as stored"
    );
    let parsed: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(parsed["manifests"].as_array().unwrap().len(), 2);

    let dir = work.path().join("all");
    ok(&r.copy("acme/multi:2.0", &dir, true));
    let (digest, blobs) = verified_layout(&dir);
    assert_eq!(digest, index.index.digest);
    // The index, and each image's manifest, config and layers, each verified above.
    let expected: usize = 1 + index
        .images
        .iter()
        .map(|i| 1 + i.blobs().len())
        .sum::<usize>();
    assert_eq!(blobs, expected);
    for image in &index.images {
        let path = dir.join("blobs/sha256").join(image.manifest.digest.hex());
        assert!(path.exists(), "{} manifest pulled", image.architecture);
    }
}

#[test]
fn registry_errors_unknown_names_and_corruption() {
    let r = registry();
    let work = tempfile::tempdir().unwrap();
    let app = oci_image(&work.path().join("app"), 3);
    publish_oci(&r.root(), &work.path().join("app"), "acme/app:1.0");
    let other = oci_image(&work.path().join("other"), 4);
    publish_oci(&r.root(), &work.path().join("other"), "acme/other:1.0");

    let unknown_tag = r.skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &r.creds,
        &r.image("acme/app:nope"),
    ]);
    assert!(!unknown_tag.status.success());
    let said = String::from_utf8_lossy(&unknown_tag.stderr).to_lowercase();
    assert!(said.contains("manifest unknown"), "{said}");

    let reply = r.get("/v2/acme/app/manifests/nope");
    assert_eq!(
        (reply.status, error_code(&reply).as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let reply = r.get("/v2/acme/nothing/manifests/1.0");
    assert_eq!(
        (reply.status, error_code(&reply).as_str()),
        (404, "NAME_UNKNOWN")
    );
    let missing = Digest::of(b"never pushed");
    let reply = r.get(&format!("/v2/acme/app/blobs/{missing}"));
    assert_eq!(
        (reply.status, error_code(&reply).as_str()),
        (404, "BLOB_UNKNOWN")
    );
    // Stored, but linked only from the other repository.
    let reply = r.get(&format!("/v2/acme/app/blobs/{}", other.layers[0].digest));
    assert_eq!(
        (reply.status, error_code(&reply).as_str()),
        (404, "BLOB_UNKNOWN")
    );
    let reply = r.get("/v2/acme/app/blobs/sha256:1234");
    assert_eq!(
        (reply.status, error_code(&reply).as_str()),
        (400, "DIGEST_INVALID")
    );

    // A layer corrupted in storage: no client gets it whole, and no tier keeps it.
    let layer = &app.layers[1].digest;
    let stored = r.root().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{}/data",
        &layer.hex()[..2],
        layer.hex()
    ));
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();
    let pulled = r.copy("acme/app:1.0", &work.path().join("bad"), false);
    assert!(
        !pulled.status.success(),
        "a corrupted layer must fail the pull"
    );
    let origin = r.stack.origin_admin;
    let before = answered(origin);
    let url = r.stack.url(&format!("/v2/acme/app/blobs/{layer}"));
    let token = r.token().to_owned();
    let curl = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(&url)
        .output()
        .unwrap();
    // Either an error status (nothing was sent yet: the shield holds the last piece back
    // until the body checks out) or a body cut short; never a whole 200.
    let code = String::from_utf8_lossy(&curl.stdout).into_owned();
    assert!(
        !curl.status.success() || code != "200",
        "the body is cut or refused, never a clean 200: {:?} {code}",
        curl.status
    );
    // A large one, sent in many pieces: cut short before its last bytes.
    let big = testkit::pattern(3 << 20, 9);
    let big_digest = Digest::of(&big);
    let layout = cdn_registry::oci::Layout::new("");
    let mut bad = big.clone();
    bad[1 << 20] ^= 1;
    let store = |key: String, bytes: &[u8]| {
        let path = r.root().join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    store(layout.blob_data(&big_digest), &bad);
    store(
        layout.layer_link("acme/app", &big_digest),
        big_digest.to_string().as_bytes(),
    );
    let cut = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            "-H",
        ])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(r.stack.url(&format!("/v2/acme/app/blobs/{big_digest}")))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&cut.stdout).into_owned();
    assert!(
        !cut.status.success() || !said.starts_with("200"),
        "a large corrupted blob is cut short: {:?} {said}",
        cut.status
    );
    assert!(
        answered(origin) > before,
        "not stored: asked of the origin again"
    );
    assert!(
        testkit::metric_sum(r.stack.shield_admin, "cdn_integrity_failures_total") >= 1.0,
        "counted at the shield"
    );
}
