//! A caching proxy tier as a value. `build` does everything that can fail before serving: it
//! opens the cache (rebuilding the disk index) and binds the traffic and admin listeners, so
//! port 0 works and `listen` tells the ports got. Then the tier either runs as the process
//! (`run`: Pingora's server until SIGTERM, gracefully within the grace period, or SIGINT, at
//! once) or on threads of its own inside a process that goes on (`spawn`, for tests).
//!
//! With a TLS listener (the edge's HTTPS), `build` also reads and checks its certificates
//! (`tls`), so a bad file is a start-up error. Every tier installs its SIGHUP handler here,
//! before it says it listens: SIGHUP reloads the certificates and never ends the process.
//!
//! Pingora binds listeners itself when its services start, from an address, unless its table
//! of listening sockets (by address) already holds one: that is how a graceful upgrade hands
//! sockets to the new process. Each service here puts the socket bound for it into that table
//! as it starts, so Pingora serves on it, and a graceful upgrade (SIGQUIT) still hands it on.

use crate::admin::ProxyAdmin;
use crate::admission::{Gate, TierTrust};
use crate::phases::TierProxy;
use crate::runtime_dir;
use crate::storage;
use crate::tls::{CertError, Hangup, Reloader, TlsListener};
use async_trait::async_trait;
use cdn_cache::HybridStorage;
use cdn_config::{Config, Listen, ProxyConfig, Routes};
use cdn_http::Secret;
use cdn_observe::{Metrics, Tier};
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::server::{Fds, ListenFds, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::Service;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Bytes a client connection may hold in the kernel not yet sent (`TCP_NOTSENT_LOWAT`, which
/// the accepted sockets take from their listener). Without a bound, each stalled client pins
/// as much of a response as the send buffer's autotuning allows (about 240 KiB each on
/// loopback); ten thousand of them took the host's TCP memory past its limit, and the kernel
/// then reset healthy connections as they closed. Data in flight to a client that reads is
/// not counted, so fast clients are not slowed by it.
const UNSENT_PER_CONNECTION: u32 = 64 * 1024;

/// Bounds the unsent bytes of every connection `listener` accepts.
fn bound_unsent(listener: &TcpListener) -> std::io::Result<()> {
    socket2::SockRef::from(listener).set_tcp_notsent_lowat(UNSENT_PER_CONNECTION)
}

/// Bytes the TLS listener's sockets buffer before a write: one full TLS record plus its
/// overhead, so a small response's records leave in one send.
const TLS_WRITE_BUFFER: usize = 16 * 1024 + 512;

/// Why a tier could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file the config names (a key, a secret) cannot be used.
    #[error("{0}")]
    Config(String),
    #[error("cannot open the cache: {0}")]
    Cache(#[source] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A certificate or key file of the TLS listener; `section` is the tier's config section.
    #[error("bad TLS certificate: field `{section}.{}` ({}): {}", .error.field(), .error.path.display(), .error.kind)]
    Tls {
        section: &'static str,
        #[source]
        error: CertError,
    },
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(#[source] std::io::Error),
    /// The descriptor limit (raised to the hard limit) is below what the cache may need.
    #[error("the open-file limit is {have}, and this tier's cache may need {need} descriptors (one per disk segment): raise the hard limit (LimitNOFILE=, ulimit -Hn) or make `cache.disk.size` smaller")]
    Descriptors { have: u64, need: u64 },
}

/// A tier built and bound, not yet serving.
pub struct ProxyTier {
    tier: Tier,
    server: Server,
    listen: Listen,
    storage: &'static HybridStorage,
}

impl ProxyTier {
    /// Builds `tier` from its settings, with `gate` deciding what only this tier checks and
    /// `trust` the secrets it requires and presents.
    pub fn build(
        tier: Tier,
        settings: &ProxyConfig,
        routes: &Routes,
        gate: impl Gate,
        trust: TierTrust,
    ) -> Result<ProxyTier, StartError> {
        let hangup = Hangup::install().map_err(StartError::Signal)?;
        let gate: Arc<dyn Gate> = Arc::new(gate);
        // Certificates first: they are quick to check, the disk index may not be.
        let tls = match (settings.listen.tls, &settings.tls) {
            (Some(addr), Some(config)) => {
                let tls = TlsListener::load(config).map_err(|error| StartError::Tls {
                    section: tier.label(),
                    error,
                })?;
                tracing::info!(
                    tier = tier.name(),
                    names = %tls.describe(),
                    "TLS certificates loaded"
                );
                Some((addr, tls))
            }
            _ => None,
        };
        let (have, hard) = storage::raise_descriptor_limit();
        let need = storage::descriptors_needed(&settings.cache);
        if have < need {
            return Err(StartError::Descriptors { have, need });
        }
        if have < need + storage::FOR_CONNECTIONS {
            tracing::warn!(
                limit = have,
                cache = need,
                "few descriptors left for connections once the disk cache is full: raise the open-file limit"
            );
        }
        tracing::debug!(limit = have, hard, need, "descriptor limit");
        let storage = storage::open(&settings.cache).map_err(StartError::Cache)?;
        // Non-blocking, as the async listener Pingora makes of it needs.
        let bind = |addr: SocketAddr| {
            TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| StartError::Listen { addr, source })
        };
        let traffic = bind(settings.listen.traffic)?;
        let secure = tls.as_ref().map(|(addr, _)| bind(*addr)).transpose()?;
        for listener in std::iter::once(&traffic).chain(&secure) {
            bound_unsent(listener).map_err(|source| StartError::Listen {
                addr: listener.local_addr().unwrap_or(settings.listen.traffic),
                source,
            })?;
        }
        let admin = settings.listen.admin.map(bind).transpose()?;
        let local = |l: &TcpListener| l.local_addr().expect("a bound listener");
        let listen = Listen {
            traffic: local(&traffic),
            tls: secure.as_ref().map(local),
            admin: admin.as_ref().map(local),
        };

        let grace = settings.grace_period.as_secs();
        let runtime = runtime_dir::private().map_err(StartError::Config)?;
        let conf = ServerConf {
            threads: settings.threads,
            grace_period_seconds: Some(grace),
            graceful_shutdown_timeout_seconds: Some(grace.max(1)),
            upgrade_sock: runtime_dir::upgrade_socket(&runtime, tier.name())
                .display()
                .to_string(),
            // Written only by a daemonized server, which a tier never is.
            pid_file: runtime
                .join(format!("{}.pid", tier.name()))
                .display()
                .to_string(),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();
        let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new(tier)));
        let proxy = TierProxy::new(
            tier,
            settings,
            routes.clone(),
            gate.clone(),
            trust,
            storage,
            metrics,
        );
        let upstreams = proxy.upstreams();
        let health = proxy.health_checks(settings.health_check);
        let mut service =
            pingora::proxy::http_proxy_service_with_name(&server.configuration, proxy, tier.name());
        // An HTTP/2 connection with no stream open is closed after the idle timeout (the
        // HTTP/1.1 one is set per request, in `early_request_filter`).
        let mut options = pingora::apps::HttpServerOptions::default();
        options.h2_idle_timeout = Some(settings.idle_timeout);
        if let Some(app) = service.app_logic_mut() {
            app.server_options = Some(options);
        }
        service.add_tcp(&listen.traffic.to_string());
        if let (Some(addr), Some((_, tls))) = (listen.tls, &tls) {
            // rustls writes each record it seals straight through: with Pingora's default
            // one-MSS write buffer a small response's header and body records go out in two
            // `sendto`s (two packets). A buffer of one full record takes both, sent at the
            // response's flush (benches/README.md, the TLS profile).
            let buffers = L4BufferSettings::default().write(TLS_WRITE_BUFFER);
            service.add_listener(
                ListenerConfig::tcp(addr.to_string())
                    .tls(tls.settings())
                    .l4_buffer(buffers),
            );
        }
        server.add_service(PreBound {
            inner: service,
            sockets: [Some(traffic), secure].into_iter().flatten().collect(),
        });
        server.add_service(background_service(
            &format!("{} reload", tier.name()),
            Reloader::new(tier, hangup, tls.as_ref().map(|(_, tls)| tls)),
        ));
        server.add_service(background_service(
            &format!("{} health checks", tier.name()),
            health,
        ));
        if let (Some(admin), Some(socket)) = (listen.admin, admin) {
            let app = ProxyAdmin {
                metrics,
                storage,
                upstreams,
                gate,
            };
            let name = format!("{} admin", tier.name());
            let mut service = pingora::services::listening::Service::new(name, app);
            service.add_tcp(&admin.to_string());
            server.add_service(PreBound {
                inner: service,
                sockets: vec![socket],
            });
        }
        tracing::info!(
            tier = tier.name(),
            %listen,
            upstreams = ?settings.upstreams,
            memory = settings.cache.memory_bytes,
            "ready"
        );
        Ok(ProxyTier {
            tier,
            server,
            listen,
            storage,
        })
    }

    /// Runs `task` beside the proxy for as long as the tier serves (it is told when to stop).
    pub fn add_background<T: BackgroundService + Send + Sync + 'static>(
        &mut self,
        name: &str,
        task: T,
    ) {
        self.server.add_service(background_service(name, task));
    }

    /// Where the tier listens, with the ports it got.
    pub fn listen(&self) -> Listen {
        self.listen
    }

    /// Serves as the process: until SIGTERM (requests in flight finish within the grace
    /// period), SIGINT (at once) or SIGQUIT (a graceful upgrade: the listening sockets go to
    /// the new process). SIGHUP reloads the TLS certificates.
    pub fn run(self) {
        self.server.run(RunArgs::default());
    }

    /// Serves on threads of its own until the returned handle is stopped or dropped.
    pub fn spawn(self) -> RunningTier {
        let (listen, tier, storage) = (self.listen, self.tier, self.storage);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let server = self.server;
        let thread = std::thread::Builder::new()
            .name(format!("{} server", tier.label()))
            .spawn(move || {
                server.run(RunArgs {
                    shutdown_signal: Box::new(StopSignal(stopped)),
                })
            })
            .expect("spawn a server thread");
        RunningTier {
            listen,
            storage,
            stop,
            thread: Some(thread),
        }
    }
}

