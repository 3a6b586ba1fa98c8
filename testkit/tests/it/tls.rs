//! TLS at the edge, through the real `curl`: HTTP/1.1 and HTTP/2 by ALPN beside plain HTTP;
//! the certificate picked by SNI among several; a certificate replaced while a download runs
//! (the download completes, new connections get the new certificate), by a file change and by
//! SIGHUP; a broken replacement keeps the old certificate; a bad file at start is an error
//! naming its field. Names resolve to 127.0.0.1 through `curl --resolve`, never through DNS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use testkit::tls::replace_file;
use testkit::{
    eventually, get, origin_dir, patience, pattern, sha256_hex, stack::binary, Backend, EdgeTls,
    Stack, StackOptions, TestCa, Tier, TlsFiles,
};

/// curl's exit code when the server's certificate does not verify with the CA given.
const CURL_UNTRUSTED: i32 = 60;

/// `curl` for `https://NAME:PORT/PATH` on the edge's TLS listener, `NAME` resolved to it, only
/// `ca` trusted; the body goes to `out`, and stdout gets `<http_version> <status>`.
fn curl(tls: SocketAddr, name: &str, path: &str, ca: &Path, out: &Path) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--noproxy", "*"])
        .arg("--max-time")
        .arg(patience().as_secs().to_string())
        .arg("--cacert")
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{name}:{}:127.0.0.1", tls.port()))
        .arg("--output")
        .arg(out)
        .args(["--write-out", "%{http_version} %{http_code}"])
        .arg(format!("https://{name}:{}{path}", tls.port()));
    cmd
}

/// Runs a curl command to the end.
fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run curl")
}

/// One GET over TLS: `(http_version, status, body)`, or curl's exit code and message.
fn fetch(
    tls: SocketAddr,
    name: &str,
    path: &str,
    ca: &Path,
    extra: &[&str],
) -> Result<(String, u16, Vec<u8>), (i32, String)> {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = curl(tls, name, path, ca, out.path());
    cmd.args(extra);
    let done = run(cmd);
    if !done.status.success() {
        return Err((
            done.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&done.stderr).into_owned(),
        ));
    }
    let written = String::from_utf8(done.stdout).unwrap();
    let (version, status) = written.split_once(' ').unwrap();
    Ok((
        version.to_owned(),
        status.parse().unwrap(),
        std::fs::read(out.path()).unwrap(),
    ))
}

/// Whether a new connection to `name` verifies with `ca` (and gets a 200).
fn verifies(tls: SocketAddr, name: &str, ca: &Path) -> bool {
    match fetch(tls, name, "/small.bin", ca, &[]) {
        Ok((_, status, _)) => status == 200,
        Err((code, message)) => {
            assert_eq!(code, CURL_UNTRUSTED, "curl failed otherwise: {message}");
            false
        }
    }
}

/// A folder of certificates: CAs' PEM files and the edge's cert/key pairs.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn new() -> Certs {
        Certs {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A new CA, its certificate written as `<name>.ca.pem`.
    fn ca(&self, name: &str) -> (TestCa, PathBuf) {
        let ca = TestCa::new(name);
        let path = ca.write(&self.path(&format!("{name}.ca.pem")));
        (ca, path)
    }
}

fn tls_stack(
    files: &[(&str, &[u8])],
    tls: EdgeTls,
    options: impl FnOnce(&mut StackOptions),
) -> (tempfile::TempDir, Stack) {
    let root = origin_dir(files);
    let mut o = StackOptions::new(Backend::Local(root.path().to_owned()));
    o.disk = None;
    o.tls = Some(tls);
    options(&mut o);
    (root, Stack::start(o))
}

#[test]
fn https_by_http1_and_http2_beside_plain_http() {
    let certs = Certs::new();
    let (ca, ca_pem) = certs.ca("one");
    let files = ca.issue(&["edge.test"]).write(certs.dir.path(), "edge");
    let small = pattern(1 << 10, 1);
    let big = pattern(3 << 20, 2);
    let (_root, stack) = tls_stack(
        &[("small.bin", &small), ("big.bin", &big)],
        EdgeTls::new(vec![files.clone()]),
        |_| {},
    );
    let tls = stack.edge_tls.expect("the edge has a TLS listener");
    assert_ne!(tls.port(), 0);

    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        for (path, data) in [("/small.bin", &small), ("/big.bin", &big)] {
            let (got, status, body) = fetch(tls, "edge.test", path, &ca_pem, &[flag])
                .unwrap_or_else(|e| panic!("{flag} {path}: {e:?}"));
            assert_eq!((got.as_str(), status), (version, 200), "{flag} {path}");
            assert_eq!(sha256_hex(&body), sha256_hex(data), "{flag} {path}");
        }
    }
    // Plain HTTP goes on beside it.
    let plain = get(&stack.url("/big.bin"));
    assert_eq!(plain.status, 200);
    assert_eq!(sha256_hex(&plain.body), sha256_hex(&big));
    drop(stack);

    // With `http2: false`, ALPN offers HTTP/1.1 only: a client asking for h2 gets 1.1.
    let (_root, stack) = tls_stack(
        &[("small.bin", &small)],
        EdgeTls {
            certificates: vec![files],
            http2: false,
        },
        |_| {},
    );
    let tls = stack.edge_tls.unwrap();
    let (got, status, body) = fetch(tls, "edge.test", "/small.bin", &ca_pem, &["--http2"]).unwrap();
    assert_eq!((got.as_str(), status), ("1.1", 200));
    assert_eq!(body, small);
}

