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
    /// Disk tier size for the shield and each edge (`None`: memory only).
    pub disk: Option<&'static str>,
    /// `logging.format`: "text" or "json".
    pub log_format: &'static str,
}

impl StackOptions {
    pub fn new(backend: Backend) -> Self {
        StackOptions {
            backend,
            origin_timeout: "5s",
            shield_origin: None,
            memory: "512MiB",
            max_object: "128MiB",
            disk: Some("512MiB"),
            log_format: "text",
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
    /// Admin listeners (`/metrics`, `/healthz`, `/readyz`) of the origin, shield and edge.
    pub origin_admin: SocketAddr,
    pub shield_admin: SocketAddr,
    pub edge_admin: SocketAddr,
    extra_admins: Vec<(String, SocketAddr)>,
    children: Vec<Process>,
}

/// One running binary and how to start it again.
struct Process {
    name: String,
    tier: Tier,
    config: PathBuf,
    addr: SocketAddr,
    child: Child,
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
            origin_admin: loopback(free_port()),
            shield_admin: loopback(free_port()),
            edge_admin: loopback(free_port()),
            extra_admins: Vec::new(),
            children: Vec::new(),
        };
        let config = stack.write_config("config.yaml", stack.edge, stack.edge_admin);
        stack.spawn(Tier::Origin, &config, "origin", stack.origin);
        stack.spawn(Tier::Shield, &config, "shield", stack.shield);
        stack.spawn(Tier::Edge, &config, "edge", stack.edge);
        stack
    }

    /// Starts one more edge-pop in front of the same shield, with an empty cache.
    /// Starts one more edge-pop in front of the same shield, with an empty cache. Its process
    /// is named `edge-<port>`; its admin listener is `admin_of(that name)`.
    pub fn start_edge(&mut self) -> SocketAddr {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let name = format!("edge-{}", addr.port());
        let config = self.write_config(&format!("{name}.yaml"), addr, admin);
        self.spawn(Tier::Edge, &config, &name, addr);
        self.extra_admins.push((name, admin));
        addr
    }

    /// The admin listener of a process: "origin", "shield", "edge", or an extra edge's name.
    pub fn admin_of(&self, name: &str) -> SocketAddr {
        match name {
            "origin" => self.origin_admin,
            "shield" => self.shield_admin,
            "edge" => self.edge_admin,
            other => self
                .extra_admins
                .iter()
                .find(|(n, _)| n == other)
                .map(|(_, a)| *a)
                .expect("known process"),
        }
    }

    /// Kills a process (SIGKILL) and waits for it to exit; `start_again` brings it back.
    pub fn stop(&mut self, name: &str) {
        let index = self.index_of(name);
        let _ = self.children[index].child.kill();
        let _ = self.children[index].child.wait();
    }

