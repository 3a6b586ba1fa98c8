//! Prometheus metrics of one tier, created once at start-up with every labelled series, so
//! recording a request does no label lookup: an index into a fixed array and a few atomics.
//! Labels are bounded: tier, cache result, status class, upstream result, phase, medium.
//! No URL, key, credential or client address ever becomes a label value.

use crate::Tier;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a tier did with a request, for the `cache` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    Stale,
    Revalidated,
    Collapsed,
    Bypass,
    Error,
}

impl CacheResult {
    pub const ALL: [CacheResult; 7] = [
        CacheResult::Hit,
        CacheResult::Miss,
        CacheResult::Stale,
        CacheResult::Revalidated,
        CacheResult::Collapsed,
        CacheResult::Bypass,
        CacheResult::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Stale => "stale",
            CacheResult::Revalidated => "revalidated",
            CacheResult::Collapsed => "collapsed",
            CacheResult::Bypass => "bypass",
            CacheResult::Error => "error",
        }
    }
}

/// How an upstream exchange ended, for the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamResult {
    Ok,
    Error,
    Timeout,
}

const UPSTREAM_RESULTS: [&str; 3] = ["ok", "error", "timeout"];
const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const MEDIA: [&str; 2] = ["memory", "disk"];

/// From 50 µs (a memory hit) to 60 s (a large miss).
const LATENCY_BUCKETS: [f64; 19] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Cache contents as the storage reports them, for the gauges and eviction counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheFigures {
    pub memory_objects: u64,
    pub memory_bytes: u64,
    pub memory_evictions: u64,
    pub disk_objects: u64,
    pub disk_bytes: u64,
    pub disk_evictions: u64,
    pub corrupt: u64,
    /// Disk writes that failed (full, read-only, out of descriptors, I/O errors).
    pub disk_faults: u64,
}

pub struct Metrics {
    registry: Registry,
    duration: Vec<Histogram>,
    bytes: Vec<IntCounter>,
    requests: Vec<IntCounter>,
    upstream: Vec<IntCounter>,
    upstream_first_byte: Histogram,
    upstream_last_byte: Histogram,
    collapsed: IntCounter,
    objects: Vec<IntGauge>,
    cache_bytes: Vec<IntGauge>,
    evictions: Vec<IntCounter>,
    corrupt: IntCounter,
    disk_faults: IntCounter,
    integrity_failures: IntCounter,
    variants_refused: IntCounter,
    /// Storage counters already added to the prometheus counters.
    seen: [AtomicU64; 4],
}

