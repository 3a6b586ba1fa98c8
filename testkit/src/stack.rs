//! The three real binaries as child processes, wired by a config file written for the test.

use crate::{eventually, free_port, S3Server};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Origin,
    Shield,
    Edge,
}

impl Tier {
    pub fn binary(self) -> &'static str {
        match self {
            Tier::Origin => "origin-adapter",
            Tier::Shield => "shield",
            Tier::Edge => "edge-pop",
        }
    }
}

/// Where the origin-adapter reads objects from.
#[derive(Debug, Clone)]
pub enum Backend {
    Local(PathBuf),
    S3 { endpoint: String, bucket: String },
}

impl Backend {
    pub fn s3(server: &S3Server) -> Backend {
        Backend::S3 {
            endpoint: server.endpoint(),
            bucket: server.bucket.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub backend: Backend,
    /// `origin.timeout`.
    pub origin_timeout: &'static str,
    /// Point the shield somewhere other than the origin-adapter (e.g. a closed port).
    pub shield_origin: Option<SocketAddr>,
    pub memory: &'static str,
    pub max_object: &'static str,
}

impl StackOptions {
    pub fn new(backend: Backend) -> Self {
        StackOptions {
            backend,
            origin_timeout: "5s",
            shield_origin: None,
            memory: "512MiB",
            max_object: "128MiB",
        }
    }
}

/// A running origin-adapter → shield → edge-pop chain (plus any extra edges).
pub struct Stack {
    dir: tempfile::TempDir,
    options: StackOptions,
    pub origin: SocketAddr,
    pub shield: SocketAddr,
    pub edge: SocketAddr,
    children: Vec<(String, Child)>,
}

impl Stack {
    pub fn start(options: StackOptions) -> Stack {
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let mut stack = Stack {
            dir: tempfile::tempdir().expect("tempdir"),
            options,
            origin: loopback(free_port()),
            shield: loopback(free_port()),
            edge: loopback(free_port()),
            children: Vec::new(),
        };
        let config = stack.write_config("config.yaml", stack.edge);
        stack.spawn(Tier::Origin, &config, "origin", stack.origin);
        stack.spawn(Tier::Shield, &config, "shield", stack.shield);
        stack.spawn(Tier::Edge, &config, "edge", stack.edge);
        stack
    }

    /// Starts one more edge-pop in front of the same shield, with an empty cache.
    pub fn start_edge(&mut self) -> SocketAddr {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let name = format!("edge-{}", addr.port());
        let config = self.write_config(&format!("{name}.yaml"), addr);
        self.spawn(Tier::Edge, &config, &name, addr);
        addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.edge)
    }

    /// The config file the stack runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// What a process has logged so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn write_config(&self, file: &str, edge: SocketAddr) -> PathBuf {
        let o = &self.options;
        let backend = match &o.backend {
            Backend::Local(root) => format!("    local:\n      root: {}\n", root.display()),
            Backend::S3 { endpoint, bucket } => format!(
                "    s3:\n      endpoint: {endpoint}\n      bucket: {bucket}\n      allow_http: true\n"
            ),
        };
        let text = format!(
            "origin:\n  listen: {origin}\n  timeout: {timeout}\n  backend:\n{backend}\
             shield:\n  listen: {shield}\n  origin: {shield_origin}\n  threads: 2\n  grace_period: 0s\n  upstream_timeout: 10s\n  cache:\n    memory: {memory}\n    max_object: {max_object}\n\
             edge:\n  listen: {edge}\n  shields: [{shield}]\n  threads: 2\n  grace_period: 0s\n  upstream_timeout: 10s\n  cache:\n    memory: {memory}\n    max_object: {max_object}\n\
             routes:\n  - prefix: /private/\n    ttl: 1h\n    auth: true\n  - prefix: /nocache/\n    ttl: 1h\n    cache: false\n  - prefix: /\n    ttl: 1h\n",
            origin = self.origin,
            timeout = o.origin_timeout,
            shield = self.shield,
            shield_origin = o.shield_origin.unwrap_or(self.origin),
            memory = o.memory,
            max_object = o.max_object,
        );
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn spawn(&mut self, tier: Tier, config: &Path, name: &str, addr: SocketAddr) {
        let log =
            std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log file");
        let mut command = Command::new(binary(tier));
        command
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("AWS_ACCESS_KEY_ID", crate::s3::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", crate::s3::SECRET_KEY)
            .env_remove("AWS_SESSION_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", tier.binary()));
        self.children.push((name.to_owned(), child));
        let index = self.children.len() - 1;
        eventually(&format!("{name} listening on {addr}"), || {
            if let Ok(Some(status)) = self.children[index].1.try_wait() {
                panic!(
                    "{name} exited with {status} before listening:\n{}",
                    self.log(name)
                );
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        });
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The path of a workspace binary, built (once per test process) if needed.
pub fn binary(tier: Tier) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace)
            .args([
                "build",
                "--quiet",
                "-p",
                "origin-adapter",
                "-p",
                "shield",
                "-p",
                "edge-pop",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
        // Tests run from target/<profile>/deps/; binaries sit one folder up.
        let exe = std::env::current_exe().expect("test executable");
        exe.parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_owned()
    });
    dir.join(tier.binary())
}