/// The secrets `tier` requires and presents, read from the files `config.trust` names: the
/// edge presents the first; the shield requires the first and presents the second.
pub fn tier_trust(tier: Tier, config: &Config) -> Result<TierTrust, StartError> {
    let behind = tier != Tier::Edge;
    let Some(trust) = &config.trust else {
        return Ok(TierTrust {
            behind,
            ..TierTrust::default()
        });
    };
    let read = |field: &str, path: &std::path::Path| {
        Secret::read(path).map_err(|e| StartError::Config(format!("trust.{field}: {e}")))
    };
    Ok(match tier {
        Tier::Edge => TierTrust {
            accepts: None,
            presents: Some(read("edge_to_shield", &trust.edge_to_shield)?),
            behind,
        },
        Tier::Shield => TierTrust {
            accepts: Some(read("edge_to_shield", &trust.edge_to_shield)?),
            presents: Some(read("shield_to_origin", &trust.shield_to_origin)?),
            behind,
        },
        Tier::Origin => TierTrust {
            accepts: Some(read("shield_to_origin", &trust.shield_to_origin)?),
            presents: None,
            behind,
        },
    })
}

/// A tier serving in-process. Dropping it stops it, as `stop` does.
pub struct RunningTier {
    listen: Listen,
    storage: &'static HybridStorage,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl RunningTier {
    pub fn listen(&self) -> Listen {
        self.listen
    }

