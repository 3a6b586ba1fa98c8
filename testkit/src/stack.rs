//! An origin-adapter → shield → edge-pop chain (plus any extra edges), wired by config files
//! written for the test, run in-process (the default: fast, for behaviour) or as real processes
//! of the built binaries (for signals, crashes, logs and memory).
//!
//! Every member binds port 0 and the stack reads back the ports it got: in-process from the
//! tier's value, from a process the one line it prints on stdout when it listens. Members
//! start in order, each config naming the real addresses of those before it. A member started
//! again (after `stop` or `restart`) comes back on the ports it had, so the tiers in front of
//! it need no new config.

use crate::tls::TlsFiles;
use crate::{eventually, S3Server};
use cdn_config::{Config, Listen};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

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

/// How the members run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Tiers as values inside the test process, each on threads of its own.
    InProcess,
    /// The real binaries as child processes, each logging to a file of its own.
    Processes,
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub mode: Mode,
    pub backend: Backend,
    /// `origin.timeout`.
    pub origin_timeout: &'static str,
    /// Point the shield somewhere other than the origin-adapter (e.g. a closed port).
    pub shield_origin: Option<SocketAddr>,
    /// `upstream_timeout` of the shields and edges.
    pub upstream_timeout: &'static str,
    /// `send_timeout` of the shields and edges.
    pub send_timeout: &'static str,
    /// `idle_timeout` of the shields and edges.
    pub idle_timeout: &'static str,
    /// `max_waiters` of the shields and edges.
    pub max_waiters: usize,
    pub memory: &'static str,
    pub max_object: &'static str,
    /// Disk tier size for the shield and each edge (`None`: memory only).
    pub disk: Option<&'static str>,
    /// Where the tiers' cache folders go (one per member, by name); default: the stack's own
    /// temporary folder.
    pub cache_root: Option<PathBuf>,
    /// `logging.format`: "text" or "json".
    pub log_format: &'static str,
    /// Token key ids the edge accepts (a key pair is made for each of `KEY_IDS` either way).
    pub token_keys: &'static [&'static str],
    /// Whether the edge accepts API keys (it then reads the entitlement document from the
    /// origin as it starts, and every `entitlements_ttl`).
    pub api_keys: bool,
    /// `auth.api_keys.ttl` and `negative_ttl`.
    pub entitlements_ttl: &'static str,
    pub entitlements_negative_ttl: &'static str,
    /// `auth.api_keys.max_stale`.
    pub entitlements_max_stale: &'static str,
    /// Whether the tiers require their secrets (`trust`).
    pub trust: bool,
    /// A TLS listener on the edge (and on every extra edge), serving these certificates.
    pub tls: Option<EdgeTls>,
    /// `RUST_LOG` of processes.
    pub rust_log: &'static str,
}

/// The edge's `tls` section: its certificates, in order (the first is the default).
#[derive(Debug, Clone)]
pub struct EdgeTls {
    pub certificates: Vec<TlsFiles>,
    /// ALPN offers HTTP/2 besides HTTP/1.1.
    pub http2: bool,
}

impl EdgeTls {
    /// These certificates, with HTTP/2 offered.
    pub fn new(certificates: Vec<TlsFiles>) -> EdgeTls {
        EdgeTls {
            certificates,
            http2: true,
        }
    }
}

/// The token key ids every stack makes a key pair for.
pub const KEY_IDS: [&str; 3] = ["k1", "k2", "k3"];

/// Where the entitlement document is, in the origin's tree.
pub const ENTITLEMENTS: &str = "/_cdn/entitlements.json";

impl StackOptions {
    pub fn new(backend: Backend) -> Self {
        StackOptions {
            mode: Mode::InProcess,
            backend,
            origin_timeout: "5s",
            shield_origin: None,
            upstream_timeout: "10s",
            send_timeout: "30s",
            idle_timeout: "60s",
            max_waiters: 4096,
            memory: "512MiB",
            max_object: "128MiB",
            disk: Some("512MiB"),
            cache_root: None,
            log_format: "text",
            token_keys: &["k1"],
            api_keys: false,
            entitlements_ttl: "5m",
            entitlements_negative_ttl: "30s",
            entitlements_max_stale: "1h",
            trust: true,
            tls: None,
            rust_log: "info",
        }
    }

