//! Whether and for how long a tier stores a response, by RFC 9111 where a shared cache must
//! obey it, and by the route where the response leaves the choice to the cache:
//!
//! - the directives are `CDN-Cache-Control`'s when the response has one (RFC 9213: aimed at
//!   the CDN, it overrides `Cache-Control` here), else `Cache-Control`'s;
//! - `no-store`, `private`, `Vary: *` and a request with `Authorization` (unless `public`,
//!   `s-maxage` or `must-revalidate` allow it, §3.5) are not stored, nor is a response that
//!   sets a cookie (one client's state); the fields named by `private=`/`no-cache=` are never
//!   part of a stored copy;
//! - freshness: `s-maxage`, `max-age`, `Expires` − `Date`, in that order; `no-cache` stores
//!   the copy but revalidates it on every use; a response that states nothing gets the route's
//!   heuristic freshness (the route's `ttl`, `negative_ttl` for 404/410, or a tenth of the
//!   time since `Last-Modified`) as the route says, if its status is cacheable by default
//!   (RFC 9110 §15.1);
//! - a copy's age starts at what it already had upstream (`Age`, or the time since its `Date`
//!   if that is more), so it never outlives the origin's intent through two tiers;
//! - `must-revalidate`, `proxy-revalidate`, `s-maxage` and `no-cache` close the stale-if-error
//!   window the route would give.

use cdn_config::{Heuristic, RoutePolicy};
use pingora::cache::cache_control::{CacheControl, InterpretCacheControl};
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheMeta, NoCacheReason, RespCacheable, VarianceBuilder};
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::{Duration, SystemTime};

pub const CDN_CACHE_CONTROL: &str = "cdn-cache-control";

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1), less 206: only
/// whole objects are stored.
const HEURISTIC_STATUSES: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// The directives that govern this tier's caching of a response.
pub fn directives(resp: &ResponseHeader) -> Option<CacheControl> {
    targeted(resp).or_else(|| CacheControl::from_resp_headers(resp))
}

/// `CDN-Cache-Control`, if present and valid: RFC 9213 makes it a Structured Field dictionary,
/// and one that does not parse, or whose delta-seconds are not integers, is ignored whole.
fn targeted(resp: &ResponseHeader) -> Option<CacheControl> {
    const SECONDS: [&str; 4] = [
        "max-age",
        "s-maxage",
        "stale-while-revalidate",
        "stale-if-error",
    ];
    let values: Vec<&[u8]> = resp
        .headers
        .get_all(CDN_CACHE_CONTROL)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if values.is_empty() {
        return None;
    }
    let joined = values.join(&b", "[..]);
    let dictionary: sfv::Dictionary = sfv::Parser::new(&joined).parse_dictionary().ok()?;
    // Delta-seconds: a non-negative integer with no parameters, or the field is not used.
    let typed = dictionary.iter().all(|(key, entry)| {
        !SECONDS.contains(&key.as_str())
            || matches!(entry, sfv::ListEntry::Item(item)
                if item.params.is_empty()
                    && item.bare_item.as_integer().is_some_and(|i| i64::from(i) >= 0))
    });
    typed.then(|| CacheControl::from_resp_headers_named(CDN_CACHE_CONTROL, resp))?
}

pub fn decide(resp: &ResponseHeader, policy: &RoutePolicy, authorization: bool) -> RespCacheable {
    decide_at(resp, policy, authorization, SystemTime::now())
}

