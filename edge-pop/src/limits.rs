//! Rate limits at the edge, per route: requests per client address and per credential, counted
//! before any upstream work (GCRA, from the `governor` crate: one atomic state per key, exact
//! under concurrency). Past a limit the answer is 429 with `Retry-After`, the seconds until the
//! next request would be allowed.
//!
//! Keys are forgotten once their state is back to full (`retain_recent`, every so many checks),
//! so the tables hold only the clients seen lately.

use cdn_config::{Rate, RateLimit};
use cdn_proxy::HttpError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many checks between two sweeps of keys back at full allowance.
const SWEEP_EVERY: u64 = 4096;

/// One route's limits.
pub struct RouteLimits {
    per_client_ip: Option<Keyed<IpAddr>>,
    per_credential: Option<Keyed<String>>,
    /// Leading bits of an IPv6 address that name one client.
    ipv6_prefix: u8,
}

struct Keyed<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl RouteLimits {
    pub fn new(limit: &RateLimit) -> RouteLimits {
        RouteLimits {
            per_client_ip: limit.per_client_ip.map(Keyed::new),
            per_credential: limit.per_credential.map(Keyed::new),
            ipv6_prefix: limit.ipv6_prefix,
        }
    }

    /// Counts a request from `client` (an IPv6 one by its network, `ipv6_prefix`); 429 past
    /// the limit.
    pub fn client(&self, client: IpAddr) -> Result<(), HttpError> {
        self.per_client_ip
            .as_ref()
            .map_or(Ok(()), |k| k.check(&client_key(client, self.ipv6_prefix)))
    }

    /// Counts a request made with a credential (`limit_key`: what identifies it, never the
    /// secret itself); 429 past the limit.
    pub fn credential(&self, limit_key: &str) -> Result<(), HttpError> {
        self.per_credential
            .as_ref()
            .map_or(Ok(()), |k| k.check(&limit_key.to_owned()))
    }
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(rate: Rate) -> Keyed<K> {
        let burst = NonZeroU32::new(rate.count).unwrap_or(NonZeroU32::MIN);
        // `Rate` holds at least one request per period, so the interval is never zero.
        let quota = Quota::with_period(rate.per / burst.get())
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst);
        Keyed {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        }
    }

    fn check(&self, key: &K) -> Result<(), HttpError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            HttpError::TooManyRequests {
                retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }
}

/// What a client's requests are counted under: an IPv4 address whole (an IPv4-mapped IPv6
/// one too), an IPv6 address by its first `ipv6_prefix` bits, since one host may take any
/// address of its network (a /64 holds 2^64 of them).
fn client_key(client: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u32::from(ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_refusals_with_retry_after() {
        let limits = RouteLimits::new(&RateLimit {
            per_client_ip: Some(Rate {
                count: 5,
                per: Duration::from_secs(10),
            }),
            per_credential: None,
            ipv6_prefix: 64,
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        for _ in 0..5 {
            limits.client(a).unwrap();
        }
        match limits.client(a) {
            Err(HttpError::TooManyRequests { retry_after }) => {
                assert!((1..=2).contains(&retry_after), "{retry_after}")
            }
            other => panic!("{other:?}"),
        }
        limits
            .client(b)
            .expect("another client has its own allowance");
        limits
            .credential("t:x")
            .expect("no per-credential limit set");
    }

    /// Regression: a client rotating through the addresses of its /64 had a fresh allowance
    /// for each.
    #[test]
    fn an_ipv6_network_shares_one_allowance() {
        let limits = RouteLimits::new(&RateLimit {
            per_client_ip: Some(Rate {
                count: 3,
                per: Duration::from_secs(10),
            }),
            per_credential: None,
            ipv6_prefix: 64,
        });
        for host in 1..=3 {
            let ip: IpAddr = format!("2001:db8:1:2::{host:x}").parse().unwrap();
            limits.client(ip).unwrap();
        }
        let rotated: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        assert!(limits.client(rotated).is_err(), "the same /64");
        let neighbour: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        limits.client(neighbour).expect("another /64");
    }

    #[test]
    fn client_keys() {
        let key = |ip: &str, bits| client_key(ip.parse().unwrap(), bits).to_string();
        assert_eq!(key("10.1.2.3", 64), "10.1.2.3");
        assert_eq!(
            key("::ffff:10.1.2.3", 64),
            "10.1.2.3",
            "IPv4-mapped is IPv4"
        );
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 64), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 48), "2001:db8:1::");
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 128), "2001:db8:1:2:3:4:5:6");
        assert_eq!(key("2001:db8:1:2:3:4:5:6", 1), "::");
    }
}