#[test]
fn sni_picks_the_certificate_that_names_the_host() {
    let certs = Certs::new();
    let (one, one_pem) = certs.ca("one");
    let (two, two_pem) = certs.ca("two");
    // The first certificate is also the default: for no SNI (an address), or an unknown name.
    let first = one
        .issue(&["a.test", "127.0.0.1"])
        .write(certs.dir.path(), "a");
    let second = two
        .issue(&["b.test", "*.wild.test"])
        .write(certs.dir.path(), "b");
    let small = pattern(1 << 10, 3);
    let (_root, stack) = tls_stack(
        &[("small.bin", &small)],
        EdgeTls::new(vec![first, second]),
        |_| {},
    );
    let tls = stack.edge_tls.unwrap();

    for (name, signer, other) in [
        ("a.test", &one_pem, &two_pem),
        ("b.test", &two_pem, &one_pem),
        ("x.wild.test", &two_pem, &one_pem),
        // curl sends no SNI to an address: the first certificate, which names it.
        ("127.0.0.1", &one_pem, &two_pem),
    ] {
        assert!(verifies(tls, name, signer), "{name} with its own CA");
        assert!(!verifies(tls, name, other), "{name} with the other CA");
    }
    // An unknown name gets the first certificate: it does not verify (wrong name), but its
    // subject shows which it was.
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = curl(tls, "unknown.test", "/small.bin", &one_pem, out.path());
    cmd.args(["--insecure", "--write-out", "%{certs}"]);
    let done = run(cmd);
    assert!(done.status.success(), "{:?}", done);
    let shown = String::from_utf8_lossy(&done.stdout);
    assert!(shown.contains("CN = a.test"), "{shown}");
    assert!(shown.contains("CN = one"), "issuer: {shown}");
}

/// Starts a slow download of `path` over TLS (`flag` picks the protocol), verified with `ca`;
/// returns when its first bytes have arrived.
fn slow_download(
    tls: SocketAddr,
    name: &str,
    path: &str,
    ca: &Path,
    flag: &str,
    out: &Path,
) -> Child {
    let mut cmd = curl(tls, name, path, ca, out);
    cmd.args([flag, "--limit-rate", "1M"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("start curl");
    eventually("the download to start", || {
        let len = std::fs::metadata(out).map_or(0, |m| m.len());
        (len >= 256 << 10).then_some(())
    });
    child
}

/// Waits for a download to end; returns curl's `<http_version> <status>`.
fn finish(mut child: Child) -> String {
    let status = eventually("the download to finish", || child.try_wait().unwrap());
    let done = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "{status}: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    String::from_utf8(done.stdout).unwrap()
}

#[test]
fn a_certificate_replaced_during_a_download() {
    let certs = Certs::new();
    let (old, old_pem) = certs.ca("old");
    let (new, new_pem) = certs.ca("new");
    let files = old.issue(&["edge.test"]).write(certs.dir.path(), "edge");
    let big = pattern(6 << 20, 4);
    let small = pattern(1 << 10, 5);
    let (_root, stack) = tls_stack(
        &[("big.bin", &big), ("small.bin", &small)],
        EdgeTls::new(vec![files.clone()]),
        |_| {},
    );
    let tls = stack.edge_tls.unwrap();
    assert!(verifies(tls, "edge.test", &old_pem));

    // About six seconds at 1 MiB/s; the swap is seen within a second.
    let out = certs.path("big.out");
    let download = slow_download(tls, "edge.test", "/big.bin", &old_pem, "--http2", &out);
    files.replace_with(&new.issue(&["edge.test"]));
    eventually("new connections to get the new certificate", || {
        verifies(tls, "edge.test", &new_pem).then_some(())
    });
    assert!(!verifies(tls, "edge.test", &old_pem));
    let mut download = download;
    assert!(
        download.try_wait().unwrap().is_none(),
        "the download was still running when the certificate changed"
    );
    assert_eq!(finish(download), "2 200");
    assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), sha256_hex(&big));
}

