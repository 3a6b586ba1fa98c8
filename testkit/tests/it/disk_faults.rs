//! A cache folder that turns read-only, then a disk that fills up, under load: every response
//! is whole. Failed disk writes are counted, `/readyz` says the tier is degraded, and misses
//! pass through uncached until the disk has been quiet for a while.
//!
//! The cache folders live on a small tmpfs the test mounts (it needs root, as CI runs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;
use testkit::{download, origin_dir, pattern, sha256_hex, Backend, Stack, StackOptions};

const SIZE: usize = 64 << 10;

/// Mounts (and, dropped, unmounts) what the test needs: a tmpfs, and binds over it.
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn run(args: &[&str]) {
        let status = Command::new(args[0]).args(&args[1..]).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "{args:?} failed: this test mounts a tmpfs and needs root"
        );
    }

    fn tmpfs(&mut self, at: &Path, size: &str) {
        Self::run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            &at.display().to_string(),
        ]);
        self.0.push(at.to_owned());
    }

    /// Makes `dir` read-only for whatever opens a file in it from now on.
    fn read_only(&mut self, dir: &Path) {
        let d = dir.display().to_string();
        Self::run(&["mount", "--bind", &d, &d]);
        self.0.push(dir.to_owned());
        Self::run(&["mount", "-o", "remount,bind,ro", &d]);
    }

    fn undo_last(&mut self) {
        if let Some(at) = self.0.pop() {
            Self::run(&["umount", &at.display().to_string()]);
        }
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        while let Some(at) = self.0.pop() {
            let _ = Command::new("umount").arg("-l").arg(&at).status();
        }
    }
}

/// Objects `range` fetched through the edge by four clients at once, each checked whole.
fn load(stack: &Stack, range: std::ops::Range<usize>, bodies: &[Vec<u8>]) -> Vec<String> {
    let work = Mutex::new(range);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let Some(i) = work.lock().unwrap().next() else {
                    return;
                };
                let got = download(stack.edge, &format!("/files/f{i}"), &[]);
                if !(got.whole_200() && got.sha256 == sha256_hex(&bodies[i])) {
                    failures.lock().unwrap().push(format!("f{i}: {got:?}"));
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

#[test]
fn a_read_only_then_full_cache_folder_breaks_no_response() {
    let bodies: Vec<Vec<u8>> = (0..600).map(|i| pattern(SIZE, i as u64)).collect();
    let files: Vec<(String, &[u8])> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("files/f{i}"), b.as_slice()))
        .collect();
    let root = origin_dir(&files);
    let disk = tempfile::tempdir().unwrap();
    let mut mounts = Mounts(Vec::new());
    mounts.tmpfs(disk.path(), "40m");
    let mut options = StackOptions::new(Backend::Local(root.path().to_owned()));
    options.cache_root = Some(disk.path().to_owned());
    // Segments of 2 MiB: new ones are opened every few dozen objects.
    options.disk = Some("16MiB");
    options.memory = "2MiB";
    options.max_object = "2MiB";
    let stack = Stack::start(options);

    assert!(load(&stack, 0..100, &bodies).is_empty(), "before any fault");
    assert_eq!(
        testkit::metric_total(stack.edge_admin, "cdn_cache_disk_faults_total"),
        0
    );

    // Read-only: the segments open now stay writable, a new one cannot be made.
    mounts.read_only(&stack.cache_dir("edge"));
    mounts.read_only(&stack.cache_dir("shield"));
    let failures = load(&stack, 100..300, &bodies);
    assert!(failures.is_empty(), "read-only: {failures:#?}");
    assert!(testkit::metric_total(stack.edge_admin, "cdn_cache_disk_faults_total") > 0);
    let ready = testkit::get(&format!("http://{}/readyz", stack.edge_admin));
    assert_eq!(ready.status, 200);
    assert!(
        String::from_utf8_lossy(&ready.body).starts_with("degraded"),
        "{ready:?}"
    );
    mounts.undo_last();
    mounts.undo_last();

    // Full: a file outside the cache folders takes every byte the tmpfs has left.
    let faults = testkit::metric_total(stack.edge_admin, "cdn_cache_disk_faults_total");
    std::thread::sleep(Duration::from_secs(6));
    let mut filler = std::fs::File::create(disk.path().join("filler")).unwrap();
    let block = vec![7u8; 1 << 20];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    let failures = load(&stack, 300..600, &bodies);
    assert!(failures.is_empty(), "disk full: {failures:#?}");
    assert!(testkit::metric_total(stack.edge_admin, "cdn_cache_disk_faults_total") > faults);

    // Space again, and quiet for a while: fills are admitted and stored once more.
    std::fs::remove_file(disk.path().join("filler")).unwrap();
    std::thread::sleep(Duration::from_secs(6));
    assert!(load(&stack, 300..310, &bodies).is_empty());
    let again = download(stack.edge, "/files/f305", &[]);
    assert!(again.whole_200());
    drop(stack);
}

#[test]
fn a_descriptor_limit_too_low_for_the_disk_stops_the_tier_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "origin:\n  listen: 127.0.0.1:0\n  backend:\n    local:\n      root: .\n\
         shield:\n  listen: 127.0.0.1:0\n  origin: 127.0.0.1:9\n  cache:\n    memory: 64MiB\n\
         edge:\n  listen: 127.0.0.1:0\n  shields: [127.0.0.1:9]\n  cache:\n    memory: 64MiB\n    disk:\n      path: cache\n      size: 100GiB\n\
         routes:\n  - prefix: /\n    ttl: 1h\n",
    )
    .unwrap();
    // 100 GiB of disk may take thousands of segments; 512 descriptors cannot hold them.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 512 && exec {} --config {}",
            testkit::stack::binary(testkit::Tier::Edge).display(),
            config.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the open-file limit is 512") && stderr.contains("LimitNOFILE"),
        "{stderr}"
    );
}
