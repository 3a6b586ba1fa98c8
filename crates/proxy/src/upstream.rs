//! The upstream selector: which peer a miss goes to. Upstreams are tried in the configured
//! order; a failed connection moves on to the next one.

use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Upstreams {
    peers: Vec<SocketAddr>,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl Upstreams {
    pub fn new(peers: Vec<SocketAddr>, connect_timeout: Duration, read_timeout: Duration) -> Self {
        assert!(
            !peers.is_empty(),
            "config validation guarantees an upstream"
        );
        Upstreams {
            peers,
            connect_timeout,
            read_timeout,
        }
    }

    /// The peer for the `attempt`-th try (0-based) of one request.
    pub fn peer(&self, attempt: usize) -> HttpPeer {
        let addr = self.peers[attempt % self.peers.len()];
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.total_connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.read_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        peer
    }

    /// Whether a request that has made `attempts` tries may try another upstream.
    pub fn may_retry(&self, attempts: usize) -> bool {
        attempts < self.peers.len()
    }
}
