//! What the cache did with a request, read off pingora-cache's phase and put in the words
//! `cdn_observe` formats (`Cache-Status`) and counts (metrics). Decided in one place, so the
//! header and the metrics cannot disagree.

use cdn_observe::{CacheUse, Outcome};
use pingora::cache::{CacheMeta, CachePhase};
use pingora::proxy::Session;

/// Brings `outcome` up to what the session's cache did. `looked_up`: caching was enabled for
/// the request (the cache may have been disabled since, e.g. for an unstorable response: that
/// is still a miss).
pub fn settle(session: &Session, outcome: &mut Outcome, looked_up: bool) {
    outcome.cache = if session.cache.enabled() || looked_up {
        match session.cache.phase() {
            CachePhase::Hit => CacheUse::Hit,
            CachePhase::Stale => CacheUse::Stale,
            CachePhase::StaleUpdating => CacheUse::StaleWhileRevalidate,
            CachePhase::Miss => CacheUse::Miss,
            CachePhase::Expired => CacheUse::Expired,
            CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => CacheUse::Revalidated,
            _ if looked_up => CacheUse::Miss,
            _ => CacheUse::Bypass,
        }
    } else {
        CacheUse::Bypass
    };
    if outcome.cache == CacheUse::Hit {
        outcome.collapsed = session.cache.lock_duration().is_some();
        outcome.fresh_until = session.cache.maybe_cache_meta().map(CacheMeta::fresh_until);
    }
}
