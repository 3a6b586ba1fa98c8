//! The storage engine through pingora-cache's `Storage` API: many readers and writers on
//! overlapping keys at once, across the memory tier, small disk entries, large disk entries
//! and unfinished fills, and 304s on large objects; every body read is checked by sha256.

use cdn_cache::{DiskTier, HybridStorage, MemoryTier};
use pingora_cache::key::CacheHashKey;
use pingora_cache::trace::Span;
use pingora_cache::{CacheKey, CacheMeta, Storage};
use pingora_http::ResponseHeader;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::{Duration, SystemTime};

const KEYS: usize = 24;

fn size_of(key: usize) -> usize {
    // From empty to past the 8 MiB small-entry limit of a 256 MiB disk tier.
    [0, 1, 1000, 70_000, 300_000, 2 << 20, 12 << 20][key % 7]
}

fn body_of(key: usize) -> Vec<u8> {
    (0..size_of(key))
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8 ^ key as u8)
        .collect()
}

fn meta_for(len: usize) -> CacheMeta {
    let mut header = ResponseHeader::build(200, None).unwrap();
    header
        .insert_header("content-length", len.to_string())
        .unwrap();
    let now = SystemTime::now();
    CacheMeta::new(now + Duration::from_secs(3600), now, 0, 0, header)
}

/// A storage of `memory` bytes in front of a disk tier of `disk` bytes in `dir`, opened now
/// (its index rebuilt from what the folder holds), for the life of the test process.
fn open(dir: &Path, memory: u64, max_object: u64, disk: u64) -> &'static HybridStorage {
    let memory = MemoryTier::new(memory, max_object);
    let disk = DiskTier::open(dir, disk).unwrap();
    Box::leak(Box::new(HybridStorage::new(Some(memory), Some(disk))))
}

async fn read_all(hit: &mut pingora_cache::storage::HitHandler) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = hit.read_body().await.expect("read body") {
        out.extend_from_slice(&chunk);
    }
    out
}

async fn worker(
    storage: &'static HybridStorage,
    id: usize,
    expected: &'static [String],
) -> (usize, usize) {
    let span = Span::inactive().handle();
    let (mut hits, mut fills) = (0, 0);
    for round in 0..12 {
        let k = (id * 7 + round * 5) % KEYS;
        let key = CacheKey::new(format!("/object/{k}"), "");
        match storage.lookup(&key, &span).await.expect("lookup") {
            Some((_meta, mut hit)) => {
                let body = read_all(&mut hit).await;
                let got: String = Sha256::digest(&body)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(got, expected[k], "key {k} read by worker {id}");
                hits += 1;
            }
            None => {
                let body = body_of(k);
                let mut miss = storage
                    .get_miss_handler(&key, &meta_for(body.len()), &span)
                    .await
                    .expect("miss handler");
                for chunk in body.chunks(64 * 1024) {
                    miss.write_body(bytes::Bytes::copy_from_slice(chunk), false)
                        .await
                        .expect("write");
                    tokio::task::yield_now().await;
                }
                miss.finish().await.expect("finish");
                fills += 1;
            }
        }
    }
    (hits, fills)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_readers_and_writers_see_whole_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let open = || open(dir.path(), 4 << 20, 64 << 20, 256 << 20);
    let storage = open();
    let expected: &'static [String] = Box::leak(
        (0..KEYS)
            .map(|k| {
                Sha256::digest(body_of(k))
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            })
            .collect(),
    );
    let tasks: Vec<_> = (0..32)
        .map(|id| tokio::spawn(worker(storage, id, expected)))
        .collect();
    let (mut hits, mut fills) = (0, 0);
    for t in tasks {
        let (h, f) = t.await.expect("worker");
        hits += h;
        fills += f;
    }
    assert!(hits > 0 && fills >= KEYS, "hits {hits}, fills {fills}");
    let usage = storage.usage();
    let disk = usage.disk.expect("disk usage");
    assert!(disk.objects >= KEYS - 1, "{usage:?}");
    assert_eq!(disk.corrupt, 0);
    assert!(usage.memory_objects > 0, "{usage:?}");

    // A second engine opened on the same folder (as after a restart) rebuilds its index from
    // what the first wrote and serves every key from disk.
    let reopened = open();
    let span = Span::inactive().handle();
    for k in 0..KEYS {
        let key = CacheKey::new(format!("/object/{k}"), "");
        let (_meta, mut hit) = reopened
            .lookup(&key, &span)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("key {k} after reopen"));
        assert_eq!(read_all(&mut hit).await, body_of(k), "key {k} after reopen");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_hit_is_promoted_to_memory() {
    let dir = tempfile::tempdir().unwrap();
    let open = || open(dir.path(), 16 << 20, 8 << 20, 64 << 20);
    let span = Span::inactive().handle();
    let key = CacheKey::new("/promoted", "");
    let body = body_of(4);
    {
        let first = open();
        let mut miss = first
            .get_miss_handler(&key, &meta_for(body.len()), &span)
            .await
            .unwrap();
        miss.write_body(bytes::Bytes::from(body.clone()), true)
            .await
            .unwrap();
        miss.finish().await.unwrap();
    }
    // A fresh engine on the same folder: empty memory tier, the object on disk.
    let engine = open();
    assert_eq!(engine.usage().memory_objects, 0);
    let (_meta, mut hit) = engine.lookup(&key, &span).await.unwrap().expect("disk hit");
    assert_eq!(read_all(&mut hit).await, body);
    assert_eq!(
        engine.usage().memory_objects,
        1,
        "the disk hit now sits in memory too"
    );
}