    /// The same stack as real processes.
    pub fn processes(mut self) -> Self {
        self.mode = Mode::Processes;
        self
    }
}

/// A running stack.
pub struct Stack {
    dir: tempfile::TempDir,
    options: StackOptions,
    pub origin: SocketAddr,
    pub shield: SocketAddr,
    pub edge: SocketAddr,
    /// The edge's TLS listener, when `StackOptions::tls` asked for one.
    pub edge_tls: Option<SocketAddr>,
    /// Admin listeners (`/metrics`, `/healthz`, `/readyz`) of the origin, shield and edge.
    pub origin_admin: SocketAddr,
    pub shield_admin: SocketAddr,
    pub edge_admin: SocketAddr,
    members: Vec<Member>,
}

/// One member of the stack and how to start it again.
struct Member {
    name: String,
    tier: Tier,
    /// Its config, naming the ports it got, once it has started.
    config: PathBuf,
    listen: Listen,
    running: Option<Running>,
}

enum Running {
    Origin(origin_adapter::RunningAdapter),
    Proxy(cdn_proxy::RunningTier),
    Process(Child),
}

/// What a member's config says of the addresses around it; port 0 where not known yet.
#[derive(Clone)]
struct Wiring {
    origin: Listen,
    shield: Listen,
    edge: Listen,
    /// The edge's shields, when not just `shield`.
    shields: Vec<SocketAddr>,
}

fn any_port() -> Listen {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    Listen {
        traffic: loopback,
        tls: None,
        admin: Some(loopback),
    }
}

impl Stack {
    /// The three tiers with the shield's misses going to `origin` (a scripted origin standing
    /// in for origin-adapter), and the empty folder origin-adapter is given meanwhile.
    pub fn before(origin: &crate::ScriptedOrigin) -> (tempfile::TempDir, Stack) {
        let unused = tempfile::tempdir().expect("tempdir");
        let mut options = StackOptions::new(Backend::Local(unused.path().to_owned()));
        options.shield_origin = Some(origin.addr);
        (unused, Stack::start(options))
    }

