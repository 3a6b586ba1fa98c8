//! What a tier's cache did with one request (`Outcome`), told two ways: this tier's RFC 9211
//! `Cache-Status` entry, and the `cache` label of its metrics. Each tier appends its entry to what
//! its upstream sent, so the list reads from the tier nearest the origin to the one nearest the
//! client: `shield; hit, edge-pop; fwd=miss; fwd-status=200; stored`. A hit carries no upstream
//! entries: nothing upstream handled that request.

use crate::metrics::CacheResult;
use crate::Tier;
use std::fmt::Write;
use std::time::SystemTime;

/// The header carrying the tier list (RFC 9211).
pub const HEADER: &str = "cache-status";

/// How the cache took part in answering a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheUse {
    /// Not looked up: the route is not cached, or the request was refused first.
    #[default]
    Bypass,
    /// A fresh stored copy was served.
    Hit,
    /// A stale copy was served because the upstream failed (stale-if-error).
    Stale,
    /// A stale copy was served while it is being refreshed (stale-while-revalidate).
    StaleWhileRevalidate,
    /// Looked up and not found (or found unusable): fetched from upstream.
    Miss,
    /// A stale copy was found and fetched anew from upstream.
    Expired,
    /// A stale copy was found, the upstream confirmed it (304), and it was served.
    Revalidated,
}

/// What this tier did with one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub cache: CacheUse,
    /// Status the upstream answered, if the request went there.
    pub fwd_status: Option<u16>,
    /// Whether this tier stored the upstream's response.
    pub stored: bool,
    /// Whether the request waited for another request's fill.
    pub collapsed: bool,
    /// When the response served stops being fresh.
    pub fresh_until: Option<SystemTime>,
    /// The status this tier answered itself because fetching failed (502, 504, …).
    pub failed: Option<u16>,
}

impl Outcome {
    /// The outcome of a request this tier answers itself with `status` because fetching it
    /// failed: a miss if the cache was looked up (else a bypass), and nothing from upstream.
    pub fn failed(looked_up: bool, status: u16) -> Outcome {
        Outcome {
            cache: if looked_up {
                CacheUse::Miss
            } else {
                CacheUse::Bypass
            },
            failed: Some(status),
            ..Outcome::default()
        }
    }

    /// Whether the request went to the upstream (and so carries its entries).
    pub fn went_upstream(&self) -> bool {
        self.fwd_status.is_some()
    }

    /// This tier's `Cache-Status` entry.
    pub fn entry(&self, tier: Tier) -> String {
        let mut e = String::with_capacity(64);
        e.push_str(tier.name());
        let ttl = |e: &mut String| {
            if let Some(until) = self.fresh_until {
                let secs = until
                    .duration_since(SystemTime::now())
                    .map_or(0, |d| d.as_secs());
                let _ = write!(e, "; ttl={secs}");
            }
        };
        match self.cache {
            CacheUse::Hit => {
                e.push_str("; hit");
                ttl(&mut e);
                if self.collapsed {
                    e.push_str("; collapsed");
                }
                return e;
            }
            CacheUse::Stale => {
                e.push_str("; hit; detail=stale");
                return e;
            }
            CacheUse::StaleWhileRevalidate => {
                e.push_str("; hit; detail=stale-while-revalidate");
                return e;
            }
            CacheUse::Miss => e.push_str("; fwd=miss"),
            CacheUse::Expired | CacheUse::Revalidated => e.push_str("; fwd=stale"),
            CacheUse::Bypass => e.push_str("; fwd=bypass"),
        }
        if let Some(status) = self.fwd_status {
            let _ = write!(e, "; fwd-status={status}");
        }
        if let Some(status) = self.failed {
            let _ = write!(e, "; detail=upstream-{status}");
        }
        if self.stored {
            e.push_str("; stored");
            ttl(&mut e);
        }
        e
    }

    /// The metrics label for the request, once its response `status` is known.
    pub fn result(&self, status: u16) -> CacheResult {
        if status >= 500 {
            return CacheResult::Error;
        }
        match self.cache {
            CacheUse::Hit if self.collapsed => CacheResult::Collapsed,
            CacheUse::Hit => CacheResult::Hit,
            CacheUse::Stale | CacheUse::StaleWhileRevalidate => CacheResult::Stale,
            CacheUse::Revalidated => CacheResult::Revalidated,
            CacheUse::Miss | CacheUse::Expired => CacheResult::Miss,
            CacheUse::Bypass => CacheResult::Bypass,
        }
    }
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

    fn outcome(cache: CacheUse) -> Outcome {
        Outcome {
            cache,
            ..Outcome::default()
        }
    }

    #[test]
    fn entries() {
        assert_eq!(outcome(CacheUse::Hit).entry(Tier::Edge), "edge-pop; hit");
        let stored = Outcome {
            fwd_status: Some(200),
            stored: true,
            ..outcome(CacheUse::Miss)
        };
        assert_eq!(
            stored.entry(Tier::Shield),
            "shield; fwd=miss; fwd-status=200; stored"
        );
        let passed = Outcome {
            fwd_status: Some(404),
            ..outcome(CacheUse::Miss)
        };
        assert_eq!(
            passed.entry(Tier::Shield),
            "shield; fwd=miss; fwd-status=404"
        );
        let bypassed = Outcome {
            fwd_status: Some(404),
            ..Outcome::default()
        };
        assert_eq!(
            bypassed.entry(Tier::Edge),
            "edge-pop; fwd=bypass; fwd-status=404"
        );
        let collapsed = Outcome {
            collapsed: true,
            ..outcome(CacheUse::Hit)
        };
        assert_eq!(collapsed.entry(Tier::Shield), "shield; hit; collapsed");
        assert_eq!(
            outcome(CacheUse::Stale).entry(Tier::Shield),
            "shield; hit; detail=stale"
        );
        assert_eq!(
            outcome(CacheUse::Revalidated).entry(Tier::Edge),
            "edge-pop; fwd=stale"
        );
        assert_eq!(
            Outcome::failed(true, 502).entry(Tier::Shield),
            "shield; fwd=miss; detail=upstream-502"
        );
        assert_eq!(
            Outcome::failed(false, 504).entry(Tier::Edge),
            "edge-pop; fwd=bypass; detail=upstream-504"
        );
    }

    #[test]
    fn results() {
        assert_eq!(outcome(CacheUse::Hit).result(200), CacheResult::Hit);
        let collapsed = Outcome {
            collapsed: true,
            ..outcome(CacheUse::Hit)
        };
        assert_eq!(collapsed.result(200), CacheResult::Collapsed);
        assert_eq!(outcome(CacheUse::Miss).result(404), CacheResult::Miss);
        assert_eq!(outcome(CacheUse::Bypass).result(401), CacheResult::Bypass);
        assert_eq!(outcome(CacheUse::Miss).result(502), CacheResult::Error);
        assert_eq!(outcome(CacheUse::Stale).result(200), CacheResult::Stale);
        assert_eq!(outcome(CacheUse::Expired).result(200), CacheResult::Miss);
        assert_eq!(
            outcome(CacheUse::Revalidated).result(200),
            CacheResult::Revalidated
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
