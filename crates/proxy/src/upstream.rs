//! The upstream selector: which peer a miss goes to, and which ones are alive.
//!
//! Each object has a home upstream, picked by consistent hashing of its cache key (Pingora's
//! ketama ring), so every edge sends a given object to the same shield and the shields' caches
//! do not hold the same objects twice. When the home is down, the next peer on the ring takes
//! over: only the objects of the peer that is gone move. A peer is down from a failed probe or a
//! fresh connection to it that fails, and up again at the first probe it answers; a request
//! that times out waiting on a peer the probes still find up is that peer's slow answer, not
//! its death (it is not retried elsewhere: that would fetch a slow object twice). Probes run every `interval` against every peer
//! ([`HealthChecks`]), so a dead or hung peer is skipped within `interval` plus the probe's
//! timeout, and a recovered one takes its objects back as soon.

use async_trait::async_trait;
use cdn_http::trust::HEALTH_PATH;
use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use pingora::lb::Backend;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::upstreams::peer::HttpPeer;
use pingora_ketama::{Bucket, Continuum};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Upstreams {
    peers: Vec<SocketAddr>,
    ring: Continuum,
    up: Vec<AtomicBool>,
    connect_timeout: Duration,
    read_timeout: Duration,
}

/// The peers one request may try, best first: the healthy ones in ring order from the object's
/// home, then the ones marked down (a last try when all seem down).
#[derive(Debug, Default, Clone)]
pub struct Order(Vec<u16>);

impl Upstreams {
    pub fn new(peers: Vec<SocketAddr>, connect_timeout: Duration, read_timeout: Duration) -> Self {
        assert!(
            !peers.is_empty(),
            "config validation guarantees an upstream"
        );
        let buckets: Vec<Bucket> = peers.iter().map(|addr| Bucket::new(*addr, 1)).collect();
        Upstreams {
            ring: Continuum::new(&buckets),
            up: peers.iter().map(|_| AtomicBool::new(true)).collect(),
            peers,
            connect_timeout,
            read_timeout,
        }
    }

    /// The order in which a request for `key` tries the peers.
    pub fn order(&self, key: &[u8]) -> Order {
        let n = self.peers.len();
        let mut ring_order: Vec<u16> = Vec::with_capacity(n);
        if n == 1 {
            ring_order.push(0);
        } else {
            // The ring holds every peer many times over; one lap finds them all.
            for addr in self.ring.node_iter(key).take(n * 400) {
                let index = self.index_of(addr);
                if !ring_order.contains(&index) {
                    ring_order.push(index);
                    if ring_order.len() == n {
                        break;
                    }
                }
            }
        }
        let (mut up, down): (Vec<u16>, Vec<u16>) = ring_order
            .into_iter()
            .partition(|i| self.up[usize::from(*i)].load(Ordering::Relaxed));
        up.extend(down);
        Order(up)
    }

    fn index_of(&self, addr: &SocketAddr) -> u16 {
        let i = self.peers.iter().position(|p| p == addr).unwrap_or(0);
        u16::try_from(i).unwrap_or(0)
    }

    /// The peer for the `attempt`-th try (0-based) of a request with this `order`.
    pub fn peer(&self, order: &Order, attempt: usize) -> HttpPeer {
        let index = order
            .0
            .get(attempt % order.0.len().max(1))
            .map_or(0, |i| usize::from(*i));
        let mut peer = HttpPeer::new(self.peers[index], false, String::new());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.total_connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.read_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        peer
    }

    /// How long a read from an upstream may wait.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// Whether a request that has made `attempts` tries may try another upstream.
    pub fn may_retry(&self, attempts: usize) -> bool {
        attempts < self.peers.len()
    }

    /// Whether `addr` is taken for up (by the last probe or request).
    pub fn is_up(&self, addr: &SocketAddr) -> bool {
        self.peers
            .iter()
            .position(|p| p == addr)
            .is_some_and(|i| self.up[i].load(Ordering::Relaxed))
    }

    /// A request or a probe found `addr` failing: skip it until a probe answers.
    pub fn mark_down(&self, addr: &SocketAddr) {
        self.set(addr, false);
    }

