//! The headers every response a tier sends carries, whoever built it (the object from the
//! cache or upstream, or an error of the tier's own): the request id, this tier's
//! `Server-Timing` entry after its upstream's, and at caching tiers the `Cache-Status` list
//! and an `Age`. One home, so the three kinds of response cannot drift apart.

use crate::cache_status::{self, Outcome};
use crate::{request_id, server_timing, Tier};
use std::time::Duration;

/// What a tier writes headers into: its HTTP library's response header.
pub trait HeaderSink {
    fn contains(&self, name: &str) -> bool;
    /// Sets `name` to `value`, replacing what was there.
    fn set(&mut self, name: &'static str, value: &str);
}

impl HeaderSink for http::HeaderMap {
    fn contains(&self, name: &str) -> bool {
        self.contains_key(name)
    }

    fn set(&mut self, name: &'static str, value: &str) {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            self.insert(name, value);
        }
    }
}

/// What the upstream said about this fetch, taken out of its response before storing it.
#[derive(Debug, Clone, Default)]
pub struct UpstreamEntries {
    pub cache_status: Option<String>,
    pub server_timing: Option<String>,
}

/// The decoration of one response.
#[derive(Debug)]
pub struct Decoration<'a> {
    pub tier: Tier,
    pub request_id: &'a str,
    /// From the request's arrival to this response's header.
    pub took: Duration,
    /// What this tier's cache did; `None` at a tier that does not cache (origin-adapter).
    pub outcome: Option<&'a Outcome>,
    /// The upstream's entries, shown only when the outcome says the request went upstream.
    pub upstream: &'a UpstreamEntries,
}

impl<'a> Decoration<'a> {
    /// Writes the headers; returns the `Cache-Status` value sent, if any, for the access log.
    pub fn apply(&self, headers: &mut impl HeaderSink) -> Option<String> {
        let went_upstream = self.outcome.is_none_or(Outcome::went_upstream);
        let upstream = |entry: &'a Option<String>| entry.as_deref().filter(|_| went_upstream);
        let cache_status = self.outcome.map(|outcome| {
            let own = outcome.entry(self.tier);
            cache_status::header_value(upstream(&self.upstream.cache_status), &own)
        });
        if let Some(value) = &cache_status {
            headers.set(cache_status::HEADER, value);
            // A cache says how old what it sends is; a fresh fetch with no Age of its own is 0
            // (RFC 9111 §5.1).
            if !headers.contains("age") {
                headers.set("age", "0");
            }
        }
        let timing =
            server_timing::value(self.tier, self.took, upstream(&self.upstream.server_timing));
        headers.set(server_timing::HEADER, &timing);
        headers.set(request_id::HEADER, self.request_id);
        cache_status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CacheUse;

    fn decorate(d: &Decoration<'_>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        d.apply(&mut h);
        h
    }

    fn get<'h>(h: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
        h.get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn a_miss_carries_the_upstream_entries_before_its_own() {
        let outcome = Outcome {
            cache: CacheUse::Miss,
            fwd_status: Some(200),
            ..Outcome::default()
        };
        let upstream = UpstreamEntries {
            cache_status: Some("shield; hit".into()),
            server_timing: Some("shield;dur=1.000".into()),
        };
        let h = decorate(&Decoration {
            tier: Tier::Edge,
            request_id: "abc",
            took: Duration::from_millis(2),
            outcome: Some(&outcome),
            upstream: &upstream,
        });
        assert_eq!(
            get(&h, "cache-status"),
            Some("shield; hit, edge-pop; fwd=miss; fwd-status=200")
        );
        assert_eq!(
            get(&h, "server-timing"),
            Some("shield;dur=1.000, edge;dur=2.000")
        );
        assert_eq!(get(&h, "x-request-id"), Some("abc"));
        assert_eq!(get(&h, "age"), Some("0"));
    }

    #[test]
    fn a_hit_names_no_upstream_and_keeps_its_age() {
        let outcome = Outcome {
            cache: CacheUse::Hit,
            ..Outcome::default()
        };
        let stale_entries = UpstreamEntries {
            cache_status: Some("shield; hit".into()),
            server_timing: Some("shield;dur=1.000".into()),
        };
        let mut h = http::HeaderMap::new();
        h.set("age", "17");
        Decoration {
            tier: Tier::Edge,
            request_id: "abc",
            took: Duration::from_millis(1),
            outcome: Some(&outcome),
            upstream: &stale_entries,
        }
        .apply(&mut h);
        assert_eq!(get(&h, "cache-status"), Some("edge-pop; hit"));
        assert_eq!(get(&h, "server-timing"), Some("edge;dur=1.000"));
        assert_eq!(get(&h, "age"), Some("17"));
    }

    #[test]
    fn the_origin_adds_no_cache_headers() {
        let h = decorate(&Decoration {
            tier: Tier::Origin,
            request_id: "abc",
            took: Duration::from_micros(500),
            outcome: None,
            upstream: &UpstreamEntries::default(),
        });
        assert_eq!(get(&h, "server-timing"), Some("origin;dur=0.500"));
        assert!(get(&h, "cache-status").is_none() && get(&h, "age").is_none());
    }
}