/// Regression: a refetch that goes to disk as a large entry must not stay hidden behind the
/// older, smaller copy in the memory tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_large_copy_replaces_an_older_one_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let open = || open(dir.path(), 64 << 20, 32 << 20, 64 << 20);
    let engine = open();
    let span = Span::inactive().handle();
    let key = CacheKey::new("/grows", "");
    for body in [vec![1u8; 1000], vec![2u8; 6 << 20]] {
        let mut miss = engine
            .get_miss_handler(&key, &meta_for(body.len()), &span)
            .await
            .unwrap();
        miss.write_body(bytes::Bytes::from(body.clone()), true)
            .await
            .unwrap();
        miss.finish().await.unwrap();
        let (_meta, mut hit) = engine.lookup(&key, &span).await.unwrap().expect("hit");
        assert_eq!(read_all(&mut hit).await, body);
    }
}

/// A header value of `len` characters that compression cannot shrink much.
fn noise(len: usize, seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[(x % 62) as usize]
                as char
        })
        .collect()
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The meta a 304 brings: new freshness, no ETag, a new Cache-Control, and a header as long
/// as `extra` says.
fn revalidated(len: usize, fresh: Duration, extra: usize) -> CacheMeta {
    let mut header = ResponseHeader::build(200, None).unwrap();
    header
        .insert_header("content-length", len.to_string())
        .unwrap();
    header
        .insert_header("cache-control", "public, max-age=86400")
        .unwrap();
    header.insert_header("x-extra", noise(extra, 7)).unwrap();
    let now = SystemTime::now();
    CacheMeta::new(now + fresh, now, 0, 0, header)
}

/// A 304 on a large disk object gives it the new meta and keeps its body, through a restart;
/// one whose meta grew past the room its entry keeps is dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_on_a_large_object_keeps_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let open = || open(dir.path(), 16 << 20, 8 << 20, 64 << 20);
    let span = Span::inactive().handle();
    let key = CacheKey::new("/large/revalidated", "");
    let body = body_of(6); // 12 MiB: a large entry of its own
    let digest = Sha256::digest(&body);
    let engine = open();
    let mut first = meta_for(body.len());
    first
        .response_header_mut()
        .insert_header("etag", "\"v1\"")
        .unwrap();
    let mut miss = engine.get_miss_handler(&key, &first, &span).await.unwrap();
    for chunk in body.chunks(1 << 20) {
        miss.write_body(bytes::Bytes::copy_from_slice(chunk), false)
            .await
            .unwrap();
    }
    miss.finish().await.unwrap();
    let (_, mut before) = engine.lookup(&key, &span).await.unwrap().expect("hit");

    let new = revalidated(body.len(), Duration::from_secs(7200), 1500);
    assert!(engine.update_meta(&key, &new, &span).await.unwrap());
    assert_eq!(
        Sha256::digest(read_all(&mut before).await),
        digest,
        "a hit from before the 304 reads on"
    );
    for engine in [engine, open()] {
        let (meta, mut hit) = engine.lookup(&key, &span).await.unwrap().expect("hit");
        assert!(meta.headers().get("etag").is_none());
        assert_eq!(
            meta.headers().get("cache-control").unwrap(),
            "public, max-age=86400"
        );
        assert_eq!(meta.headers().get("x-extra").unwrap(), &noise(1500, 7));
        assert_eq!(secs(meta.fresh_until()), secs(new.fresh_until()));
        assert_eq!(Sha256::digest(read_all(&mut hit).await), digest);
        let disk = engine.usage().disk.unwrap();
        assert_eq!((disk.corrupt, disk.meta_outgrown), (0, 0), "{disk:?}");
    }

    let engine = open();
    let outgrown = revalidated(body.len(), Duration::from_secs(60), 20_000);
    assert!(!engine.update_meta(&key, &outgrown, &span).await.unwrap());
    assert!(engine.lookup(&key, &span).await.unwrap().is_none());
    assert_eq!(engine.usage().disk.unwrap().meta_outgrown, 1);
}

/// Invalidating a primary key drops every variant stored under it, whatever their times, so
/// no variant stored in the same second as the purge can outlive it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidating_a_primary_drops_its_variants() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), 16 << 20, 8 << 20, 64 << 20);
    let span = Span::inactive().handle();
    let variant = |tag: &[u8]| {
        let mut key = CacheKey::new("/npm/left-pad", "");
        key.set_variance_key(variance(tag));
        key
    };
    let primary = CacheKey::new("/npm/left-pad", "");
    let other = CacheKey::new("/npm/right-pad", "");
    let stored: [(CacheKey, &'static [u8]); 4] = [
        (primary.clone(), b"primary"),
        (variant(b"full"), b"full"),
        (variant(b"short"), b"short"),
        (other.clone(), b"other"),
    ];
    for (key, body) in stored {
        let mut miss = engine
            .get_miss_handler(&key, &meta_for(body.len()), &span)
            .await
            .unwrap();
        miss.write_body(bytes::Bytes::from_static(body), true)
            .await
            .unwrap();
        miss.finish().await.unwrap();
    }
    for key in [&primary, &variant(b"full"), &variant(b"short")] {
        assert!(engine.lookup(key, &span).await.unwrap().is_some());
    }
    assert!(engine.invalidate(primary.combined_bin()));
    for key in [&primary, &variant(b"full"), &variant(b"short")] {
        assert!(engine.lookup(key, &span).await.unwrap().is_none());
    }
    assert!(
        engine.lookup(&other, &span).await.unwrap().is_some(),
        "another key stays"
    );
    assert!(
        !engine.invalidate(primary.combined_bin()),
        "nothing left to drop"
    );
}

/// A variance hash standing for one variant's request fields.
fn variance(tag: &[u8]) -> [u8; 16] {
    let digest = Sha256::digest(tag);
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}
