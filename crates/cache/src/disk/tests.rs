//! The disk tier on its own: persistence across reopen, checks catching flipped bytes,
//! the byte bound under pressure, torn large entries, large entries' metas rewritten in place
//! (and rewrites cut off by a crash).

use super::*;
use crate::meta::SerializedMeta;
use bytes::Bytes;
use format::{Header, Invalid};
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn meta() -> SerializedMeta {
    SerializedMeta {
        internal: b"i".to_vec(),
        header: b"h".to_vec(),
    }
}

fn key(n: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    k[8..].copy_from_slice(&n.to_le_bytes());
    k
}

fn body(n: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(n) as u8)
        .collect()
}

fn small_body(found: Found) -> Vec<u8> {
    match found {
        Found::Small { body, .. } => body.to_vec(),
        Found::Large { .. } => panic!("expected a small entry"),
    }
}

fn large_body(tier: &DiskTier, found: Found) -> io::Result<Vec<u8>> {
    let Found::Large { body, .. } = found else {
        panic!("expected a large entry")
    };
    let mut out = Vec::new();
    while (out.len() as u64) < body.len {
        let (block, start) = tier.read_blocks(&body, out.len() as u64, 3 * format::BLOCK / 2)?;
        assert_eq!(start, out.len() as u64);
        out.extend_from_slice(&block);
    }
    Ok(out)
}

#[test]
fn entries_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let tier = Arc::new(DiskTier::open(dir.path(), 64 << 20).unwrap());
        for n in 0..100 {
            tier.insert_small(&key(n), &meta(), &[Bytes::from(body(n, 1000 + n as usize))])
                .unwrap();
        }
        let mut w = tier.begin_large(key(1000), meta(), 3 << 20).unwrap();
        for chunk in body(1000, 3 << 20).chunks(100_000) {
            w.write(chunk).unwrap();
        }
        w.commit().unwrap();
    }
    let tier = DiskTier::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(tier.usage().objects, 101);
    for n in 0..100 {
        assert_eq!(
            small_body(tier.lookup(&key(n)).unwrap()),
            body(n, 1000 + n as usize)
        );
    }
    assert_eq!(
        large_body(&tier, tier.lookup(&key(1000)).unwrap()).unwrap(),
        body(1000, 3 << 20)
    );
}

#[test]
fn an_uncommitted_large_entry_is_gone_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let tier = Arc::new(DiskTier::open(dir.path(), 64 << 20).unwrap());
        let mut w = tier.begin_large(key(1), meta(), 2 << 20).unwrap();
        w.write(&body(1, 1 << 20)).unwrap();
        // A crash: neither commit nor the writer's own clean-up runs.
        std::mem::forget(w);
    }
    let tier = DiskTier::open(dir.path(), 64 << 20).unwrap();
    assert!(tier.lookup(&key(1)).is_none());
    assert_eq!(tier.usage().bytes, 0, "the torn file is removed");
}

#[test]
fn flipped_bytes_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let tier = Arc::new(DiskTier::open(dir.path(), 64 << 20).unwrap());
    tier.insert_small(&key(1), &meta(), &[Bytes::from(body(1, 5000))])
        .unwrap();
    tier.insert_small(&key(2), &meta(), &[Bytes::from(body(2, 5000))])
        .unwrap();
    let mut w = tier.begin_large(key(3), meta(), 1 << 20).unwrap();
    w.write(&body(3, 1 << 20)).unwrap();
    w.commit().unwrap();

    // Flip one body byte of entry 1 and one byte in the third block of entry 3.
    let file_with = |ext: &str| {
        let entries = std::fs::read_dir(dir.path()).unwrap().flatten();
        entries
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == ext))
            .unwrap()
    };
    let flip = |path: std::path::PathBuf, at: u64| {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0xff], at).unwrap();
    };
    flip(file_with("seg"), 64 + 2 + 100);
    flip(file_with("obj"), 64 + 2 + 2 * format::BLOCK as u64 + 7);

    assert!(
        tier.lookup(&key(1)).is_none(),
        "corrupt small entry is a miss"
    );
    assert_eq!(tier.usage().corrupt, 1);
    assert!(tier.lookup(&key(1)).is_none(), "and stays dropped");
    assert_eq!(
        small_body(tier.lookup(&key(2)).unwrap()),
        body(2, 5000),
        "its neighbour is fine"
    );

    let err = large_body(&tier, tier.lookup(&key(3)).unwrap()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert_eq!(tier.usage().corrupt, 2);
    assert!(
        tier.lookup(&key(3)).is_none(),
        "the large entry is dropped too"
    );

    // A refetch stores a good copy again.
    tier.insert_small(&key(1), &meta(), &[Bytes::from(body(1, 5000))])
        .unwrap();
    assert_eq!(small_body(tier.lookup(&key(1)).unwrap()), body(1, 5000));
}

