//! Large objects fetched and cached as slices (`slice` on the route): a range moves only the
//! slices it covers from the origin, a whole object is assembled from them byte for byte, a
//! HEAD moves no body, and a stale slice is revalidated alone.

use sha2::{Digest, Sha256};
use std::io::Write;
use testkit::{download, request, Backend, Stack, StackOptions};

const SLICE: u64 = 8 << 20;
const GIB: u64 = 1 << 30;

/// The bytes of the test object at `range`: 8 MiB pieces of `pattern`, one seed per piece.
fn object_bytes(range: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    let mut piece = u64::MAX;
    let mut bytes = Vec::new();
    for at in range {
        if at / SLICE != piece {
            piece = at / SLICE;
            bytes = testkit::pattern(SLICE as usize, piece);
        }
        out.push(bytes[(at % SLICE) as usize]);
    }
    out
}

/// Body bytes the origin-adapter has sent so far, from its metrics.
fn origin_bytes(stack: &Stack) -> u64 {
    testkit::metric_total(stack.origin_admin, "cdn_response_bytes_total{")
}

#[test]
fn a_range_of_a_gib_moves_two_slices_and_the_whole_is_assembled_exactly() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("sliced")).unwrap();
    let mut expected = Sha256::new();
    {
        let file = std::fs::File::create(root.path().join("sliced/gib.bin")).unwrap();
        let mut f = std::io::BufWriter::new(file);
        for i in 0..GIB / SLICE {
            let piece = testkit::pattern(SLICE as usize, i);
            expected.update(&piece);
            f.write_all(&piece).unwrap();
        }
    }
    let expected: String = expected
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut options = StackOptions::new(Backend::Local(root.path().to_owned()));
    options.memory = "64MiB";
    options.max_object = "64MiB";
    options.disk = Some("2GiB");
    let stack = Stack::start(options);

    // A range across the border of slices 59 and 60, in the middle of the object.
    let (first, last) = (60 * SLICE - 500, 60 * SLICE + 499);
    let before = origin_bytes(&stack);
    let range = format!("bytes={first}-{last}");
    let r = request("GET", &stack.url("/sliced/gib.bin"), &[("Range", &range)]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {first}-{last}/{GIB}").as_str())
    );
    assert_eq!(&r.body[..], &object_bytes(first..last + 1)[..]);
    let moved = origin_bytes(&stack) - before;
    assert_eq!(moved, 2 * SLICE, "the origin sent exactly the two slices");

    // Again: both slices are kept at the edge.
    let r = request("GET", &stack.url("/sliced/gib.bin"), &[("Range", &range)]);
    assert_eq!(r.status, 206);
    assert_eq!(origin_bytes(&stack) - before, 2 * SLICE);

    // A range from the end, within the last slice. The length is learnt from slice 0, which
    // is fetched (and kept) too; its fill may finish after the answer.
    let r = request(
        "GET",
        &stack.url("/sliced/gib.bin"),
        &[("Range", "bytes=-100")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(&r.body[..], &object_bytes(GIB - 100..GIB)[..]);
    testkit::eventually("slice 0 and the last slice", || {
        (origin_bytes(&stack) - before == 4 * SLICE).then_some(())
    });

    // HEAD moves no body, anywhere.
    let r = request("HEAD", &stack.url("/sliced/gib.bin"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(GIB.to_string().as_str()));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(origin_bytes(&stack) - before, 4 * SLICE);

    // The whole object, assembled from slices: every byte right, each slice fetched once.
    let whole = download(stack.edge, "/sliced/gib.bin", &[]);
    assert!(whole.whole_200(), "{whole:?}");
    assert_eq!(
        (whole.body_len, whole.sha256.as_str()),
        (GIB, expected.as_str())
    );
    assert_eq!(origin_bytes(&stack) - before, GIB);

    // Out of range.
    let r = request(
        "GET",
        &stack.url("/sliced/gib.bin"),
        &[("Range", "bytes=2147483648-")],
    );
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{GIB}").as_str())
    );
}

#[test]
fn a_stale_slice_is_revalidated_alone() {
    // Four slices of 64 KiB, kept for a second.
    let body = testkit::pattern(256 << 10, 9);
    let root = testkit::origin_dir(&[("sliced-short/s.bin", &body)]);
    let stack = Stack::start(StackOptions::new(Backend::Local(root.path().to_owned())));
    let whole = request("GET", &stack.url("/sliced-short/s.bin"), &[]);
    assert_eq!((whole.status, &whole.body[..]), (200, &body[..]));
    let before = origin_bytes(&stack);
    let asked = testkit::answered(stack.origin_admin);

    std::thread::sleep(std::time::Duration::from_millis(1500));
    // A range inside slice 2: that slice alone is revalidated (a 304, no body), through
    // both tiers.
    let r = request(
        "GET",
        &stack.url("/sliced-short/s.bin"),
        &[("Range", "bytes=140000-140009")],
    );
    assert_eq!((r.status, &r.body[..]), (206, &body[140000..140010]));
    assert_eq!(
        testkit::answered(stack.origin_admin) - asked,
        1,
        "one revalidation"
    );
    assert_eq!(origin_bytes(&stack), before, "no slice body moved again");
}

#[test]
fn empty_and_small_objects_and_if_range() {
    let small = testkit::pattern(10 << 10, 4);
    let big = testkit::pattern(200 << 10, 5);
    let root = testkit::origin_dir(&[
        ("sliced-short/empty.bin", &[][..]),
        ("sliced-short/small.bin", &small[..]),
        ("sliced-short/big.bin", &big[..]),
    ]);
    let stack = Stack::start(StackOptions::new(Backend::Local(root.path().to_owned())));

    let r = request("GET", &stack.url("/sliced-short/empty.bin"), &[]);
    assert_eq!((r.status, r.body.len()), (200, 0));
    let r = request("GET", &stack.url("/sliced-short/small.bin"), &[]);
    assert_eq!((r.status, &r.body[..]), (200, &small[..]));

    let whole = request("GET", &stack.url("/sliced-short/big.bin"), &[]);
    let etag = whole.header("etag").expect("an ETag").to_owned();
    assert!(!etag.starts_with("W/"), "{etag}");
    // The range holds for the version it names; for another, the whole object.
    let r = request(
        "GET",
        &stack.url("/sliced-short/big.bin"),
        &[("Range", "bytes=70000-70009"), ("If-Range", &etag)],
    );
    assert_eq!((r.status, &r.body[..]), (206, &big[70000..70010]));
    let r = request(
        "GET",
        &stack.url("/sliced-short/big.bin"),
        &[("Range", "bytes=70000-70009"), ("If-Range", "\"other\"")],
    );
    assert_eq!((r.status, &r.body[..]), (200, &big[..]));
    // A client holding this version gets a 304.
    let r = request(
        "GET",
        &stack.url("/sliced-short/big.bin"),
        &[("If-None-Match", &etag)],
    );
    assert_eq!(r.status, 304);
}

/// A scripted origin serving `body` at every path, whole or by a single range (206), with a
/// `CDN-Cache-Control` meant for the CDN's tiers only.
fn ranged_origin(body: Vec<u8>) -> testkit::ScriptedOrigin {
    testkit::ScriptedOrigin::start(move |seen: &testkit::Seen| {
        let fields = [
            ("cache-control", "public, max-age=600"),
            ("cdn-cache-control", "max-age=600"),
            ("etag", "\"v1\""),
        ];
        let range = seen
            .header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
        match range {
            Some((first, _)) if first >= body.len() => {
                let total = format!("bytes */{}", body.len());
                testkit::Canned::new(416, &[("content-range", total.as_str())], b"")
            }
            Some((first, last)) => {
                let last = last.min(body.len() - 1);
                let content_range = format!("bytes {first}-{last}/{}", body.len());
                let mut fields = fields.to_vec();
                fields.push(("content-range", &content_range));
                testkit::Canned::new(206, &fields, &body[first..=last])
            }
            None => testkit::Canned::new(200, &fields, &body),
        }
    })
}

/// Regression: an answer assembled from slices skipped the edge's response step: an
/// authorized caller's copy went out `public`, with `CDN-Cache-Control`.
#[test]
fn an_assembled_answer_passes_the_edges_response_step() {
    let body = testkit::pattern(200 << 10, 6);
    let origin = ranged_origin(body.clone());
    let (_dir, stack) = Stack::before(&origin);
    let token = stack.mint("k1", "ci", "path:/sliced-private/*", 60);
    let bearer = format!("Bearer {token}");
    for range in [None, Some("bytes=70000-70009")] {
        let mut headers = vec![("authorization", bearer.as_str())];
        headers.extend(range.map(|r| ("range", r)));
        let r = request("GET", &stack.url("/sliced-private/a.bin"), &headers);
        assert!(matches!(r.status, 200 | 206), "{}", r.status);
        let cc = r.header("cache-control").unwrap_or("");
        assert!(cc.contains("private"), "{range:?}: {cc}");
        assert!(!cc.contains("public"), "{range:?}: {cc}");
        assert_eq!(r.header("cdn-cache-control"), None, "{range:?}");
        let entries: Vec<&str> = r.cache_status().split(", ").collect();
        assert!(
            entries.last().is_some_and(|e| e.starts_with("edge-pop; "))
                && entries.iter().filter(|e| e.starts_with("edge-pop")).count() == 1,
            "one Cache-Status list, the edge's entry last: {}",
            r.cache_status()
        );
    }
    assert_eq!(
        request("GET", &stack.url("/sliced-private/a.bin"), &[]).status,
        401
    );
}

/// Regression: a 416 is not stored, so every new offset past the end of a sliced object went
/// to the origin. Once the object's first slice is stored, its length answers them.
#[test]
fn ranges_past_the_end_are_answered_from_the_stored_length() {
    let body = testkit::pattern(200 << 10, 7);
    let root = testkit::origin_dir(&[("sliced/cold.bin", &body), ("sliced/warm.bin", &body)]);
    let stack = Stack::start(StackOptions::new(Backend::Local(root.path().to_owned())));
    let total = format!("bytes */{}", body.len());
    let past = |path: &str, first: u64| {
        let range = format!("bytes={first}-");
        let r = request("GET", &stack.url(path), &[("range", &range)]);
        assert_eq!(
            (r.status, r.header("content-range")),
            (416, Some(total.as_str())),
            "{path} {range}"
        );
    };
    // Stored whole first: no past-end range reaches the shield or the origin.
    assert_eq!(
        request("GET", &stack.url("/sliced/warm.bin"), &[]).status,
        200
    );
    let (shield, origin) = (
        testkit::answered(stack.shield_admin),
        testkit::answered(stack.origin_admin),
    );
    for i in 0..20u64 {
        past("/sliced/warm.bin", (200 << 10) + i * 9_000_000 + i);
    }
    // A range an `If-Range` voids is the whole object, from the stored slices (regression:
    // the slice the range pointed at, past the end, was asked upstream every time).
    for i in 0..10u64 {
        let range = format!("bytes={}-", (200 << 10) + i * 1_000_003);
        let headers = [("range", range.as_str()), ("if-range", "\"nope\"")];
        let r = request("GET", &stack.url("/sliced/warm.bin"), &headers);
        assert_eq!((r.status, &r.body[..]), (200, &body[..]), "{range}");
    }
    assert_eq!(testkit::answered(stack.shield_admin), shield);
    assert_eq!(testkit::answered(stack.origin_admin), origin);
    // Cold: the first asks upstream, and the length it learns answers the rest.
    for i in 0..20u64 {
        past("/sliced/cold.bin", (300 << 10) + i * 17_000_000 + i);
    }
    let asked = testkit::answered(stack.origin_admin) - origin;
    assert!(
        asked <= 2,
        "{asked} origin requests for 20 ranges past the end"
    );
}