fn decide_at(
    resp: &ResponseHeader,
    policy: &RoutePolicy,
    authorization: bool,
    now: SystemTime,
) -> RespCacheable {
    let no = |why: &'static str| RespCacheable::Uncacheable(NoCacheReason::Custom(why));
    if !policy.cacheable {
        return no("route is not cached");
    }
    let status = resp.status.as_u16();
    if status == 206 || status == 304 || status < 200 {
        return no("not a whole response");
    }
    let cc = directives(resp);
    // `must-understand` (RFC 9111 §5.2.2.3): a status this cache understands overrides
    // `no-store`; one it does not is never stored.
    let must_understand = cc.as_ref().is_some_and(|cc| cc.has_key("must-understand"));
    if must_understand && resp.status.canonical_reason().is_none() {
        return no("must-understand, status not understood");
    }
    if cc
        .as_ref()
        .is_some_and(|cc| (cc.no_store() && !must_understand) || cc.private())
    {
        return no("no-store or private");
    }
    if authorization
        && !cc
            .as_ref()
            .is_some_and(InterpretCacheControl::allow_caching_authorized_req)
    {
        return no("request carried Authorization");
    }
    if list_members(&resp.headers, http::header::VARY).any(|name| name == "*") {
        return no("Vary: *");
    }
    if resp.headers.contains_key(http::header::SET_COOKIE) {
        return no("sets a cookie");
    }

    let no_cache = cc.as_ref().is_some_and(CacheControl::no_cache);
    let date = http_date(resp, http::header::DATE);
    let explicit = if no_cache {
        Some(Duration::ZERO)
    } else {
        cc.as_ref()
            .and_then(InterpretCacheControl::fresh_duration)
            .or_else(|| expires_lifetime(resp, date.unwrap_or(now)))
    };
    let lifetime = match explicit {
        Some(lifetime) => lifetime,
        None if !HEURISTIC_STATUSES.contains(&status)
            && !cc.as_ref().is_some_and(CacheControl::public) =>
        {
            return no("status not cacheable by default")
        }
        None => match policy.heuristic {
            Heuristic::None => return no("no explicit freshness"),
            // Missing objects, and statuses stored only because the response says `public`
            // (errors among them), are kept briefly.
            Heuristic::Ttl if status == 404 || status == 410 => policy.negative_ttl,
            Heuristic::Ttl if !HEURISTIC_STATUSES.contains(&status) => policy.negative_ttl,
            Heuristic::Ttl => policy.ttl,
            Heuristic::LastModified => match http_date(resp, http::header::LAST_MODIFIED) {
                Some(modified) => {
                    let since = date
                        .unwrap_or(now)
                        .duration_since(modified)
                        .unwrap_or_default();
                    (since / 10).min(policy.ttl)
                }
                None => return no("no explicit freshness and no Last-Modified"),
            },
        },
    };
    let validators =
        resp.headers.contains_key(http::header::ETAG) || resp.headers.contains_key("last-modified");
    if lifetime.is_zero() && !validators {
        return no("stale on arrival and cannot be revalidated");
    }

    let age = initial_age(resp, date, now);
    let route_stale = secs(policy.stale_if_error);
    let (stale_while_revalidate, stale_if_error) = match &cc {
        _ if no_cache => (0, 0),
        Some(cc) => (
            cc.serve_stale_while_revalidate_duration().map_or(0, secs),
            cc.serve_stale_if_error_duration().map_or(route_stale, secs),
        ),
        None => (0, route_stale),
    };
    let mut header = resp.clone();
    if let Some(cc) = &cc {
        cc.strip_private_headers(&mut header);
    }
    // The age as this tier sees it, for the next tier: Pingora sends its own `Date`, so an age
    // known only from the upstream's `Date` would otherwise be lost on the way.
    header
        .insert_header(http::header::AGE, age.as_secs().to_string())
        .expect("digits are a valid header value");
    let created = now
        .checked_sub(age)
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .max(SystemTime::UNIX_EPOCH);
    RespCacheable::Cacheable(CacheMeta::new(
        created + lifetime,
        created,
        stale_while_revalidate,
        stale_if_error,
        header,
    ))
}

/// A request field's value as a `Vary` variant is told by: list members trimmed and joined
/// the same way whether sent on one line or several; for the content-negotiation fields,
/// whose values are case-insensitive tokens, also lower-cased and in one order.
pub fn vary_value(name: &str, values: http::header::GetAll<'_, http::HeaderValue>) -> Vec<u8> {
    let mut members: Vec<Vec<u8>> = values
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|m| m.trim_ascii().to_vec())
        .filter(|m| !m.is_empty())
        .collect();
    if matches!(
        name,
        "accept" | "accept-encoding" | "accept-language" | "accept-charset"
    ) {
        for member in &mut members {
            member.make_ascii_lowercase();
        }
        members.sort();
        members.dedup();
    }
    members.join(&b","[..])
}