#[test]
fn removing_a_large_entry_deletes_its_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let tier = Arc::new(DiskTier::open(dir.path(), 64 << 20).unwrap());
        let mut w = tier.begin_large(key(1), meta(), 1 << 20).unwrap();
        w.write(&body(1, 1 << 20)).unwrap();
        w.commit().unwrap();
        assert!(tier.remove(&key(1)));
        assert_eq!(tier.usage().bytes, 0);
    }
    let tier = DiskTier::open(dir.path(), 64 << 20).unwrap();
    assert!(
        tier.lookup(&key(1)).is_none(),
        "a purged large entry stays gone after a restart"
    );
}

#[test]
fn a_lowered_bound_is_enforced_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    {
        let tier = DiskTier::open(dir.path(), 64 << 20).unwrap();
        for n in 0..600 {
            tier.insert_small(&key(n), &meta(), &[Bytes::from(body(n, 100_000))])
                .unwrap();
        }
    }
    let tier = DiskTier::open(dir.path(), 16 << 20).unwrap();
    assert!(tier.usage().bytes <= 16 << 20, "{:?}", tier.usage());
    assert!(tier.lookup(&key(599)).is_some(), "the newest stay");
}

#[test]
fn a_header_with_absurd_lengths_is_corrupt_not_a_panic() {
    let mut b = format::encode_entry(key(1), &meta(), &[Bytes::from_static(b"x")], 0);
    // Rewrite the body length to something huge and re-seal the header's own checksum.
    b[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    let crc = crc32c::crc32c(&b[..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        Header::decode(&b),
        Err(Invalid::Corrupt("implausible lengths"))
    );
}

#[test]
fn usage_stays_under_the_bound_and_recent_keys_hit() {
    let dir = tempfile::tempdir().unwrap();
    let capacity = 16 << 20;
    let tier = Arc::new(DiskTier::open(dir.path(), capacity).unwrap());
    let object = 50_000usize;
    let count = (3 * capacity as usize) / object;
    for n in 0..count as u64 {
        tier.insert_small(&key(n), &meta(), &[Bytes::from(body(n, object))])
            .unwrap();
        let usage = tier.usage();
        assert!(
            usage.bytes <= capacity,
            "{} > {capacity} after {n}",
            usage.bytes
        );
    }
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= capacity, "files hold {on_disk} > {capacity}");
    for n in (count as u64 - 50)..count as u64 {
        assert_eq!(
            small_body(tier.lookup(&key(n)).expect("a recent key hits")),
            body(n, object)
        );
    }
    assert!(tier.lookup(&key(0)).is_none(), "the oldest were evicted");
    assert!(tier.usage().evicted_objects > 0);
}

/// A meta whose header part is `len` bytes, told apart by `n`.
fn meta_of(n: u8, len: usize) -> SerializedMeta {
    SerializedMeta {
        internal: vec![n; 8],
        header: (0..len).map(|i| (i as u8).wrapping_mul(13) ^ n).collect(),
    }
}

fn commit_large(tier: &Arc<DiskTier>, n: u64, meta: SerializedMeta, len: usize) {
    let mut w = tier.begin_large(key(n), meta, len as u64).unwrap();
    for chunk in body(n, len).chunks(100_000) {
        w.write(chunk).unwrap();
    }
    w.commit().unwrap();
}

/// The meta and body a lookup of `n` finds in a large entry.
fn large_entry(tier: &DiskTier, n: u64) -> (SerializedMeta, Vec<u8>) {
    let found = tier.lookup(&key(n)).expect("a large entry");
    let Found::Large { meta, .. } = &found else {
        panic!("expected a large entry")
    };
    let meta = meta.clone();
    (meta, large_body(tier, found).unwrap())
}

fn large_of(tier: &DiskTier, n: u64) -> LargeBody {
    match tier.lookup(&key(n)) {
        Some(Found::Large { body, .. }) => body,
        _ => panic!("expected a large entry"),
    }
}

/// The one large segment file in `dir`.
fn obj_file(dir: &std::path::Path) -> std::fs::File {
    let path = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "obj"))
        .expect("a large segment");
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

