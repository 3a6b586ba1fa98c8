//! Several buckets and prefixes in one deployment, routed by path: origin-adapter reads each
//! route from the backend and key prefix its `source` names.

use std::path::Path;
use testkit::packages::{oci_image, publish_oci};
use testkit::{get, origin_dir, S3Server};

#[test]
fn each_route_reads_its_own_backend_and_prefix() {
    // The default backend, a folder: plain files under `files/`, npm packages under `pkgs/`.
    let files = origin_dir(&[
        ("files/hello.txt", &b"hello"[..]),
        (
            "pkgs/left-pad/package.json",
            br#"{"name":"left-pad","versions":{"1.0.0":{"name":"left-pad","version":"1.0.0","dist":{"tarball":"https://registry.example/left-pad/-/left-pad-1.0.0.tgz"}}}}"#,
        ),
    ]);
    // Another backend, a bucket: registry:2's tree under `mirror/`.
    let s3 = S3Server::start("images");
    let work = tempfile::tempdir().unwrap();
    let image = oci_image(&work.path().join("app"), 5);
    publish_oci(
        &s3.object_path("mirror"),
        &work.path().join("app"),
        "acme/app:1.0",
    );

    let text = format!(
        "origin:\n  listen: 127.0.0.1:0\n  backend:\n    local:\n      root: {}\n  backends:\n    images:\n      s3:\n        endpoint: {}\n        bucket: images\n        allow_http: true\n\
         shield:\n  listen: 127.0.0.1:0\n  origin: 127.0.0.1:1\n  cache:\n    memory: 8MiB\n\
         edge:\n  listen: 127.0.0.1:0\n  shields: [127.0.0.1:1]\n  cache:\n    memory: 8MiB\n\
         routes:\n  - prefix: /npm/\n    ttl: 1m\n    scope: npm\n    source: {{prefix: pkgs}}\n\
         \x20 - prefix: /v2/\n    ttl: 1m\n    scope: oci\n    source: {{backend: images, prefix: mirror}}\n\
         \x20 - prefix: /\n    ttl: 1h\n    source: {{prefix: files}}\n",
        files.path().display(),
        s3.endpoint()
    );
    let config = cdn_config::Config::parse(Path::new("/tmp/sources.yaml"), &text)
        .unwrap_or_else(|e| panic!("{e}"));
    let adapter = origin_adapter::OriginAdapter::bind(&config, &S3Server::credentials())
        .unwrap()
        .spawn()
        .unwrap();
    let at = |path: &str| get(&format!("http://{}{path}", adapter.listen().traffic));

    assert_eq!(&at("/hello.txt").body[..], b"hello");
    let packument = at("/npm/left-pad");
    assert_eq!(packument.status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&packument.body).unwrap();
    assert_eq!(
        doc["versions"]["1.0.0"]["dist"]["tarball"], "/npm/left-pad/-/left-pad-1.0.0.tgz",
        "path-absolute under its route, whatever host was stored"
    );
    assert_eq!(
        at("/pkgs/left-pad/package.json").status,
        404,
        "the package folder is not reached through the catch-all"
    );
    let manifest = at("/v2/acme/app/manifests/1.0");
    assert_eq!(manifest.status, 200);
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(image.manifest.digest.to_string().as_str())
    );
    assert_eq!(
        at(&format!("/v2/acme/app/blobs/{}", image.layers[0].digest)).status,
        200
    );
    assert!(s3.requests() > 0, "the registry came from the bucket");
    assert_eq!(
        at("/mirror/docker/registry/v2/").status,
        404,
        "not from the folder"
    );
}