    pub fn start(options: StackOptions) -> Stack {
        let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("keys")).expect("keys dir");
        for id in KEY_IDS {
            let (private, public) = cdn_auth::token::generate_key_pair().expect("a key pair");
            std::fs::write(dir.path().join(format!("keys/{id}.key.pem")), private).expect("key");
            std::fs::write(dir.path().join(format!("keys/{id}.pub.pem")), public).expect("key");
        }
        for link in ["edge-to-shield", "shield-to-origin"] {
            let secret = cdn_auth::keys::new_key();
            std::fs::write(dir.path().join(format!("keys/{link}")), secret).expect("secret");
        }
        let mut stack = Stack {
            dir,
            options,
            origin: unbound,
            shield: unbound,
            edge: unbound,
            edge_tls: None,
            origin_admin: unbound,
            shield_admin: unbound,
            edge_admin: unbound,
            members: Vec::new(),
        };
        let mut wiring = Wiring {
            origin: any_port(),
            shield: any_port(),
            edge: stack.edge_any_port(),
            shields: Vec::new(),
        };
        wiring.origin = stack.add(Tier::Origin, "origin", wiring.clone());
        wiring.shield = stack.add(Tier::Shield, "shield", wiring.clone());
        wiring.edge = stack.add(Tier::Edge, "edge", wiring.clone());
        let admin = |l: Listen| l.admin.expect("an admin listener");
        (stack.origin, stack.origin_admin) = (wiring.origin.traffic, admin(wiring.origin));
        (stack.shield, stack.shield_admin) = (wiring.shield.traffic, admin(wiring.shield));
        (stack.edge, stack.edge_admin) = (wiring.edge.traffic, admin(wiring.edge));
        stack.edge_tls = wiring.edge.tls;
        stack
    }

    /// Where a new edge listens: any port, with a TLS listener if the options ask for one.
    fn edge_any_port(&self) -> Listen {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Listen {
            tls: self.options.tls.as_ref().map(|_| loopback),
            ..any_port()
        }
    }

    /// Starts one more edge-pop in front of the same shield, with an empty cache; returns its
    /// traffic address. It is named `edge-2`, `edge-3`, …; its admin listener is
    /// `admin_of(that name)`.
    pub fn start_edge(&mut self) -> SocketAddr {
        let shield = self.shield;
        self.start_edge_before(&[shield])
    }

    /// Starts one more edge-pop listing `shields`, with an empty cache; returns its traffic
    /// address. Named as `start_edge` names them.
    pub fn start_edge_before(&mut self, shields: &[SocketAddr]) -> SocketAddr {
        let name = format!("edge-{}", self.members.len() - 1);
        let wiring = Wiring {
            origin: self.listen_of("origin"),
            shield: self.listen_of("shield"),
            edge: self.edge_any_port(),
            shields: shields.to_vec(),
        };
        self.add(Tier::Edge, &name, wiring).traffic
    }

    /// Starts one more shield in front of the same origin, with an empty cache of its own;
    /// returns its traffic address. It is named `shield-2`, `shield-3`, …; no edge uses it
    /// until one is started with `start_edge_before`.
    pub fn start_shield(&mut self) -> SocketAddr {
        let shields = self
            .members
            .iter()
            .filter(|m| m.tier == Tier::Shield)
            .count();
        let name = format!("shield-{}", shields + 1);
        let wiring = Wiring {
            origin: self.listen_of("origin"),
            shield: any_port(),
            edge: self.listen_of("edge"),
            shields: Vec::new(),
        };
        self.add(Tier::Shield, &name, wiring).traffic
    }

    /// The admin listener of a member: "origin", "shield", "edge", or an extra edge's name.
    pub fn admin_of(&self, name: &str) -> SocketAddr {
        self.listen_of(name).admin.expect("an admin listener")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.edge)
    }

    /// A token signed by key `key_id` for `subject`, with these space-separated scopes,
    /// expiring `ttl_secs` from now (negative: already expired).
    pub fn mint(&self, key_id: &str, subject: &str, scope: &str, ttl_secs: i64) -> String {
        let pem = std::fs::read(self.dir.path().join(format!("keys/{key_id}.key.pem")))
            .expect("a key made at start");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let claims = cdn_auth::Claims {
            sub: subject.into(),
            exp: now.saturating_add_signed(ttl_secs),
            scope: scope.into(),
            iat: Some(now),
        };
        cdn_auth::token::mint(key_id, &pem, &claims).expect("mint a token")
    }

    /// The header a request to `addr` must carry to come from the tier in front of it: the
    /// edges' secret at the shield, the shield's at the origin-adapter, none at an edge.
    pub fn tier_header(&self, addr: SocketAddr) -> Vec<(&'static str, String)> {
        let link = if addr == self.shield {
            "edge-to-shield"
        } else if addr == self.origin {
            "shield-to-origin"
        } else {
            return Vec::new();
        };
        let secret = std::fs::read_to_string(self.dir.path().join(format!("keys/{link}")))
            .expect("a secret made at start");
        vec![("cdn-tier-secret", secret)]
    }

    /// Stops a member: in-process at once, a process by SIGKILL. `start_again` brings it back.
    pub fn stop(&mut self, name: &str) {
        let member = self.member_mut(name);
        match member.running.take() {
            Some(Running::Origin(adapter)) => adapter.stop(),
            Some(Running::Proxy(tier)) => tier.stop(),
            Some(Running::Process(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            None => {}
        }
    }

    /// Starts a stopped member again with the same config, on the same ports.
    pub fn start_again(&mut self, name: &str) {
        let index = self.index_of(name);
        let (tier, config) = (self.members[index].tier, self.members[index].config.clone());
        let (running, listen) = self.launch(tier, name, &config);
        assert_eq!(
            listen, self.members[index].listen,
            "{name} came back elsewhere"
        );
        self.members[index].running = Some(running);
    }

    /// Stops a process with `signal` (e.g. "KILL", "INT", "TERM"), waits for it to exit, then
    /// starts it again with the same config and waits until it listens.
    pub fn restart(&mut self, name: &str, signal: &str) {
        let pid = self.pid(name).to_string();
        let status = Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} {pid}");
        let member = self.member_mut(name);
        let Some(Running::Process(child)) = member.running.as_mut() else {
            unreachable!("pid() checked it is a process")
        };
        eventually(&format!("{name} to exit after SIG{signal}"), || {
            child.try_wait().ok().flatten()
        });
        member.running = None;
        self.start_again(name);
    }

    /// The pid of a member run as a process.
    pub fn pid(&self, name: &str) -> u32 {
        match &self.members[self.index_of(name)].running {
            Some(Running::Process(child)) => child.id(),
            _ => panic!("{name} is not a running process: start the stack with `processes()`"),
        }
    }

    /// What a process has logged so far.
    pub fn log(&self, name: &str) -> String {
        assert_eq!(
            self.options.mode,
            Mode::Processes,
            "logs are kept for processes only: start the stack with `processes()`"
        );
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Requests a process has written to its access log so far.
    pub fn access_count(&self, name: &str) -> usize {
        self.log(name)
            .lines()
            .filter(|l| l.contains(" access: request"))
            .count()
    }

    /// Resident memory of a running process now, in bytes (VmRSS).
    pub fn rss(&self, name: &str) -> u64 {
        self.status_kib(name, "VmRSS:") * 1024
    }

    fn status_kib(&self, name: &str, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(name)))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("a memory figure")
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

    /// The disk cache folder of a proxy member ("shield", "edge", or an extra edge's name).
    pub fn cache_dir(&self, name: &str) -> PathBuf {
        match &self.options.cache_root {
            Some(root) => root.join(name),
            None => self.dir.path().join("cache").join(name),
        }
    }

    /// Writes `name`'s config, starts it, and writes its config again with the ports it got,
    /// for when it is started again.
    fn add(&mut self, tier: Tier, name: &str, wiring: Wiring) -> Listen {
        let config = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&config, self.config_text(name, wiring.clone())).expect("write config");
        let (running, listen) = self.launch(tier, name, &config);
        let mut bound = wiring.clone();
        match tier {
            Tier::Origin => bound.origin = listen,
            Tier::Shield => bound.shield = listen,
            Tier::Edge => bound.edge = listen,
        }
        std::fs::write(&config, self.config_text(name, bound)).expect("write config");
        self.members.push(Member {
            name: name.to_owned(),
            tier,
            config,
            listen,
            running: Some(running),
        });
        listen
    }

    fn launch(&self, tier: Tier, name: &str, config: &Path) -> (Running, Listen) {
        match self.options.mode {
            Mode::InProcess => start_in_process(tier, config),
            Mode::Processes => self.start_process(tier, name, config),
        }
    }

    /// Starts the binary and waits for its "listening on" line.
    fn start_process(&self, tier: Tier, name: &str, config: &Path) -> (Running, Listen) {
        let log_path = self.log_path(name);
        let logged_before = std::fs::read_to_string(&log_path).map_or(0, |l| l.len());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let mut child = Command::new(binary(tier))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", self.options.rust_log)
            .env("AWS_ACCESS_KEY_ID", crate::s3::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", crate::s3::SECRET_KEY)
            .env_remove("AWS_SESSION_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", tier.binary()));
        let announced = format!("{}: listening on ", tier.binary());
        let listen = eventually(&format!("{name} to listen"), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{name} exited with {status} before listening:\n{}",
                    self.log(name)
                );
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let line = log
                .get(logged_before..)?
                .lines()
                .find_map(|l| l.strip_prefix(&announced))?;
            Some(line.parse::<Listen>().expect("a listen line"))
        });
        (Running::Process(child), listen)
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn config_text(&self, name: &str, w: Wiring) -> String {
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
                self.cache_dir(name).display()
            ),
            None => String::new(),
        };
        let admin = |l: Listen| l.admin.expect("an admin listener");
        let edge_tls = match (&o.tls, w.edge.tls) {
            (Some(tls), Some(listen)) => {
                let mut text = format!(
                    "  tls:\n    listen: {listen}\n    http2: {}\n    certificates:\n",
                    tls.http2
                );
                for files in &tls.certificates {
                    text += &format!(
                        "      - cert: {}\n        key: {}\n",
                        files.cert.display(),
                        files.key.display()
                    );
                }
                text
            }
            _ => String::new(),
        };
        // Only the edge (shield) being started reads the edge (shield) section: it names its
        // own cache.
        let edge_cache = if name.starts_with("edge") {
            name
        } else {
            "edge"
        };
        let shield_cache = if name.starts_with("shield") {
            name
        } else {
            "shield"
        };
        let shields = if w.shields.is_empty() {
            w.shield.traffic.to_string()
        } else {
            w.shields
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "origin:\n  listen: {origin}\n  admin: {origin_admin}\n  timeout: {timeout}\n  backend:\n{backend}\
             shield:\n  listen: {shield}\n  admin: {shield_admin}\n  origin: {shield_upstream}\n  threads: 2\n  grace_period: 0s\n  upstream_timeout: {upstream_timeout}\n  send_timeout: {send_timeout}\n  idle_timeout: {idle_timeout}\n  max_waiters: {max_waiters}\n  cache:\n    memory: {memory}\n    max_object: {max_object}\n{shield_disk}\
             edge:\n  listen: {edge}\n  admin: {edge_admin}\n{edge_tls}  shields: [{shields}]\n  threads: 2\n  grace_period: 0s\n  upstream_timeout: {upstream_timeout}\n  send_timeout: {send_timeout}\n  idle_timeout: {idle_timeout}\n  max_waiters: {max_waiters}\n  cache:\n    memory: {memory}\n    max_object: {max_object}\n{edge_disk}\
             logging:\n  format: {log_format}\n\
             auth:\n  token_keys:\n{token_keys}{api_keys}\
             {trust}\
             routes:\n  - prefix: /private/\n    ttl: 1h\n    auth: true\n\
             \x20 - prefix: /npm-private/\n    ttl: 1h\n    auth: true\n    scope: npm\n    source: {{prefix: npm-private}}\n\
             \x20 - prefix: /npm/\n    ttl: 2s\n    scope: npm\n    source: {{prefix: npm}}\n\
             \x20 - prefix: /v2/\n    ttl: 2s\n    auth: true\n    scope: oci\n    source: {{prefix: v2}}\n\
             \x20 - prefix: /limited/\n    ttl: 1h\n    rate_limit:\n      per_client_ip: 40/m\n\
             \x20 - prefix: /metered/\n    ttl: 1h\n    auth: true\n    rate_limit:\n      per_credential: 20/m\n\
             \x20 - prefix: /_cdn/\n    ttl: 1s\n    cache: false\n\
             \x20 - prefix: /sliced/\n    ttl: 1h\n    slice: 8MiB\n\
             \x20 - prefix: /sliced-short/\n    ttl: 1s\n    slice: 64KiB\n\
             \x20 - prefix: /sliced-private/\n    ttl: 1h\n    auth: true\n    slice: 64KiB\n\
             \x20 - prefix: /short/\n    ttl: 1s\n  - prefix: /nocache/\n    ttl: 1h\n    cache: false\n  - prefix: /q/\n    ttl: 1h\n    query: [v]\n  - prefix: /writes/\n    ttl: 1h\n    pass_writes: true\n  - prefix: /forwards-auth/\n    ttl: 1h\n    forward_authorization: true\n  - prefix: /\n    ttl: 1h\n",
            origin = w.origin.traffic,
            origin_admin = admin(w.origin),
            timeout = o.origin_timeout,
            upstream_timeout = o.upstream_timeout,
            send_timeout = o.send_timeout,
            idle_timeout = o.idle_timeout,
            max_waiters = o.max_waiters,
            shield = w.shield.traffic,
            shield_admin = admin(w.shield),
            // Where the shield sends its misses: the origin-adapter, unless the test says.
            shield_upstream = o.shield_origin.unwrap_or(w.origin.traffic),
            edge = w.edge.traffic,
            edge_admin = admin(w.edge),
            memory = o.memory,
            max_object = o.max_object,
            shield_disk = disk(shield_cache),
            edge_disk = disk(edge_cache),
            log_format = o.log_format,
            token_keys = o
                .token_keys
                .iter()
                .map(|id| format!(
                    "    - id: {id}\n      public_key: {}\n",
                    self.dir.path().join(format!("keys/{id}.pub.pem")).display()
                ))
                .collect::<String>(),
            api_keys = if o.api_keys {
                format!(
                    "  api_keys:\n    document: {ENTITLEMENTS}\n    ttl: {}\n    negative_ttl: {}\n    max_stale: {}\n",
                    o.entitlements_ttl, o.entitlements_negative_ttl, o.entitlements_max_stale
                )
            } else {
                String::new()
            },
            trust = if o.trust {
                format!(
                    "trust:\n  edge_to_shield: {}\n  shield_to_origin: {}\n",
                    self.dir.path().join("keys/edge-to-shield").display(),
                    self.dir.path().join("keys/shield-to-origin").display()
                )
            } else {
                String::new()
            },
        )
    }

    fn listen_of(&self, name: &str) -> Listen {
        self.members[self.index_of(name)].listen
    }

    fn index_of(&self, name: &str) -> usize {
        self.members
            .iter()
            .position(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    fn member_mut(&mut self, name: &str) -> &mut Member {
        let index = self.index_of(name);
        &mut self.members[index]
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Front to back, so no tier outlives the one it sends to.
        for name in self
            .members
            .iter()
            .rev()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>()
        {
            self.stop(&name);
        }
    }
}

/// Builds the tier from its config file and runs it on threads of its own.
fn start_in_process(tier: Tier, config: &Path) -> (Running, Listen) {
    let config = Config::load(config).unwrap_or_else(|e| panic!("{e}"));
    match tier {
        Tier::Origin => {
            let credentials = crate::S3Server::credentials();
            let adapter = origin_adapter::OriginAdapter::bind(&config, &credentials)
                .unwrap_or_else(|e| panic!("origin-adapter: {e}"));
            let running = adapter.spawn().expect("start the origin-adapter");
            let listen = running.listen();
            (Running::Origin(running), listen)
        }
        Tier::Shield | Tier::Edge => {
            let built = match tier {
                Tier::Shield => shield::build(&config),
                _ => edge_pop::build(&config),
            };
            let running = built
                .unwrap_or_else(|e| panic!("{}: {e}", tier.binary()))
                .spawn();
            let listen = running.listen();
            (Running::Proxy(running), listen)
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
        let mut build = Command::new(cargo);
        // Cargo describes the test's own package to the test process (CARGO_PKG_NAME,
        // CARGO_MANIFEST_DIR…). Passed on, they would differ from a build started from a shell,
        // and ring's build script reruns when they change, and so everything above it.
        let describes_the_test = |name: &str| {
            name.strip_prefix("CARGO_").is_some_and(|rest| {
                let kinds = [
                    "PKG_",
                    "MANIFEST_",
                    "CRATE_",
                    "BIN_",
                    "PRIMARY_",
                    "TARGET_TMPDIR",
                ];
                kinds.iter().any(|kind| rest.starts_with(kind))
            })
        };
        for (name, _) in std::env::vars_os() {
            if describes_the_test(&name.to_string_lossy()) {
                build.env_remove(name);
            }
        }
        let status = build
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