fn process_stack(files: &[(&str, &[u8])], tls: EdgeTls) -> (tempfile::TempDir, Stack) {
    tls_stack(files, tls, |o| o.mode = testkit::Mode::Processes)
}

fn sighup(stack: &Stack, name: &str) {
    let status = Command::new("kill")
        .args(["-s", "HUP", &stack.pid(name).to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Log lines of a process that contain `what`.
fn logged(stack: &Stack, name: &str, what: &str) -> usize {
    stack.log(name).lines().filter(|l| l.contains(what)).count()
}

#[test]
fn sighup_reloads_the_certificates_and_ends_nothing() {
    let certs = Certs::new();
    let (old, old_pem) = certs.ca("old");
    let (new, new_pem) = certs.ca("new");
    let files = old.issue(&["edge.test"]).write(certs.dir.path(), "edge");
    let big = pattern(6 << 20, 6);
    let small = pattern(1 << 10, 7);
    let (_root, stack) = process_stack(
        &[("big.bin", &big), ("small.bin", &small)],
        EdgeTls::new(vec![files.clone()]),
    );
    let tls = stack.edge_tls.unwrap();
    assert!(stack.log("edge").contains("TLS certificates loaded"));

    // SIGHUP with nothing changed: a reload, logged with the names served; the process goes on.
    sighup(&stack, "edge");
    eventually("the edge to log its reload", || {
        (logged(&stack, "edge", "TLS certificates reloaded") == 1).then_some(())
    });
    let line = stack
        .log("edge")
        .lines()
        .find(|l| l.contains("TLS certificates reloaded"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("SIGHUP") && line.contains("edge.test"),
        "{line}"
    );
    assert!(!line.contains("PRIVATE KEY"), "{line}");
    // A tier without TLS takes SIGHUP too, and goes on.
    sighup(&stack, "shield");
    eventually("the shield to log the signal", || {
        (logged(&stack, "shield", "no TLS certificates to reload") == 1).then_some(())
    });
    assert!(verifies(tls, "edge.test", &old_pem));
    assert_eq!(
        get(&stack.url("/small.bin")).status,
        200,
        "both still serve"
    );

    // Replaced during a download over HTTP/1.1, then SIGHUP.
    let out = certs.path("big.out");
    let download = slow_download(tls, "edge.test", "/big.bin", &old_pem, "--http1.1", &out);
    files.replace_with(&new.issue(&["edge.test"]));
    sighup(&stack, "edge");
    eventually("new connections to get the new certificate", || {
        verifies(tls, "edge.test", &new_pem).then_some(())
    });
    assert!(!verifies(tls, "edge.test", &old_pem));
    assert_eq!(finish(download), "1.1 200");
    assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), sha256_hex(&big));
}

#[test]
fn a_broken_replacement_keeps_the_certificate_in_use() {
    let certs = Certs::new();
    let (old, old_pem) = certs.ca("old");
    let (new, new_pem) = certs.ca("new");
    let files = old.issue(&["edge.test"]).write(certs.dir.path(), "edge");
    let small = pattern(1 << 10, 8);
    let (_root, stack) = process_stack(&[("small.bin", &small)], EdgeTls::new(vec![files.clone()]));
    let tls = stack.edge_tls.unwrap();
    let failed = "TLS certificates not reloaded";

    // A certificate file that is not PEM.
    replace_file(&files.cert, b"not a certificate\n");
    eventually("the edge to refuse the broken file", || {
        (logged(&stack, "edge", failed) >= 1).then_some(())
    });
    assert!(stack.log("edge").contains("tls.certificates[0].cert"));
    assert!(
        verifies(tls, "edge.test", &old_pem),
        "the old one is served"
    );

    // A good certificate whose key is another's.
    let leaf = new.issue(&["edge.test"]);
    replace_file(&files.key, new.issue(&["edge.test"]).key_pem.as_bytes());
    replace_file(&files.cert, leaf.cert_pem.as_bytes());
    eventually("the edge to refuse the mismatched key", || {
        stack
            .log("edge")
            .contains("does not match the certificate")
            .then_some(())
    });
    assert!(
        verifies(tls, "edge.test", &old_pem),
        "the old one is served"
    );
    assert!(!verifies(tls, "edge.test", &new_pem));

    // Its own key: the new certificate is served.
    replace_file(&files.key, leaf.key_pem.as_bytes());
    eventually("new connections to get the new certificate", || {
        verifies(tls, "edge.test", &new_pem).then_some(())
    });
    assert!(stack.log("edge").contains("TLS certificates reloaded"));
}

#[test]
fn a_bad_certificate_file_at_start_names_its_field() {
    let certs = Certs::new();
    let (ca, _) = certs.ca("one");
    let good = ca.issue(&["a.test"]).write(certs.dir.path(), "good");
    let other = ca.issue(&["b.test"]).write(certs.dir.path(), "other");
    std::fs::write(certs.path("garbage.pem"), "-----BEGIN NOTHING-----\n").unwrap();
    let missing = certs.path("missing.pem");
    let files = |cert: &Path, key: &Path| TlsFiles {
        cert: cert.to_owned(),
        key: key.to_owned(),
    };
    let cases = [
        (
            vec![files(&missing, &good.key)],
            "edge.tls.certificates[0].cert",
            "cannot read it",
        ),
        (
            vec![files(&certs.path("garbage.pem"), &good.key)],
            "edge.tls.certificates[0].cert",
            "not valid PEM",
        ),
        (
            vec![files(&good.key, &good.key)],
            "edge.tls.certificates[0].cert",
            "holds no certificate",
        ),
        (
            vec![files(&good.cert, &good.cert)],
            "edge.tls.certificates[0].key",
            "holds no private key",
        ),
        (
            vec![good.clone(), files(&other.cert, &good.key)],
            "edge.tls.certificates[1].key",
            "does not match the certificate",
        ),
    ];
    for (certificates, field, message) in cases {
        let path = certs.path("config.yaml");
        std::fs::write(&path, edge_config(&certificates)).unwrap();
        let mut child = Command::new(binary(Tier::Edge))
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = eventually("edge-pop to give up", || child.try_wait().unwrap());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(status.code(), Some(1), "{field}: {stderr}");
        assert!(out.stdout.is_empty(), "it never said it listens");
        assert!(stderr.contains(&format!("field `{field}`")), "{stderr}");
        assert!(stderr.contains(message), "{message}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// A whole config whose edge has a TLS listener with `certificates`; every listener on port 0.
fn edge_config(certificates: &[TlsFiles]) -> String {
    let mut tls = String::new();
    for f in certificates {
        tls += &format!(
            "      - cert: {}\n        key: {}\n",
            f.cert.display(),
            f.key.display()
        );
    }
    format!(
        "origin:\n  listen: 127.0.0.1:0\n  backend:\n    local:\n      root: .\n\
         shield:\n  listen: 127.0.0.1:0\n  origin: 127.0.0.1:1\n  cache:\n    memory: 8MiB\n\
         edge:\n  listen: 127.0.0.1:0\n  shields: [127.0.0.1:1]\n  cache:\n    memory: 8MiB\n\
         \x20 tls:\n    listen: 127.0.0.1:0\n    certificates:\n{tls}\
         routes:\n  - prefix: /\n    ttl: 1h\n"
    )
}

#[test]
fn packument_tarball_urls_name_https_and_the_authority() {
    let certs = Certs::new();
    let (ca, ca_pem) = certs.ca("one");
    let files = ca.issue(&["edge.test"]).write(certs.dir.path(), "edge");
    let packument = br#"{"name":"@acme/util","versions":{"1.0.0":{"dist":{"tarball":"/npm/@acme/util/-/util-1.0.0.tgz"}}}}"#;
    let (_root, stack) = tls_stack(
        &[("npm/@acme/util/package.json", &packument[..])],
        EdgeTls::new(vec![files]),
        |_| {},
    );
    let tls = stack.edge_tls.unwrap();
    // HTTP/2 carries the authority in `:authority`, HTTP/1.1 in `Host`; a miss, then a hit.
    for flag in ["--http2", "--http1.1", "--http2"] {
        let (_, status, body) = fetch(tls, "edge.test", "/npm/@acme%2futil", &ca_pem, &[flag])
            .unwrap_or_else(|e| panic!("{flag}: {e:?}"));
        assert_eq!(status, 200, "{flag}");
        let expected = format!(
            r#"{{"name":"@acme/util","versions":{{"1.0.0":{{"dist":{{"tarball":"https://edge.test:{}/npm/@acme/util/-/util-1.0.0.tgz"}}}}}}}}"#,
            tls.port()
        );
        assert_eq!(String::from_utf8(body).unwrap(), expected, "{flag}");
    }
    // Plain HTTP beside it: `http`.
    let plain = get(&stack.url("/npm/@acme/util"));
    assert!(
        String::from_utf8_lossy(&plain.body)
            .contains(&format!(r#""tarball":"http://{}/npm/"#, stack.edge)),
        "{:?}",
        plain.body
    );
}
