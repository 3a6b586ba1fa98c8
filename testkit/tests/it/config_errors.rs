//! Each binary refuses a bad config with exit code 2, naming file, line, column and field;
//! `--check` accepts a good one with a one-line summary.

use std::process::Command;
use testkit::{stack::binary, Tier};

fn run(tier: Tier, config: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(binary(tier))
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn shipped() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config.yaml")).unwrap()
}

#[test]
fn shipped_config_checks_ok() {
    let text = shipped().replace(
        "root: origin-adapter/sample",
        &format!(
            "root: {}/../origin-adapter/sample",
            env!("CARGO_MANIFEST_DIR")
        ),
    );
    for tier in [Tier::Origin, Tier::Shield, Tier::Edge] {
        let (code, stdout, stderr) = run(tier, &text);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(
            stdout.contains(": ok: origin-adapter 127.0.0.1:9000"),
            "{stdout}"
        );
    }
}

#[test]
fn bad_config_exits_2_with_line_and_field() {
    let good = shipped();
    let line_of = |needle: &str| good.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let cases = [
        (
            "memory: 1GiB",
            "memory: lots",
            line_of("memory: 1GiB"),
            "edge.cache.memory",
        ),
        (
            "listen: 127.0.0.1:8080",
            "listen: 127.0.0.1:99999",
            line_of("listen: 127.0.0.1:8080"),
            "edge.listen",
        ),
        (
            "ttl: 1m\n    scope: npm",
            "ttl: 5 fortnights\n    scope: npm",
            line_of("ttl: 1m"),
            "routes[0].ttl",
        ),
        (
            "  timeout: 10s",
            "  timeout: 10s\n  secret_key: nope",
            line_of("timeout: 10s") + 1,
            "origin.secret_key",
        ),
    ];
    for tier in [Tier::Origin, Tier::Shield, Tier::Edge] {
        for (from, to, line, field) in &cases {
            let (code, _, stderr) = run(tier, &good.replacen(from, to, 1));
            assert_eq!(code, 2, "{to}: {stderr}");
            assert!(
                stderr.contains(&format!("config.yaml:{line}:")),
                "line {line} for {to}: {stderr}"
            );
            assert!(
                stderr.contains(&format!("field `{field}`")),
                "field {field} for {to}: {stderr}"
            );
        }
    }
}

/// Regression: the shipped catch-all over the bucket's root read the registry layout behind an
/// `auth` `/v2/` route. `--check` refuses routes whose keys meet, naming both.
#[test]
fn a_catch_all_that_reaches_an_auth_routes_keys_is_refused() {
    let registry = "  - prefix: /v2/\n    ttl: 1m\n    scope: oci\n";
    let own_folder = "    ttl: 1h\n    source:\n      prefix: files\n";
    let text = shipped()
        .replacen(registry, &format!("{registry}    auth: true\n"), 1)
        .replacen(own_folder, "    ttl: 1h\n", 1);
    assert!(text.contains("    auth: true\n    source:\n      prefix: registry"));
    let catch_all = text
        .lines()
        .position(|l| l == "  - prefix: /")
        .expect("the catch-all")
        + 1;
    for tier in [Tier::Origin, Tier::Shield, Tier::Edge] {
        let (code, stdout, stderr) = run(tier, &text);
        assert_eq!(code, 2, "{stdout}{stderr}");
        assert!(
            stderr.contains(&format!(
                "config.yaml:{catch_all}:5: field `routes[4].prefix`"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(
                "route \"/\" (routes[4]) can read what route \"/v2/\" (routes[1]) serves"
            ),
            "{stderr}"
        );
    }
}

/// Regression: the graceful-upgrade socket was named by tier, pid and port in the
/// world-writable temporary folder, and a local script that bound it first received the
/// listening sockets on SIGQUIT. It lives in a runtime folder of this user's only: a tier
/// refuses to start with one that others may enter.
#[test]
fn a_runtime_folder_others_may_enter_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("var/keys")).unwrap();
    std::fs::create_dir_all(dir.path().join("var/secrets")).unwrap();
    let (_, public) = cdn_auth::token::generate_key_pair().unwrap();
    std::fs::write(dir.path().join("var/keys/local.pub.pem"), public).unwrap();
    for link in ["edge-to-shield", "shield-to-origin"] {
        std::fs::write(
            dir.path().join("var/secrets").join(link),
            cdn_auth::keys::new_key(),
        )
        .unwrap();
    }
    let mut text = shipped();
    for port in ["9000", "9182", "8081", "9181", "8080", "9180"] {
        text = text.replace(&format!("listen: 127.0.0.1:{port}"), "listen: 127.0.0.1:0");
        text = text.replace(&format!("admin: 127.0.0.1:{port}"), "admin: 127.0.0.1:0");
    }
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, text).unwrap();
    let open = dir.path().join("run");
    std::fs::create_dir(&open).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    for tier in [Tier::Shield, Tier::Edge] {
        let mut child = Command::new(binary(tier))
            .arg("--config")
            .arg(&config)
            .env("RUNTIME_DIRECTORY", &open)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let exited = testkit::eventually_or_none(|| child.try_wait().ok().flatten());
        if exited.is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "started: {stderr}");
        assert!(
            stderr.contains(&format!(
                "the runtime folder {} is open to other users",
                open.canonicalize().unwrap().display()
            )),
            "{stderr}"
        );
    }
}