    /// Starts a stopped process again with the same config and waits until it listens.
    pub fn start_again(&mut self, name: &str) {
        let index = self.index_of(name);
        let (tier, config) = (
            self.children[index].tier,
            self.children[index].config.clone(),
        );
        self.children[index].child = self.launch(tier, &config, name);
        self.wait_listening(index);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.edge)
    }

    /// The config file the stack runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Requests a process has written to its access log so far.
    pub fn access_count(&self, name: &str) -> usize {
        self.log(name)
            .lines()
            .filter(|l| l.contains(" access: request"))
            .count()
    }

    /// What a process has logged so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn write_config(&self, file: &str, edge: SocketAddr, edge_admin: SocketAddr) -> PathBuf {
        let o = &self.options;
        let backend = match &o.backend {
            Backend::Local(root) => format!("    local:\n      root: {}\n", root.display()),
            Backend::S3 { endpoint, bucket } => format!(
                "    s3:\n      endpoint: {endpoint}\n      bucket: {bucket}\n      allow_http: true\n"
            ),
        };
        let disk = |name: &str| match o.disk {
            Some(size) => format!(
                "    disk:\n      path: {}\n      size: {size}\n",
                self.dir.path().join("cache").join(name).display()
            ),
            None => String::new(),
        };
        let text = format!(
            "origin:\n  listen: {origin}\n  admin: {origin_admin}\n  timeout: {timeout}\n  backend:\n{backend}\
             shield:\n  listen: {shield}\n  admin: {shield_admin}\n  origin: {shield_origin}\n  threads: 2\n  grace_period: 0s\n  upstream_timeout: 10s\n  cache:\n    memory: {memory}\n    max_object: {max_object}\n{shield_disk}\
             edge:\n  listen: {edge}\n  admin: {edge_admin}\n  shields: [{shield}]\n  threads: 2\n  grace_period: 0s\n  upstream_timeout: 10s\n  cache:\n    memory: {memory}\n    max_object: {max_object}\n{edge_disk}\
             logging:\n  format: {log_format}\n\
             routes:\n  - prefix: /private/\n    ttl: 1h\n    auth: true\n  - prefix: /short/\n    ttl: 1s\n  - prefix: /nocache/\n    ttl: 1h\n    cache: false\n  - prefix: /\n    ttl: 1h\n",
            origin = self.origin,
            log_format = o.log_format,
            origin_admin = self.origin_admin,
            shield_admin = self.shield_admin,
            timeout = o.origin_timeout,
            shield = self.shield,
            shield_origin = o.shield_origin.unwrap_or(self.origin),
            memory = o.memory,
            max_object = o.max_object,
            shield_disk = disk("shield"),
            edge_disk = disk(&format!("edge-{}", edge.port())),
        );
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn spawn(&mut self, tier: Tier, config: &Path, name: &str, addr: SocketAddr) {
        let child = self.launch(tier, config, name);
        self.children.push(Process {
            name: name.to_owned(),
            tier,
            config: config.to_owned(),
            addr,
            child,
        });
        self.wait_listening(self.children.len() - 1);
    }

    fn launch(&self, tier: Tier, config: &Path, name: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("log file");
        Command::new(binary(tier))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("AWS_ACCESS_KEY_ID", crate::s3::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", crate::s3::SECRET_KEY)
            .env_remove("AWS_SESSION_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", tier.binary()))
    }

    fn wait_listening(&mut self, index: usize) {
        let (name, addr) = (self.children[index].name.clone(), self.children[index].addr);
        eventually(&format!("{name} listening on {addr}"), || {
            if let Ok(Some(status)) = self.children[index].child.try_wait() {
                panic!(
                    "{name} exited with {status} before listening:\n{}",
                    self.log(&name)
                );
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        });
    }

    fn index_of(&self, name: &str) -> usize {
        self.children
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    pub fn pid(&self, name: &str) -> u32 {
        self.children[self.index_of(name)].child.id()
    }

    /// Stops a process with `signal` (e.g. "KILL", "INT", "TERM"), waits for it to exit, then
    /// starts it again with the same config and waits until it listens.
    pub fn restart(&mut self, name: &str, signal: &str) {
        let index = self.index_of(name);
        let pid = self.children[index].child.id().to_string();
        let status = Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} {pid}");
        eventually(&format!("{name} to exit after SIG{signal}"), || {
            self.children[index].child.try_wait().ok().flatten()
        });
        let (tier, config) = (
            self.children[index].tier,
            self.children[index].config.clone(),
        );
        self.children[index].child = self.launch(tier, &config, name);
        self.wait_listening(index);
    }

    /// Peak resident memory of a running process, in bytes (VmHWM).
    pub fn peak_rss(&self, name: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(name)))
            .expect("proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM");
        kib * 1024
    }

    /// The disk cache folder of a proxy process ("shield", "edge", or an extra edge's name).
    pub fn cache_dir(&self, name: &str) -> PathBuf {
        let folder = match name {
            "shield" => "shield".to_owned(),
            _ => format!("edge-{}", self.children[self.index_of(name)].addr.port()),
        };
        self.dir.path().join("cache").join(folder)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for p in &mut self.children {
            let _ = p.child.kill();
            let _ = p.child.wait();
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
