//! Storage engine micro-benchmarks: memory hit, disk hit (small entry and a large object's
//! throughput), insert, and index rebuild. `CDN_BENCH_OBJECTS` sets how many objects the
//! rebuild bench lays down (default 100,000); it also prints the index's RAM per object.
//!
//!     cargo bench -p cdn-benches --bench storage
//!     CDN_BENCH_OBJECTS=1000000 cargo bench -p cdn-benches --bench storage -- rebuild

use bytes::Bytes;
use cdn_cache::{DiskTier, HybridStorage, MemoryTier, SerializedMeta};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pingora_cache::storage::HitHandler;
use pingora_cache::trace::Span;
use pingora_cache::{CacheKey, CacheMeta, Storage};
use pingora_http::ResponseHeader;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

fn meta(len: usize) -> CacheMeta {
    let mut header = ResponseHeader::build(200, None).unwrap();
    header
        .insert_header("content-length", len.to_string())
        .unwrap();
    header
        .insert_header("content-type", "application/octet-stream")
        .unwrap();
    header
        .insert_header("etag", "\"0123456789abcdef\"")
        .unwrap();
    header
        .insert_header("cache-control", "public, max-age=3600")
        .unwrap();
    let now = SystemTime::now();
    CacheMeta::new(now + Duration::from_secs(3600), now, 0, 0, header)
}

fn engine(memory: u64, disk: Option<(&std::path::Path, u64)>) -> &'static HybridStorage {
    let memory = (memory > 0).then(|| MemoryTier::new(memory, 256 << 20));
    let disk = disk.map(|(path, size)| DiskTier::open(path, size).unwrap());
    Box::leak(Box::new(HybridStorage::new(memory, disk)))
}

async fn put(storage: &'static HybridStorage, key: &CacheKey, body: &[u8]) {
    let span = Span::inactive().handle();
    let mut miss = storage
        .get_miss_handler(key, &meta(body.len()), &span)
        .await
        .unwrap();
    for chunk in body.chunks(64 * 1024) {
        miss.write_body(Bytes::copy_from_slice(chunk), false)
            .await
            .unwrap();
    }
    miss.finish().await.unwrap();
}

async fn read(hit: &mut HitHandler) -> usize {
    let mut n = 0;
    while let Some(chunk) = hit.read_body().await.unwrap() {
        n += chunk.len();
    }
    n
}

async fn hit(storage: &'static HybridStorage, key: &CacheKey) -> usize {
    let span = Span::inactive().handle();
    let (_meta, mut handler) = storage.lookup(key, &span).await.unwrap().expect("a hit");
    read(&mut handler).await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn memory_hit(c: &mut Criterion) {
    let rt = runtime();
    let storage = engine(256 << 20, None);
    let mut group = c.benchmark_group("memory_hit");
    for size in [1 << 10, 100 << 10, 1 << 20] {
        let key = CacheKey::new(format!("/mem/{size}"), "");
        rt.block_on(put(storage, &key, &vec![7u8; size]));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("{size}B"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(hit(storage, &key).await) })
        });
    }
    group.finish();
}

fn disk_hit(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let storage = engine(0, Some((dir.path(), 1 << 30)));
    let mut group = c.benchmark_group("disk_hit");
    // 4 KiB: a small entry read whole and checked; 64 MiB: a large entry streamed block by block.
    for size in [4 << 10, 64 << 20] {
        let key = CacheKey::new(format!("/disk/{size}"), "");
        rt.block_on(put(storage, &key, &vec![3u8; size]));
        group.throughput(Throughput::Bytes(size as u64));
        if size > 1 << 20 {
            group.sample_size(10);
        }
        group.bench_function(format!("{size}B"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(hit(storage, &key).await) })
        });
    }
    group.finish();
}

fn insert(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let storage = engine(0, Some((dir.path(), 1 << 30)));
    let body = vec![5u8; 4 << 10];
    let mut n = 0u64;
    let mut group = c.benchmark_group("insert");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("4096B_disk", |b| {
        b.to_async(&rt).iter_batched(
            || {
                n += 1;
                CacheKey::new(format!("/insert/{n}"), "")
            },
            |key| {
                let body = &body;
                async move { put(storage, black_box(&key), body).await }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn rebuild(c: &mut Criterion) {
    let objects: usize = std::env::var("CDN_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let (internal, header) = meta(100).serialize().unwrap();
    let meta = SerializedMeta { internal, header };
    let started = Instant::now();
    {
        let tier = DiskTier::open(dir.path(), 8 << 30).unwrap();
        let body = [Bytes::from(vec![1u8; 100])];
        for i in 0..objects as u64 {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
            key[8..].copy_from_slice(&i.to_le_bytes());
            tier.insert_small(&key, &meta, &body).unwrap();
        }
    }
    eprintln!("laid down {objects} objects in {:?}", started.elapsed());
    let tier = DiskTier::open(dir.path(), 8 << 30).unwrap();
    let usage = tier.usage();
    eprintln!(
        "index: {} objects, {:.1} bytes of RAM per object",
        usage.objects, usage.index_bytes_per_object
    );
    drop(tier);
    let mut group = c.benchmark_group("rebuild");
    group.sample_size(10);
    group.bench_function(format!("{objects}_objects"), |b| {
        b.iter(|| black_box(DiskTier::open(dir.path(), 8 << 30).unwrap().usage().objects))
    });
    group.finish();
}

criterion_group!(storage, memory_hit, disk_hit, insert, rebuild);
criterion_main!(storage);
