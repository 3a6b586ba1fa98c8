//! What recording one request's metrics costs on the hit path: one histogram observation and
//! two counter increments on pre-created series.
//!
//!     cargo bench -p cdn-benches --bench metrics

use cdn_observe::{CacheResult, Metrics, Tier};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;

fn record(c: &mut Criterion) {
    let metrics = Metrics::new(Tier::Edge);
    c.bench_function("metrics/record_hit", |b| {
        b.iter(|| {
            metrics.request(
                black_box(CacheResult::Hit),
                black_box(200),
                black_box(1024),
                black_box(Duration::from_micros(90)),
            )
        })
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
