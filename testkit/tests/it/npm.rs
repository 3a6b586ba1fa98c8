//! npm installs by the real `npm` through the edge, from Verdaccio's layout in a real
//! S3-compatible server: a scoped package with a dependency, every byte through the edge;
//! both spellings of a scoped name; full and abbreviated packuments; a new version seen within
//! the packument's TTL, and at once when a client asks for it.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::packages::{npm_pack, publish_npm};
use testkit::{eventually, request, Backend, S3Server, Stack, StackOptions};

struct Npm {
    stack: Stack,
    s3: S3Server,
    token: String,
    work: tempfile::TempDir,
}

fn npm_stack() -> Npm {
    let s3 = S3Server::start("packages");
    let stack = Stack::start(StackOptions::new(Backend::s3(&s3)));
    let token = stack.mint("k1", "ci", "npm:*", 600);
    Npm {
        stack,
        s3,
        token,
        work: tempfile::tempdir().unwrap(),
    }
}

impl Npm {
    /// Packs `name@version` with `npm pack` and publishes it into the private route's storage.
    fn publish(&self, name: &str, version: &str, deps: &[(&str, &str)]) -> PathBuf {
        let tarball = npm_pack(self.work.path(), name, version, deps);
        publish_npm(
            &self.s3.object_path("npm-private"),
            std::slice::from_ref(&tarball),
        );
        tarball
    }

    fn registry(&self) -> String {
        self.stack.url("/npm-private/")
    }

    fn get(&self, path: &str, accept: Option<&str>) -> testkit::Reply {
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(accept) = accept {
            headers.push(("accept", accept));
        }
        request("GET", &self.stack.url(path), &headers)
    }

