//! Reloading a tier's certificates while it serves, without dropping a connection: on SIGHUP,
//! and when a certificate or key file changes. One background service per tier polls both
//! twice a second; a reload reads every file again and swaps the whole set in, or, if any file
//! is bad, logs why and keeps serving the set in use. One line is logged per reload, with the
//! names served (never key material).
//!
//! SIGHUP's default action ends the process, and Pingora handles only SIGTERM, SIGINT and
//! SIGQUIT; so every proxy tier installs a SIGHUP handler when it is built (before it says it
//! listens), TLS or not: a tier without certificates logs the signal and goes on. The handler
//! only raises a flag; several tiers in one process (tests) each get their own.
//!
//! A file counts as changed when its size, modification or change time, device or inode
//! differ from the last look: that covers a rewrite in place and a new file renamed over the
//! old one (or a symlink moved), as deployment tools do. If an operator replaces the
//! certificate and the key one after the other, a look in between may see a key that does not
//! match yet: that reload fails, and the next change, the second file, succeeds.

use super::{CertStore, TlsListener};
use async_trait::async_trait;
use cdn_config::CertificateFiles;
use cdn_observe::Tier;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the files and the SIGHUP flag are looked at.
const POLL: Duration = Duration::from_millis(500);

/// This tier's SIGHUP handler: while it lives, SIGHUP raises its flag instead of ending the
/// process. Dropping it removes the handler's action (the signal stays caught, and ignored).
pub(crate) struct Hangup {
    flag: Arc<AtomicBool>,
    id: signal_hook::SigId,
}

impl Hangup {
    pub(crate) fn install() -> std::io::Result<Hangup> {
        let flag = Arc::new(AtomicBool::new(false));
        let id = signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&flag))?;
        Ok(Hangup { flag, id })
    }

    /// Whether SIGHUP arrived since the last call.
    fn take(&self) -> bool {
        self.flag.swap(false, Ordering::SeqCst)
    }
}

impl Drop for Hangup {
    fn drop(&mut self) {
        signal_hook::low_level::unregister(self.id);
    }
}

/// What the certificate and key files looked like: size, times, device and inode of each,
/// `None` where a file could not be looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamps(Vec<Option<Stamp>>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamps {
    /// Looks at every file now (following symlinks). Taken before the files are read, so a
    /// change made while they are read is seen at the next look.
    pub(super) fn take(files: &[CertificateFiles]) -> Stamps {
        let stamp = |path: &Path| {
            std::fs::metadata(path).ok().map(|m| Stamp {
                dev: m.dev(),
                ino: m.ino(),
                len: m.len(),
                modified: (m.mtime(), m.mtime_nsec()),
                changed: (m.ctime(), m.ctime_nsec()),
            })
        };
        Stamps(
            files
                .iter()
                .flat_map(|f| [stamp(&f.cert), stamp(&f.key)])
                .collect(),
        )
    }
}

/// The tier's background service that reloads its certificates (if it has any) on SIGHUP and
/// when their files change.
pub(crate) struct Reloader {
    tier: Tier,
    hangup: Hangup,
    /// The certificates, and how their files looked when they were read.
    tls: Option<(Arc<CertStore>, Stamps)>,
}

impl Reloader {
    pub(crate) fn new(tier: Tier, hangup: Hangup, tls: Option<&TlsListener>) -> Self {
        let tls = tls.map(|t| (Arc::clone(&t.store), t.stamps.clone()));
        Reloader { tier, hangup, tls }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let tier = self.tier.name();
        let mut seen = self.tls.as_ref().map(|(_, stamps)| stamps.clone());
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let hangup = self.hangup.take();
            let (Some((store, _)), Some(seen)) = (&self.tls, seen.as_mut()) else {
                if hangup {
                    tracing::info!(tier, "SIGHUP: no TLS certificates to reload");
                }
                continue;
            };
            // A few small files on this service's own thread: blocking here blocks nothing
            // that serves.
            let now = Stamps::take(store.files());
            if !hangup && now == *seen {
                continue;
            }
            *seen = now;
            let trigger = if hangup { "SIGHUP" } else { "file change" };
            match store.reload() {
                Ok(()) => tracing::info!(
                    tier,
                    trigger,
                    names = %store.describe(),
                    "TLS certificates reloaded"
                ),
                Err(e) => tracing::warn!(
                    tier,
                    trigger,
                    error = %e,
                    "TLS certificates not reloaded; still serving the previous ones"
                ),
            }
        }
    }
}