    fn set(&self, addr: &SocketAddr, up: bool) {
        let Some(i) = self.peers.iter().position(|p| p == addr) else {
            return;
        };
        if self.up[i].swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!(upstream = %addr, "upstream is back");
            } else {
                tracing::warn!(upstream = %addr, "upstream is down; its objects go to the next on the ring");
            }
        }
    }

    pub fn peers(&self) -> &[SocketAddr] {
        &self.peers
    }
}

/// Probes every upstream every `interval`: a `GET` of [`HEALTH_PATH`] with this tier's secret
/// that must answer 200 within `2 × interval` (connection included).
pub struct HealthChecks {
    upstreams: Arc<Upstreams>,
    interval: Duration,
    probe: HttpHealthCheck,
}

impl HealthChecks {
    pub fn new(upstreams: Arc<Upstreams>, interval: Duration, secret: Option<&str>) -> Self {
        let mut probe = HttpHealthCheck::new("cdn-health", false);
        let timeout = interval * 2;
        probe.peer_template.options.connection_timeout = Some(timeout);
        probe.peer_template.options.total_connection_timeout = Some(timeout);
        probe.peer_template.options.read_timeout = Some(timeout);
        probe.peer_template.options.write_timeout = Some(timeout);
        let mut req = RequestHeader::build("GET", HEALTH_PATH.as_bytes(), None)
            .expect("a fixed request line");
        let _ = req.insert_header(http::header::HOST, "cdn-health");
        if let Some(secret) = secret {
            let _ = req.insert_header(cdn_http::trust::HEADER, secret);
        }
        probe.req = req;
        HealthChecks {
            upstreams,
            interval,
            probe,
        }
    }

    async fn round(&self) {
        let checks = self.upstreams.peers.iter().map(|addr| async move {
            let backend = Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(*addr),
                weight: 1,
                ext: Default::default(),
            };
            let timeout = self.interval * 2;
            let ok = matches!(
                tokio::time::timeout(timeout, self.probe.check(&backend)).await,
                Ok(Ok(()))
            );
            self.upstreams.set(addr, ok);
        });
        futures::future::join_all(checks).await;
    }
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.round().await,
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams(n: u16) -> Upstreams {
        let peers = (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + i)))
            .collect();
        Upstreams::new(peers, Duration::from_secs(1), Duration::from_secs(1))
    }

    #[test]
    fn every_key_gets_every_peer_once_home_first() {
        let u = upstreams(3);
        let mut homes = [0usize; 3];
        for i in 0..3000 {
            let order = u.order(format!("/files/{i}").as_bytes());
            let mut seen = order.0.clone();
            seen.sort_unstable();
            assert_eq!(seen, vec![0, 1, 2]);
            homes[usize::from(order.0[0])] += 1;
        }
        // Each peer is home to a fair share (ketama: within a few percent of a third).
        for h in homes {
            assert!((700..1300).contains(&h), "{homes:?}");
        }
    }

    #[test]
    fn a_peer_down_moves_only_its_own_objects() {
        let u = upstreams(3);
        let keys: Vec<String> = (0..2000).map(|i| format!("/k/{i}")).collect();
        let before: Vec<Order> = keys.iter().map(|k| u.order(k.as_bytes())).collect();
        u.mark_down(&u.peers[1]);
        for (k, was) in keys.iter().zip(&before) {
            let now = u.order(k.as_bytes());
            if was.0[0] == 1 {
                // Its next on the ring takes it; the dead one is tried last.
                assert_eq!(now.0[0], was.0[1]);
                assert_eq!(now.0[2], 1);
            } else {
                assert_eq!(now.0[0], was.0[0], "an object of a live peer moved");
            }
        }
        u.set(&u.peers[1].clone(), true);
        assert_eq!(u.order(keys[0].as_bytes()).0, before[0].0);
    }

    #[test]
    fn the_same_peers_give_the_same_homes_in_any_process() {
        // Every edge lists the same shields: the ring depends on the addresses only.
        let a = upstreams(4);
        let b = upstreams(4);
        for i in 0..500 {
            let k = format!("/x/{i}");
            assert_eq!(a.order(k.as_bytes()).0, b.order(k.as_bytes()).0);
        }
    }
}