impl Metrics {
    /// Every family and series of `tier`.
    pub fn new(tier: Tier) -> Metrics {
        let tier = tier.label();
        let registry = Registry::new();
        let register = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique")
        };
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "cdn_request_duration_seconds",
                "Time from request to the end of the response, by tier and cache result",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["tier", "cache"],
        )
        .expect("valid histogram");
        let bytes = IntCounterVec::new(
            Opts::new(
                "cdn_response_bytes_total",
                "Body bytes sent to clients, by tier and cache result",
            ),
            &["tier", "cache"],
        )
        .expect("valid counter");
        let requests = IntCounterVec::new(
            Opts::new(
                "cdn_requests_total",
                "Requests answered, by tier and status class",
            ),
            &["tier", "code_class"],
        )
        .expect("valid counter");
        let upstream = IntCounterVec::new(
            Opts::new(
                "cdn_upstream_requests_total",
                "Requests sent upstream, by how they ended",
            ),
            &["tier", "result"],
        )
        .expect("valid counter");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "cdn_upstream_duration_seconds",
                "Upstream time to first byte and to last byte",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["tier", "phase"],
        )
        .expect("valid histogram");
        let collapsed = IntCounterVec::new(
            Opts::new(
                "cdn_collapsed_requests_total",
                "Requests that waited for another request's fill instead of going upstream",
            ),
            &["tier"],
        )
        .expect("valid counter");
        let objects = IntGaugeVec::new(
            Opts::new("cdn_cache_objects", "Objects held, by medium"),
            &["tier", "medium"],
        )
        .expect("valid gauge");
        let cache_bytes = IntGaugeVec::new(
            Opts::new("cdn_cache_bytes", "Bytes held (disk: allocated), by medium"),
            &["tier", "medium"],
        )
        .expect("valid gauge");
        let evictions = IntCounterVec::new(
            Opts::new("cdn_cache_evictions_total", "Objects evicted, by medium"),
            &["tier", "medium"],
        )
        .expect("valid counter");
        let corrupt = IntCounterVec::new(
            Opts::new(
                "cdn_cache_corrupt_entries_total",
                "Cache entries that failed a checksum and were dropped",
            ),
            &["tier"],
        )
        .expect("valid counter");
        let disk_faults = IntCounterVec::new(
            Opts::new(
                "cdn_cache_disk_faults_total",
                "Disk cache writes that failed; misses then pass through uncached for a while",
            ),
            &["tier"],
        )
        .expect("valid counter");
        let integrity_failures = IntCounterVec::new(
            Opts::new(
                "cdn_integrity_failures_total",
                "Upstream bodies that did not hash to the digest their path or Repr-Digest names; \
                 neither stored nor served whole",
            ),
            &["tier"],
        )
        .expect("valid counter");
        let variants_refused = IntCounterVec::new(
            Opts::new(
                "cdn_cache_variants_refused_total",
                "Responses not stored because their primary key already has the most Vary \
                 variants allowed (cache.max_variants); served uncached",
            ),
            &["tier"],
        )
        .expect("valid counter");
        for c in [
            &duration as &dyn CloneCollector,
            &bytes,
            &requests,
            &upstream,
            &upstream_duration,
            &collapsed,
            &objects,
            &cache_bytes,
            &evictions,
            &corrupt,
            &disk_faults,
            &integrity_failures,
            &variants_refused,
        ] {
            register(c.boxed());
        }
        Metrics {
            duration: CacheResult::ALL
                .iter()
                .map(|r| duration.with_label_values(&[tier, r.as_str()]))
                .collect(),
            bytes: CacheResult::ALL
                .iter()
                .map(|r| bytes.with_label_values(&[tier, r.as_str()]))
                .collect(),
            requests: CODE_CLASSES
                .iter()
                .map(|c| requests.with_label_values(&[tier, c]))
                .collect(),
            upstream: UPSTREAM_RESULTS
                .iter()
                .map(|r| upstream.with_label_values(&[tier, r]))
                .collect(),
            upstream_first_byte: upstream_duration.with_label_values(&[tier, "first_byte"]),
            upstream_last_byte: upstream_duration.with_label_values(&[tier, "last_byte"]),
            collapsed: collapsed.with_label_values(&[tier]),
            objects: MEDIA
                .iter()
                .map(|m| objects.with_label_values(&[tier, m]))
                .collect(),
            cache_bytes: MEDIA
                .iter()
                .map(|m| cache_bytes.with_label_values(&[tier, m]))
                .collect(),
            evictions: MEDIA
                .iter()
                .map(|m| evictions.with_label_values(&[tier, m]))
                .collect(),
            corrupt: corrupt.with_label_values(&[tier]),
            disk_faults: disk_faults.with_label_values(&[tier]),
            integrity_failures: integrity_failures.with_label_values(&[tier]),
            variants_refused: variants_refused.with_label_values(&[tier]),
            seen: Default::default(),
            registry,
        }
    }

    /// One finished request.
    pub fn request(&self, result: CacheResult, status: u16, body_bytes: usize, took: Duration) {
        let i = CacheResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        self.duration[i].observe(took.as_secs_f64());
        self.bytes[i].inc_by(body_bytes as u64);
        if (100..600).contains(&status) {
            self.requests[usize::from(status / 100 - 1)].inc();
        }
        if result == CacheResult::Collapsed {
            self.collapsed.inc();
        }
    }

    pub fn upstream(&self, result: UpstreamResult) {
        self.upstream[result as usize].inc();
    }

    pub fn upstream_first_byte(&self, took: Duration) {
        self.upstream_first_byte.observe(took.as_secs_f64());
    }

    pub fn upstream_last_byte(&self, took: Duration) {
        self.upstream_last_byte.observe(took.as_secs_f64());
    }

    /// An upstream body that did not hash to what it was expected to.
    pub fn integrity_failure(&self) {
        self.integrity_failures.inc();
    }

    /// A response not stored: its primary key has the most variants allowed.
    pub fn variant_refused(&self) {
        self.variants_refused.inc();
    }

    /// Brings the cache gauges and counters up to what the storage reports.
    pub fn cache(&self, f: &CacheFigures) {
        self.objects[0].set(f.memory_objects as i64);
        self.cache_bytes[0].set(f.memory_bytes as i64);
        self.objects[1].set(f.disk_objects as i64);
        self.cache_bytes[1].set(f.disk_bytes as i64);
        let advance = |seen: &AtomicU64, now: u64, counter: &IntCounter| {
            let before = seen.swap(now, Ordering::Relaxed);
            counter.inc_by(now.saturating_sub(before));
        };
        advance(&self.seen[0], f.memory_evictions, &self.evictions[0]);
        advance(&self.seen[1], f.disk_evictions, &self.evictions[1]);
        advance(&self.seen[2], f.corrupt, &self.corrupt);
        advance(&self.seen[3], f.disk_faults, &self.disk_faults);
    }

    /// The text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Lets the vectors above be registered from one list.
