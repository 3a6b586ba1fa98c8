//! What a proxy tier tells about each request: the `cache` result for metrics, the
//! `Server-Timing` list, the request id, and the access-log line.

use super::admission::Tier;
use crate::metrics::CacheResult;
use pingora::cache::CachePhase;
use std::time::Duration;

/// The header carrying per-tier timings (W3C Server Timing).
pub const SERVER_TIMING: &str = "server-timing";

/// The metrics result for a finished request. `looked_up`: the cache was consulted;
/// `waited`: it waited on another request's fill.
pub fn result(
    phase: Option<CachePhase>,
    looked_up: bool,
    waited: bool,
    status: u16,
) -> CacheResult {
    if status >= 500 {
        return CacheResult::Error;
    }
    match phase {
        Some(CachePhase::Hit) if waited => CacheResult::Collapsed,
        Some(CachePhase::Hit) => CacheResult::Hit,
        Some(CachePhase::Stale | CachePhase::StaleUpdating) => CacheResult::Stale,
        Some(CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_)) => {
            CacheResult::Revalidated
        }
        Some(CachePhase::Miss | CachePhase::Expired) => CacheResult::Miss,
        _ if looked_up => CacheResult::Miss,
        _ => CacheResult::Bypass,
    }
}

/// This tier's `Server-Timing` entry, after whatever the upstream reported for this fetch.
pub fn server_timing(tier: Tier, took: Duration, upstream: Option<&str>) -> String {
    let own = format!(
        "{};dur={:.3}",
        tier.metric_label(),
        took.as_secs_f64() * 1000.0
    );
    match upstream.map(str::trim).filter(|u| !u.is_empty()) {
        Some(up) => format!("{up}, {own}"),
        None => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results() {
        assert_eq!(
            result(Some(CachePhase::Hit), true, false, 200),
            CacheResult::Hit
        );
        assert_eq!(
            result(Some(CachePhase::Hit), true, true, 200),
            CacheResult::Collapsed
        );
        assert_eq!(
            result(Some(CachePhase::Miss), true, false, 404),
            CacheResult::Miss
        );
        assert_eq!(result(None, false, false, 401), CacheResult::Bypass);
        assert_eq!(
            result(Some(CachePhase::Miss), true, false, 502),
            CacheResult::Error
        );
        assert_eq!(
            result(Some(CachePhase::Stale), true, false, 200),
            CacheResult::Stale
        );
    }

    #[test]
    fn timings_read_from_origin_to_client() {
        let t = server_timing(
            Tier::Edge,
            Duration::from_micros(1500),
            Some("origin;dur=0.400, shield;dur=1.000"),
        );
        assert_eq!(t, "origin;dur=0.400, shield;dur=1.000, edge;dur=1.500");
        assert_eq!(
            server_timing(Tier::Shield, Duration::from_millis(2), None),
            "shield;dur=2.000"
        );
    }
}
