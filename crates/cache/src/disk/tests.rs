//! The disk tier on its own: persistence across reopen, checks catching flipped bytes,
//! the byte bound under pressure, torn large entries.

use super::*;
use crate::meta::SerializedMeta;
use bytes::Bytes;
use format::{Header, Invalid};
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