trait CloneCollector {
    fn boxed(&self) -> Box<dyn prometheus::core::Collector>;
}

impl<T: prometheus::core::Collector + Clone + 'static> CloneCollector for T {
    fn boxed(&self) -> Box<dyn prometheus::core::Collector> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_exists_before_any_request() {
        let m = Metrics::new(Tier::Edge);
        let text = String::from_utf8(m.render()).unwrap();
        for family in [
            "cdn_request_duration_seconds_bucket",
            "cdn_requests_total",
            "cdn_response_bytes_total",
            "cdn_upstream_requests_total",
            "cdn_upstream_duration_seconds_bucket",
            "cdn_collapsed_requests_total",
            "cdn_cache_objects",
            "cdn_cache_bytes",
            "cdn_cache_evictions_total",
            "cdn_cache_corrupt_entries_total",
            "cdn_integrity_failures_total",
            "cdn_cache_variants_refused_total",
        ] {
            assert!(text.contains(family), "{family} missing");
        }
        assert!(
            text.contains(r#"cdn_request_duration_seconds_count{cache="collapsed",tier="edge"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn counters_follow_the_storage() {
        let m = Metrics::new(Tier::Shield);
        m.request(CacheResult::Hit, 200, 1024, Duration::from_micros(80));
        m.cache(&CacheFigures {
            disk_evictions: 5,
            corrupt: 1,
            ..Default::default()
        });
        m.cache(&CacheFigures {
            disk_evictions: 7,
            corrupt: 1,
            ..Default::default()
        });
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(r#"cdn_cache_evictions_total{medium="disk",tier="shield"} 7"#),
            "{text}"
        );
        assert!(text.contains(r#"cdn_cache_corrupt_entries_total{tier="shield"} 1"#));
        assert!(text.contains(r#"cdn_integrity_failures_total{tier="shield"} 0"#));
        m.integrity_failure();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(r#"cdn_integrity_failures_total{tier="shield"} 1"#));
        assert!(text.contains(r#"cdn_requests_total{code_class="2xx",tier="shield"} 1"#));
        assert!(text.contains(r#"cdn_response_bytes_total{cache="hit",tier="shield"} 1024"#));
    }
}