#[test]
fn a_rewritten_meta_is_served_with_the_same_body_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let len = (3 << 20) + 17;
    let metas = [
        meta_of(2, 150),
        meta_of(3, 1800), // grows past the first meta, within the room
        meta_of(4, 40),
        meta_of(5, 1000),
        meta_of(6, 3000),
    ];
    {
        let tier = Arc::new(DiskTier::open(dir.path(), 64 << 20).unwrap());
        commit_large(&tier, 1, meta_of(1, 100), len);
        let file_len = obj_file(dir.path()).metadata().unwrap().len();
        let reading = large_of(&tier, 1);
        for meta in &metas {
            assert_eq!(
                tier.rewrite_meta(&large_of(&tier, 1), meta).unwrap(),
                Rewrite::Rewritten
            );
            assert_eq!(large_entry(&tier, 1), (meta.clone(), body(1, len)));
        }
        // A reader that found the entry before the rewrites reads the body as it was.
        let mut out = Vec::new();
        while (out.len() as u64) < reading.len {
            let (block, _) = tier
                .read_blocks(&reading, out.len() as u64, 1 << 20)
                .unwrap();
            out.extend_from_slice(&block);
        }
        assert_eq!(out, body(1, len));
        assert_eq!(
            obj_file(dir.path()).metadata().unwrap().len(),
            file_len,
            "the file neither grew nor moved"
        );
        assert_eq!(tier.usage().objects, 1);
    }
    let tier = DiskTier::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(large_entry(&tier, 1), (metas[4].clone(), body(1, len)));
    assert_eq!(tier.usage().corrupt, 0);
}

#[test]
fn a_meta_that_outgrows_its_room_drops_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    {
        let tier = Arc::new(DiskTier::open(dir.path(), 64 << 20).unwrap());
        commit_large(&tier, 1, meta_of(1, 100), 1 << 20);
        let room = format::meta_room_for(meta_of(1, 100).size()) as usize;
        let too_big = meta_of(2, room);
        assert_eq!(
            tier.rewrite_meta(&large_of(&tier, 1), &too_big).unwrap(),
            Rewrite::Outgrown
        );
        assert!(tier.lookup(&key(1)).is_none());
        let usage = tier.usage();
        assert_eq!((usage.meta_outgrown, usage.bytes), (1, 0), "{usage:?}");
    }
    let tier = DiskTier::open(dir.path(), 64 << 20).unwrap();
    assert!(
        tier.lookup(&key(1)).is_none(),
        "and stays gone after a restart"
    );
}

/// Where a rewrite is cut off by a crash.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// The new meta is written, its header not yet.
    BeforeHeader,
    /// The new meta is written, its header half.
    InHeader,
    /// The header reached the disk, half the meta did not (no fsync orders them).
    InMeta,
}

/// Rewrites the meta of the one large entry in `dir` to `meta` the way `rewrite_meta` does,
/// cut off at `cut`.
fn rewrite_cut_off(dir: &std::path::Path, meta: &SerializedMeta, cut: Cut) {
    use std::os::unix::fs::FileExt;
    let file = obj_file(dir);
    let mut slots = [0u8; format::SLOTS_LEN];
    file.read_exact_at(&mut slots, 0).unwrap();
    let current = format::decode_slots(&slots).unwrap()[0];
    let header = current.header.rewritten(meta, 0).unwrap();
    let slot = 1 - current.index;
    let bytes = [&meta.internal[..], &meta.header[..]].concat();
    let (meta_at, header_at) = (
        header.meta_offset(slot) as u64,
        (slot * format::HEADER_LEN) as u64,
    );
    match cut {
        Cut::BeforeHeader => file.write_all_at(&bytes, meta_at).unwrap(),
        Cut::InHeader => {
            file.write_all_at(&bytes, meta_at).unwrap();
            file.write_all_at(&header.encode()[..32], header_at)
                .unwrap();
        }
        Cut::InMeta => {
            file.write_all_at(&bytes[..bytes.len() / 2], meta_at)
                .unwrap();
            file.write_all_at(&header.encode(), header_at).unwrap();
        }
    }
}