/// The variant of a response with these fields that `req` asks for: the values of the request
/// fields its `Vary` names (names lower-cased and sorted, so the order they are listed in is
/// moot); `None` when it does not vary.
pub fn variance(response: &http::HeaderMap, req: &RequestHeader) -> Option<HashBinary> {
    let mut names: Vec<String> = list_members(response, http::header::VARY).collect();
    if names.is_empty() {
        return None;
    }
    names.sort();
    names.dedup();
    let mut variance = VarianceBuilder::new();
    for name in names {
        let value = vary_value(&name, req.headers.get_all(name.as_str()));
        variance.add_owned_name_value(name, value);
    }
    variance.finalize()
}

/// Whether a stored response may answer a request that carries `Authorization` (§3.5).
pub fn serves_authorized(meta: &CacheMeta) -> bool {
    directives(meta.response_header())
        .as_ref()
        .is_some_and(InterpretCacheControl::allow_caching_authorized_req)
}

/// The stored response's header updated with a 304's fields (RFC 9111 §4.3.4), except those
/// that describe the 304's own message rather than the stored one.
pub fn merge_not_modified(
    stored: &ResponseHeader,
    not_modified: &ResponseHeader,
) -> ResponseHeader {
    const OWN: [&str; 11] = [
        // The variant stays the one stored (pingora-cache keeps its variance on a 304).
        "vary",
        "content-length",
        "content-range",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "content-encoding",
    ];
    let mut merged = stored.clone();
    // The copy's age and date are the 304's now, said or not.
    merged.remove_header(&http::header::AGE);
    merged.remove_header(&http::header::DATE);
    let names: Vec<_> = not_modified
        .headers
        .keys()
        .filter(|name| !OWN.contains(&name.as_str()))
        .cloned()
        .collect();
    for name in names {
        merged.remove_header(&name);
        for value in not_modified.headers.get_all(&name) {
            // Values come from a parsed header map: appending them again cannot fail.
            let _ = merged.append_header(name.clone(), value.clone());
        }
    }
    merged
}

/// The fields a message's `Connection` lists (RFC 9110 §7.6.1): meant for the hop that sent
/// it, so neither stored, forwarded nor looked at (a request's could otherwise reach the
/// variant key while the upstream never sees them). Framing fields are never taken from it.
pub fn connection_listed(headers: &http::HeaderMap) -> Vec<String> {
    const KEEP: [&str; 5] = [
        "close",
        "keep-alive",
        "content-length",
        "transfer-encoding",
        "host",
    ];
    list_members(headers, http::header::CONNECTION)
        .filter(|name| !KEEP.contains(&name.as_str()))
        .collect()
}

/// The field names a list-valued field (`Vary`, `Connection`) names, over all its lines:
/// trimmed, lower-cased, empty members and members that are not text left out.
pub fn list_members(
    headers: &http::HeaderMap,
    field: http::header::HeaderName,
) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(field)
        .into_iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|member| std::str::from_utf8(member.trim_ascii()).ok())
        .filter(|member| !member.is_empty())
        .map(str::to_ascii_lowercase)
}

/// The `Cache-Control` a client gets for an object only some callers may have: the stored
/// copy's directives, made `private` (without `public` and `s-maxage`), so no shared cache past
/// the edge keeps it for other callers.
pub fn private_to_caller(headers: &http::HeaderMap) -> String {
    let kept = list_members(headers, http::header::CACHE_CONTROL).filter(|member| {
        let name = member.split('=').next().unwrap_or_default().trim();
        !matches!(name, "public" | "private" | "s-maxage")
    });
    std::iter::once("private".to_owned())
        .chain(kept)
        .collect::<Vec<_>>()
        .join(", ")
}

/// How old a response already is on arrival (RFC 9111 §4.2.3, with no transit delay counted):
/// its `Age`, or the time since its `Date` if that is more; at most 2^31 s (§1.2.2).
fn initial_age(resp: &ResponseHeader, date: Option<SystemTime>, now: SystemTime) -> Duration {
    // The first value counts; a parameter after it is ignored, anything else is no Age.
    let age_value = resp
        .headers
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .map_or(Duration::ZERO, |v| {
            Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX / 4))
        });
    let apparent = date
        .and_then(|d| now.duration_since(d).ok())
        .unwrap_or_default();
    age_value.max(apparent).min(MAX_AGE)
}

const MAX_AGE: Duration = Duration::from_secs(1 << 31);

