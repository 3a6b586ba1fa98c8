//! The RFC 9211 `Cache-Status` header. Each tier appends its own entry to what its upstream
//! sent, so the list reads from the tier nearest the origin to the one nearest the client:
//! `shield; hit, edge-pop; fwd=miss; fwd-status=200; stored`. A hit carries no upstream
//! entries: nothing upstream handled that request.

use pingora::cache::CachePhase;
use std::fmt::Write;
use std::time::SystemTime;

/// What this tier did with one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// Status the upstream answered, if the request went there.
    pub fwd_status: Option<u16>,
    /// Whether this tier stored the upstream's response.
    pub stored: bool,
    /// Whether the request waited for another request's fill.
    pub collapsed: bool,
    /// When the response served stops being fresh.
    pub fresh_until: Option<SystemTime>,
    /// Whether the cache was consulted at all (false: the route bypasses it).
    pub looked_up: bool,
}

/// This tier's entry for a request that reached the cache phase `phase` (`None`: caching was
/// never enabled for it).
pub fn entry(tier: &str, phase: Option<&CachePhase>, outcome: &Outcome) -> String {
    let mut e = String::with_capacity(64);
    e.push_str(tier);
    let ttl = |e: &mut String| {
        if let Some(until) = outcome.fresh_until {
            let secs = until
                .duration_since(SystemTime::now())
                .map_or(0, |d| d.as_secs());
            let _ = write!(e, "; ttl={secs}");
        }
    };
    match phase {
        Some(CachePhase::Hit) => {
            e.push_str("; hit");
            ttl(&mut e);
            if outcome.collapsed {
                e.push_str("; collapsed");
            }
            return e;
        }
        Some(CachePhase::Stale) => {
            e.push_str("; hit; detail=stale");
            return e;
        }
        Some(CachePhase::StaleUpdating) => {
            e.push_str("; hit; detail=stale-while-revalidate");
            return e;
        }
        Some(CachePhase::Miss) => e.push_str("; fwd=miss"),
        // Looked up, missed, and the response turned out not to be storable.
        Some(CachePhase::Disabled(_)) if outcome.looked_up => e.push_str("; fwd=miss"),
        Some(CachePhase::Expired | CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_)) => {
            e.push_str("; fwd=stale")
        }
        _ => e.push_str("; fwd=bypass"),
    }
    if let Some(status) = outcome.fwd_status {
        let _ = write!(e, "; fwd-status={status}");
    }
    if outcome.stored {
        e.push_str("; stored");
        ttl(&mut e);
    }
    e
}

/// Joins the upstream's list (if the request went upstream) with this tier's entry.
pub fn header_value(upstream: Option<&str>, own: &str) -> String {
    match upstream.map(str::trim).filter(|u| !u.is_empty()) {
        Some(up) => format!("{up}, {own}"),
        None => own.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        let none = Outcome::default();
        assert_eq!(
            entry("edge-pop", Some(&CachePhase::Hit), &none),
            "edge-pop; hit"
        );
        let stored = Outcome {
            fwd_status: Some(200),
            stored: true,
            ..none
        };
        assert_eq!(
            entry("shield", Some(&CachePhase::Miss), &stored),
            "shield; fwd=miss; fwd-status=200; stored"
        );
        let passed = Outcome {
            fwd_status: Some(404),
            ..none
        };
        assert_eq!(
            entry("shield", Some(&CachePhase::Miss), &passed),
            "shield; fwd=miss; fwd-status=404"
        );
        assert_eq!(
            entry("edge-pop", None, &passed),
            "edge-pop; fwd=bypass; fwd-status=404"
        );
        let uncacheable = pingora::cache::NoCacheReason::OriginNotCache;
        let missed = Outcome {
            looked_up: true,
            ..passed
        };
        assert_eq!(
            entry("shield", Some(&CachePhase::Disabled(uncacheable)), &missed),
            "shield; fwd=miss; fwd-status=404"
        );
        let collapsed = Outcome {
            collapsed: true,
            ..none
        };
        assert_eq!(
            entry("shield", Some(&CachePhase::Hit), &collapsed),
            "shield; hit; collapsed"
        );
    }

    #[test]
    fn lists_read_from_origin_to_client() {
        assert_eq!(
            header_value(Some("shield; hit"), "edge-pop; fwd=miss"),
            "shield; hit, edge-pop; fwd=miss"
        );
        assert_eq!(header_value(None, "edge-pop; hit"), "edge-pop; hit");
        assert_eq!(header_value(Some(" "), "edge-pop; hit"), "edge-pop; hit");
    }
}