#[test]
fn a_rewrite_cut_off_leaves_the_older_meta() {
    let len = 2 << 20;
    let (first, second, third) = (meta_of(1, 200), meta_of(2, 900), meta_of(3, 2500));
    for cut in [Cut::BeforeHeader, Cut::InHeader, Cut::InMeta] {
        let dir = tempfile::tempdir().unwrap();
        {
            let tier = Arc::new(DiskTier::open(dir.path(), 64 << 20).unwrap());
            commit_large(&tier, 1, first.clone(), len);
        }
        // Cut off on the first rewrite (into slot 1), then on a later one (into slot 0, over
        // the region the first meta was in).
        rewrite_cut_off(dir.path(), &second, cut);
        let tier = Arc::new(DiskTier::open(dir.path(), 64 << 20).unwrap());
        assert_eq!(
            large_entry(&tier, 1),
            (first.clone(), body(1, len)),
            "{cut:?}"
        );
        assert_eq!(
            tier.rewrite_meta(&large_of(&tier, 1), &second).unwrap(),
            Rewrite::Rewritten,
            "a rewrite after the crash takes the slot it left broken ({cut:?})"
        );
        tier.close();
        rewrite_cut_off(dir.path(), &third, cut);
        let tier = DiskTier::open(dir.path(), 64 << 20).unwrap();
        assert_eq!(
            large_entry(&tier, 1),
            (second.clone(), body(1, len)),
            "{cut:?}"
        );
        assert_eq!(tier.usage().corrupt, 0, "{cut:?}");
    }
}

#[test]
fn lookups_racing_rewrites_find_one_meta_or_another() {
    let dir = tempfile::tempdir().unwrap();
    let tier = Arc::new(DiskTier::open(dir.path(), 64 << 20).unwrap());
    let metas: Vec<SerializedMeta> = (0..4).map(|n| meta_of(n, 100 + 700 * n as usize)).collect();
    commit_large(&tier, 1, metas[0].clone(), 1 << 20);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for round in 0..2000 {
                let meta = &metas[round % metas.len()];
                let rewrite = tier.rewrite_meta(&large_of(&tier, 1), meta).unwrap();
                assert_eq!(rewrite, Rewrite::Rewritten);
            }
            done.store(true, Ordering::Relaxed);
        });
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let Some(Found::Large { meta, .. }) = tier.lookup(&key(1)) else {
                        panic!("a lookup missed while the meta was rewritten");
                    };
                    assert!(metas.contains(&meta));
                }
            });
        }
    });
    assert_eq!(tier.usage().corrupt, 0);
}

/// Large entries written before the two header slots (format version 1) are still served; a
/// 304 drops them, as it did then.
#[test]
fn a_large_entry_of_version_1_is_read_and_dropped_on_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let len = 600_000;
    let entry = format::encode_entry(key(1), &meta(), &[Bytes::from(body(1, len))], 0);
    std::fs::write(
        dir.path().join(segment::file_name(7, segment::Kind::Large)),
        entry,
    )
    .unwrap();
    let tier = Arc::new(DiskTier::open(dir.path(), 64 << 20).unwrap());
    assert_eq!(large_entry(&tier, 1), (meta(), body(1, len)));
    assert_eq!(
        tier.rewrite_meta(&large_of(&tier, 1), &meta_of(2, 10))
            .unwrap(),
        Rewrite::Outgrown
    );
    assert!(tier.lookup(&key(1)).is_none());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "its file is gone"
    );
}

#[test]
fn every_file_in_the_folder_is_counted_or_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // Not the cache's: counted against the size, left alone.
    std::fs::write(dir.path().join("notes.txt"), vec![1u8; 1 << 20]).unwrap();
    // A segment that cannot be opened (a directory by a segment's name): cannot be removed
    // as a file either, so counted.
    let stuck = dir.path().join(segment::file_name(7, segment::Kind::Small));
    std::fs::create_dir(&stuck).unwrap();
    std::fs::write(stuck.join("inside"), vec![2u8; 1 << 20]).unwrap();
    // A segment file that cannot be opened as one (no read access is no obstacle to root,
    // so: one whose open fails) is removed; here, a broken symlink by a segment's name.
    let dangling = dir.path().join(segment::file_name(8, segment::Kind::Large));
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();

    let tier = DiskTier::open(dir.path(), 64 << 20).unwrap();
    let used = tier.usage().bytes;
    assert!(used >= 1 << 20, "the foreign file is counted: {used}");
    assert!(dir.path().join("notes.txt").exists(), "and left alone");
    assert!(
        std::fs::symlink_metadata(&dangling).is_err(),
        "the unopenable segment is removed"
    );
    assert!(stuck.exists());
}