/// `Expires` − `Date`: one valid `Expires`, or already stale (an invalid one means the past).
fn expires_lifetime(resp: &ResponseHeader, date: SystemTime) -> Option<Duration> {
    let mut all = resp.headers.get_all(http::header::EXPIRES).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return Some(Duration::ZERO);
    }
    let expires = first.to_str().ok().and_then(parse_date);
    Some(expires.map_or(Duration::ZERO, |e| {
        e.duration_since(date).unwrap_or_default()
    }))
}

fn http_date(resp: &ResponseHeader, name: http::header::HeaderName) -> Option<SystemTime> {
    resp.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_date)
}

/// An HTTP date in any of its three forms (RFC 9110 §5.6.7), names in any letter case.
fn parse_date(text: &str) -> Option<SystemTime> {
    const NAMES: [&str; 20] = [
        "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Jan", "Feb", "Mar", "Apr", "May", "Jun",
        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "GMT",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let text = text.trim();
    if let Ok(time) = httpdate::parse_http_date(text) {
        return Some(time);
    }
    let mut fixed = String::with_capacity(text.len());
    for piece in text.split_inclusive([' ', ',', '-']) {
        let word = piece.trim_end_matches([' ', ',', '-']);
        let named = NAMES
            .iter()
            .chain(DAYS.iter())
            .find(|n| n.eq_ignore_ascii_case(word));
        fixed.push_str(named.copied().unwrap_or(word));
        fixed.push_str(&piece[word.len()..]);
    }
    httpdate::parse_http_date(&fixed).ok()
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdn_config::QueryPolicy;

    fn policy(cacheable: bool) -> RoutePolicy {
        RoutePolicy {
            ttl: Duration::from_secs(600),
            cacheable,
            auth_required: false,
            stale_if_error: Duration::from_secs(60),
            heuristic: Heuristic::Ttl,
            negative_ttl: Duration::from_secs(10),
            query: QueryPolicy::Ignore,
            pass_writes: false,
            naming: Default::default(),
            stale_while_revalidate: Duration::ZERO,
            rate_limit: Default::default(),
            slice: None,
            forward_authorization: false,
        }
    }

    fn resp(status: u16, headers: &[(&'static str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(*k, v.to_string()).unwrap();
        }
        r
    }

    fn fresh_secs(c: &RespCacheable, now: SystemTime) -> Option<i64> {
        match c {
            RespCacheable::Cacheable(meta) => Some(match meta.fresh_until().duration_since(now) {
                Ok(left) => left.as_secs() as i64,
                Err(e) => -(e.duration().as_secs() as i64),
            }),
            RespCacheable::Uncacheable(_) => None,
        }
    }

    fn fresh(status: u16, headers: &[(&'static str, &str)]) -> Option<i64> {
        let now = SystemTime::now();
        fresh_secs(
            &decide_at(&resp(status, headers), &policy(true), false, now),
            now,
        )
    }

    #[test]
    fn answers_to_authenticated_callers_are_private() {
        let r = resp(
            200,
            &[("cache-control", "public, max-age=60, S-MAXAGE=600")],
        );
        assert_eq!(private_to_caller(&r.headers), "private, max-age=60");
        assert_eq!(private_to_caller(&resp(200, &[]).headers), "private");
    }

    #[test]
    fn explicit_freshness_in_order() {
        assert_eq!(fresh(200, &[]), Some(600), "route ttl when nothing is said");
        assert_eq!(fresh(200, &[("cache-control", "max-age=60")]), Some(60));
        assert_eq!(
            fresh(200, &[("cache-control", "max-age=60, s-maxage=30")]),
            Some(30)
        );
        let now = SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let in_90 = httpdate::fmt_http_date(now + Duration::from_secs(90));
        let by_expires = fresh(200, &[("date", &date), ("expires", &in_90)]).unwrap();
        assert!((89..=90).contains(&by_expires), "{by_expires}");
        assert!(fresh(200, &[("expires", "0"), ("etag", "\"x\"")]).unwrap() <= 0);
        assert_eq!(
            fresh(
                200,
                &[
                    ("cache-control", "max-age=5"),
                    ("cdn-cache-control", "max-age=50")
                ]
            ),
            Some(50),
            "CDN-Cache-Control wins"
        );
        assert_eq!(
            fresh(
                200,
                &[
                    ("cache-control", "max-age=5"),
                    ("cdn-cache-control", "no-store")
                ]
            ),
            None
        );
        for invalid in [
            "max-age=50, &&&",
            "max-age=\"50\"",
            "max-age=5.0",
            "max-age=50;x=1",
            "max-age=-1",
        ] {
            assert_eq!(
                fresh(
                    200,
                    &[
                        ("cache-control", "max-age=5"),
                        ("cdn-cache-control", invalid)
                    ]
                ),
                Some(5),
                "{invalid} is ignored"
            );
        }
    }

    #[test]
    fn vary_values_normalised() {
        let value = |name: &str, lines: &[&str]| {
            let mut h = http::HeaderMap::new();
            for l in lines {
                h.append("x", l.parse().unwrap());
            }
            String::from_utf8(vary_value(name, h.get_all("x"))).unwrap()
        };
        assert_eq!(value("foo", &["1, 2"]), value("foo", &["1", "2"]));
        assert_eq!(value("foo", &[" 1, 2 "]), value("foo", &["1,2"]));
        assert_ne!(
            value("foo", &["A"]),
            value("foo", &["a"]),
            "other fields keep case"
        );
        assert_eq!(
            value("accept-language", &["en, De"]),
            value("accept-language", &["de, en"])
        );
        assert_eq!(value("foo", &[]), "");
    }

    #[test]
    fn dates_in_any_form_and_case() {
        let expected = parse_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        for text in [
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUN, 06 NOV 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_date(text), Some(expected), "{text}");
        }
        assert_eq!(parse_date("0"), None);
        assert_eq!(parse_date("Sun, 06 Nov 1994 08:49:37"), None);
    }

    #[test]
    fn must_understand_overrides_no_store_for_known_statuses() {
        let cc = "max-age=60, no-store, must-understand";
        assert_eq!(fresh(200, &[("cache-control", cc)]), Some(60));
        assert_eq!(fresh(599, &[("cache-control", cc)]), None);
        assert_eq!(
            fresh(200, &[("cache-control", "max-age=60, no-store")]),
            None
        );
    }

    #[test]
    fn age_from_upstream_counts() {
        assert_eq!(
            fresh(200, &[("cache-control", "max-age=60"), ("age", "50")]),
            Some(10)
        );
        for (value, left) in [
            ("50, 0", 10),
            ("0, 50", 60),
            ("50;x=1", 10),
            ("abc", 60),
            ("-50", 60),
            ("50.0", 60),
        ] {
            let got = fresh(200, &[("cache-control", "max-age=60"), ("age", value)]);
            assert_eq!(got, Some(left), "Age: {value}");
        }
        for huge in ["2147483648", "99999999999999999999"] {
            let now = SystemTime::now();
            let c = decide_at(
                &resp(200, &[("cache-control", "max-age=60"), ("age", huge)]),
                &policy(true),
                false,
                now,
            );
            assert!(fresh_secs(&c, now).unwrap() < 0, "Age: {huge} is stale");
            let RespCacheable::Cacheable(meta) = c else {
                unreachable!()
            };
            meta.serialize().expect("a stored copy that can be written");
        }
        let now = SystemTime::now();
        let aged = decide_at(
            &resp(200, &[("cache-control", "max-age=60"), ("age", "50")]),
            &policy(true),
            false,
            now,
        );
        let RespCacheable::Cacheable(meta) = aged else {
            panic!("stored")
        };
        assert!(meta.age() >= Duration::from_secs(50));
        let an_hour_ago = httpdate::fmt_http_date(now - Duration::from_secs(3600));
        let dated = decide_at(
            &resp(
                200,
                &[("cache-control", "max-age=7200"), ("date", &an_hour_ago)],
            ),
            &policy(true),
            false,
            now,
        );
        let RespCacheable::Cacheable(meta) = dated else {
            panic!("stored")
        };
        let said: u64 = meta.headers()["age"].to_str().unwrap().parse().unwrap();
        assert!(
            (3599..=3601).contains(&said),
            "the age from Date is passed on: {said}"
        );
        let an_hour_ago = httpdate::fmt_http_date(now - Duration::from_secs(3600));
        assert!(
            fresh(
                200,
                &[("cache-control", "max-age=3000"), ("date", &an_hour_ago)]
            )
            .unwrap()
                < 0,
            "the time since Date counts"
        );
    }

    #[test]
    fn what_a_shared_cache_must_not_store() {
        for cc in ["no-store", "private", "no-store, max-age=60"] {
            assert_eq!(fresh(200, &[("cache-control", cc)]), None, "{cc}");
        }
        assert_eq!(fresh(200, &[("vary", "accept, *")]), None);
        assert_eq!(fresh(206, &[]), None);
        assert_eq!(fresh(500, &[]), None);
        assert_eq!(fresh(302, &[]), None, "not cacheable by default");
        assert_eq!(fresh(302, &[("cache-control", "max-age=60")]), Some(60));
        assert_eq!(fresh(404, &[]), Some(10), "negative ttl");
        assert_eq!(
            fresh(200, &[("cache-control", "no-cache")]),
            None,
            "no validator"
        );
        assert_eq!(
            fresh(200, &[("cache-control", "no-cache"), ("etag", "\"v\"")]),
            Some(0),
            "stored, revalidated on every use"
        );
        let now = SystemTime::now();
        let p = policy(false);
        assert!(matches!(
            decide_at(&resp(200, &[]), &p, false, now),
            RespCacheable::Uncacheable(_)
        ));
        assert_eq!(
            fresh(503, &[("cache-control", "public")]),
            Some(10),
            "public errors kept briefly"
        );
        let mut no_heuristic = policy(true);
        no_heuristic.heuristic = Heuristic::None;
        assert!(matches!(
            decide_at(&resp(200, &[]), &no_heuristic, false, now),
            RespCacheable::Uncacheable(_)
        ));
        let mut by_date = policy(true);
        by_date.heuristic = Heuristic::LastModified;
        let date = httpdate::fmt_http_date(now);
        let day_ago = httpdate::fmt_http_date(now - Duration::from_secs(1000));
        let c = decide_at(
            &resp(200, &[("date", &date), ("last-modified", &day_ago)]),
            &by_date,
            false,
            now,
        );
        let left = fresh_secs(&c, now).unwrap();
        assert!(
            (99..=100).contains(&left),
            "a tenth of the time since: {left}"
        );
        assert!(matches!(
            decide_at(&resp(200, &[("date", &date)]), &by_date, false, now),
            RespCacheable::Uncacheable(_)
        ));
    }

    #[test]
    fn authorization_needs_permission() {
        let now = SystemTime::now();
        let p = policy(true);
        for (cc, stored) in [
            ("max-age=60", false),
            ("public, max-age=60", true),
            ("s-maxage=60", true),
            ("must-revalidate, max-age=60", true),
        ] {
            let c = decide_at(&resp(200, &[("cache-control", cc)]), &p, true, now);
            assert_eq!(matches!(c, RespCacheable::Cacheable(_)), stored, "{cc}");
        }
    }

    #[test]
    fn cookies_are_not_stored_nor_private_fields() {
        assert_eq!(
            fresh(
                200,
                &[("cache-control", "max-age=60"), ("set-cookie", "a=b")]
            ),
            None
        );
        let now = SystemTime::now();
        let c = decide_at(
            &resp(
                200,
                &[
                    ("cache-control", "max-age=60, private=\"x-user\""),
                    ("x-user", "u"),
                    ("x-kept", "k"),
                ],
            ),
            &policy(true),
            false,
            now,
        );
        let RespCacheable::Cacheable(meta) = c else {
            panic!("stored")
        };
        let h = &meta.response_header().headers;
        assert!(h.get("x-user").is_none());
        assert_eq!(h.get("x-kept").unwrap(), "k");
    }

    #[test]
    fn revalidate_directives_close_stale_if_error() {
        let now = SystemTime::now();
        for (cc, window) in [
            ("max-age=60", 60),
            ("max-age=60, stale-if-error=300", 300),
            ("max-age=60, must-revalidate", 0),
            ("max-age=60, proxy-revalidate", 0),
            ("s-maxage=60", 0),
        ] {
            let RespCacheable::Cacheable(meta) = decide_at(
                &resp(200, &[("cache-control", cc)]),
                &policy(true),
                false,
                now,
            ) else {
                panic!("{cc} stored")
            };
            assert_eq!(meta.stale_if_error_sec(), window, "{cc}");
        }
    }
}
