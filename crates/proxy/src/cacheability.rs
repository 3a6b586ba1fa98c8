//! Whether and for how long a tier stores a response: HTTP caching rules first (RFC 9111:
//! `no-store`, `private`, `s-maxage`/`max-age`), the route's TTL when the response says
//! nothing, and the upstream's `Age` counted so a copy never outlives the origin's intent.

use cdn_config::RoutePolicy;
use pingora::cache::cache_control::{CacheControl, Cacheable, InterpretCacheControl};
use pingora::cache::{CacheMeta, NoCacheReason, RespCacheable};
use pingora::http::ResponseHeader;
use std::time::{Duration, SystemTime};

pub fn decide(resp: &ResponseHeader, policy: &RoutePolicy) -> RespCacheable {
    if !policy.cacheable {
        return RespCacheable::Uncacheable(NoCacheReason::Custom("route is not cached"));
    }
    // Only whole objects are stored; 206, 304, errors and redirects pass through.
    if resp.status != http::StatusCode::OK {
        return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
    }
    let cc = CacheControl::from_resp_headers(resp);
    let lifetime = match &cc {
        Some(cc) if matches!(cc.is_cacheable(), Cacheable::No) || cc.no_cache() => {
            return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache)
        }
        Some(cc) => cc.fresh_duration().unwrap_or(policy.ttl),
        None => policy.ttl,
    };
    let age = resp
        .headers
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let now = SystemTime::now();
    let route_stale = u32::try_from(policy.stale_if_error.as_secs()).unwrap_or(u32::MAX);
    let (stale_while_revalidate, stale_if_error) = cc.as_ref().map_or((0, route_stale), |cc| {
        let secs =
            |d: Option<Duration>| d.map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        (
            secs(cc.serve_stale_while_revalidate_duration()),
            secs(cc.serve_stale_if_error_duration()).max(route_stale),
        )
    });
    let mut header = resp.clone();
    if let Some(cc) = &cc {
        cc.strip_private_headers(&mut header);
    }
    // Created `age` ago, so the Age this tier sends on hits includes the upstream's.
    RespCacheable::Cacheable(CacheMeta::new(
        now + lifetime.saturating_sub(age),
        now.checked_sub(age).unwrap_or(now),
        stale_while_revalidate,
        stale_if_error,
        header,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(cacheable: bool) -> RoutePolicy {
        RoutePolicy {
            ttl: Duration::from_secs(600),
            cacheable,
            auth_required: false,
            stale_if_error: Duration::from_secs(60),
        }
    }

    fn resp(status: u16, headers: &[(&'static str, &'static str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.insert_header(*k, *v).unwrap();
        }
        r
    }

    fn fresh_secs(c: &RespCacheable) -> Option<u64> {
        match c {
            RespCacheable::Cacheable(meta) => {
                let left = meta
                    .fresh_until()
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                Some((left.as_millis() as u64 + 500) / 1000)
            }
            RespCacheable::Uncacheable(_) => None,
        }
    }

    #[test]
    fn http_rules_then_route_ttl() {
        let p = policy(true);
        assert_eq!(fresh_secs(&decide(&resp(200, &[]), &p)), Some(600));
        assert_eq!(
            fresh_secs(&decide(&resp(200, &[("cache-control", "max-age=60")]), &p)),
            Some(60)
        );
        assert_eq!(
            fresh_secs(&decide(
                &resp(200, &[("cache-control", "max-age=60, s-maxage=30")]),
                &p
            )),
            Some(30)
        );
        let aged = decide(
            &resp(200, &[("cache-control", "max-age=60"), ("age", "50")]),
            &p,
        );
        assert_eq!(fresh_secs(&aged), Some(10));
        if let RespCacheable::Cacheable(meta) = &aged {
            assert!(
                meta.age() >= Duration::from_secs(50),
                "age carried into the stored copy"
            );
        }
        assert_eq!(
            fresh_secs(&decide(&resp(200, &[("cache-control", "no-store")]), &p)),
            None
        );
        assert_eq!(
            fresh_secs(&decide(&resp(200, &[("cache-control", "private")]), &p)),
            None
        );
        assert_eq!(
            fresh_secs(&decide(&resp(200, &[("cache-control", "no-cache")]), &p)),
            None
        );
        assert_eq!(fresh_secs(&decide(&resp(404, &[]), &p)), None);
        assert_eq!(fresh_secs(&decide(&resp(206, &[]), &p)), None);
        assert_eq!(fresh_secs(&decide(&resp(200, &[]), &policy(false))), None);
    }
}