    /// Stops as SIGTERM stops the process: no new connections, requests in flight finish
    /// within the grace period, then every task of the tier ends (within the graceful shutdown
    /// timeout). When this returns its listeners are closed and its cache is let go: the
    /// memory tier emptied, the disk tier's files closed (they stay on disk).
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
            self.storage.close();
        }
    }
}

impl Drop for RunningTier {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The stop signal of an in-process tier.
struct StopSignal(tokio::sync::watch::Receiver<bool>);

#[async_trait]
impl ShutdownSignalWatch for StopSignal {
    async fn recv(&self) -> ShutdownSignal {
        let mut stopped = self.0.clone();
        let _ = stopped.wait_for(|stop| *stop).await;
        ShutdownSignal::GracefulTerminate
    }
}

/// A Pingora service whose listening sockets were bound before it starts: it puts each in the
/// server's table under its address as it starts, so Pingora serves on them instead of
/// binding (a socket already there, handed over by a graceful upgrade, is kept instead).
struct PreBound<S> {
    inner: S,
    sockets: Vec<TcpListener>,
}

#[async_trait]
impl<S: Service> Service for PreBound<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        let table = fds.unwrap_or_else(|| Arc::new(parking_lot::Mutex::new(Fds::new())));
        for socket in self.sockets.drain(..) {
            let addr = socket.local_addr().expect("a bound listener").to_string();
            let mut table = table.lock();
            if table.get(&addr).is_none() {
                table.add(addr, socket.into_raw_fd());
            }
        }
        self.inner
            .start_service(Some(table), shutdown, listeners_per_fd)
            .await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }
}