    /// `npm install` in a new project with a fresh npm cache, every connection but the
    /// edge's refused; returns the project folder.
    fn install(&self, dependencies: &[(&str, &str)]) -> PathBuf {
        let project = tempfile::tempdir().unwrap().keep();
        let deps: serde_json::Map<String, Value> = dependencies
            .iter()
            .map(|(n, v)| ((*n).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let manifest = serde_json::json!({"name": "project", "version": "1.0.0", "private": true, "dependencies": deps});
        std::fs::write(project.join("package.json"), manifest.to_string()).unwrap();
        let registry = self.registry();
        let nerfed = registry.trim_start_matches("http:");
        std::fs::write(
            project.join(".npmrc"),
            format!("registry={registry}\n{nerfed}:_authToken={}\n", self.token),
        )
        .unwrap();
        let cache = tempfile::tempdir().unwrap();
        let out = Command::new("npm")
            .current_dir(&project)
            .args(["install", "--no-audit", "--no-fund", "--no-update-notifier"])
            .arg("--cache")
            .arg(cache.path())
            .args([
                "--proxy",
                "http://127.0.0.1:9",
                "--https-proxy",
                "http://127.0.0.1:9",
                "--noproxy",
                "127.0.0.1",
            ])
            .env("npm_config_userconfig", project.join("no-user-npmrc"))
            .output()
            .expect("npm runs (deploy/local/setup.sh --tests installs it)");
        assert!(
            out.status.success(),
            "npm install failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        project
    }
}

fn installed_version(project: &Path, name: &str) -> String {
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(project.join("node_modules").join(name).join("package.json"))
            .unwrap_or_else(|e| panic!("{name} installed: {e}")),
    )
    .unwrap();
    manifest["version"].as_str().unwrap().to_owned()
}

#[test]
fn npm_installs_a_scoped_package_and_its_dependency_through_the_edge() {
    let n = npm_stack();
    let dep = n.publish("demo-dep", "1.0.0", &[]);
    n.publish("@acme/util", "1.0.0", &[("demo-dep", "^1.0.0")]);

    let project = n.install(&[("@acme/util", "^1.0.0")]);
    assert_eq!(installed_version(&project, "@acme/util"), "1.0.0");
    assert_eq!(installed_version(&project, "demo-dep"), "1.0.0");
    let lock: Value =
        serde_json::from_slice(&std::fs::read(project.join("package-lock.json")).unwrap()).unwrap();
    let entry = &lock["packages"]["node_modules/demo-dep"];
    assert_eq!(
        entry["resolved"].as_str().unwrap(),
        n.stack.url("/npm-private/demo-dep/-/demo-dep-1.0.0.tgz"),
        "tarballs resolved through the edge"
    );
    let bytes = std::fs::read(&dep).unwrap();
    assert_eq!(
        entry["integrity"].as_str().unwrap(),
        cdn_registry::digest::npm_integrity(&bytes)
    );

    // Both spellings of a scoped name are one package, and one cached copy.
    let slash = n.get("/npm-private/@acme/util", None);
    let encoded = n.get("/npm-private/@acme%2futil", None);
    assert_eq!((slash.status, encoded.status), (200, 200));
    assert_eq!(slash.body, encoded.body);
    assert!(
        encoded.cache_status().starts_with("edge-pop; hit"),
        "{}",
        encoded.cache_status()
    );

    // Full and abbreviated packuments, each cached on its own.
    let full: Value = serde_json::from_slice(&slash.body).unwrap();
    assert!(full["versions"]["1.0.0"]["description"].is_string());
    assert_eq!(slash.header("content-type"), Some("application/json"));
    let short = n.get(
        "/npm-private/@acme/util",
        Some(cdn_registry::npm::ABBREVIATED),
    );
    assert_eq!(
        short.header("content-type"),
        Some(cdn_registry::npm::ABBREVIATED)
    );
    let short: Value = serde_json::from_slice(&short.body).unwrap();
    assert!(short["versions"]["1.0.0"].get("description").is_none());
    assert_eq!(
        short["versions"]["1.0.0"]["dependencies"]["demo-dep"],
        "^1.0.0"
    );
    let tarball = full["versions"]["1.0.0"]["dist"]["tarball"]
        .as_str()
        .unwrap();
    assert_eq!(
        tarball,
        n.stack.url("/npm-private/@acme/util/-/util-1.0.0.tgz"),
        "the edge names itself"
    );

    let missing = n.get("/npm-private/no-such-package", None);
    assert_eq!(missing.status, 404);
}

#[test]
fn a_new_version_is_seen_within_the_ttl_and_at_once_when_asked_for() {
    let n = npm_stack();
    let versions = |reply: &testkit::Reply| -> Vec<String> {
        let doc: Value = serde_json::from_slice(&reply.body).unwrap();
        let mut v: Vec<String> = doc["versions"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    };

    // The private route keeps packuments for an hour: only a request naming the new version
    // (its version document or its tarball, as a lockfile install asks) makes the tiers look
    // again before then. Both variants are cached: full, and abbreviated as npm asks.
    let abbreviated = Some(cdn_registry::npm::ABBREVIATED);
    n.publish("demo-dep", "1.0.0", &[]);
    assert_eq!(versions(&n.get("/npm-private/demo-dep", None)), ["1.0.0"]);
    assert_eq!(
        versions(&n.get("/npm-private/demo-dep", abbreviated)),
        ["1.0.0"]
    );
    n.publish("demo-dep", "1.1.0", &[]);
    for accept in [None, abbreviated] {
        let cached = n.get("/npm-private/demo-dep", accept);
        assert!(
            cached.cache_status().starts_with("edge-pop; hit"),
            "{}",
            cached.cache_status()
        );
        assert_eq!(versions(&cached), ["1.0.0"]);
    }
    let asked = n.get("/npm-private/demo-dep/1.1.0", None);
    assert_eq!(asked.status, 200);
    let doc: Value = serde_json::from_slice(&asked.body).unwrap();
    assert_eq!(doc["version"], "1.1.0");
    for accept in [None, abbreviated] {
        assert_eq!(
            versions(&n.get("/npm-private/demo-dep", accept)),
            ["1.0.0", "1.1.0"]
        );
    }
    let project = n.install(&[("demo-dep", "1.1.0")]);
    assert_eq!(installed_version(&project, "demo-dep"), "1.1.0");
    let missing = n.get("/npm-private/demo-dep/9.9.9", None);
    assert_eq!(missing.status, 404, "a version nobody published");

    // An unchanged packument revalidates with a 304 and no body.
    let origin_url = format!("http://{}/npm-private/demo-dep", n.stack.origin);
    let trust = n.stack.tier_header(n.stack.origin);
    let mut headers: Vec<(&str, &str)> = trust.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = request("GET", &origin_url, &headers);
    let etag = first.header("etag").expect("an ETag").to_owned();
    headers.push(("if-none-match", &etag));
    let again = request("GET", &origin_url, &headers);
    assert_eq!((again.status, again.body.len()), (304, 0));
    assert_eq!(again.header("etag"), Some(etag.as_str()));

    // The public route keeps them for 2 s (stale for a minute while one request refreshes).
    let root = n.s3.object_path("npm");
    let t1 = npm_pack(n.work.path(), "left-pad", "1.0.0", &[]);
    publish_npm(&root, &[t1]);
    assert_eq!(versions(&n.get("/npm/left-pad", None)), ["1.0.0"]);
    let t2 = npm_pack(n.work.path(), "left-pad", "1.1.0", &[]);
    publish_npm(&root, &[t2]);
    let started = std::time::Instant::now();
    eventually("the new version through the edge", || {
        std::thread::sleep(Duration::from_millis(200));
        (versions(&n.get("/npm/left-pad", None)).len() == 2).then_some(())
    });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "seen after {:?}",
        started.elapsed()
    );
}
