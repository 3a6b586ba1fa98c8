//! Objects of 0 B to 64 MiB pass edge → shield → origin byte for byte; the second GET is an
//! L1 hit; a fresh edge in front of a warm shield gets an L2 hit and the origin sees nothing.

use testkit::{
    answered, get, origin_dir, pattern, sha256_hex, Backend, S3Server, Stack, StackOptions,
};

const SIZES: [(&str, usize); 4] = [
    ("empty.bin", 0),
    ("one-kib.bin", 1 << 10),
    ("one-mib.bin", 1 << 20),
    ("sixty-four-mib.bin", 64 << 20),
];

fn objects() -> Vec<(String, Vec<u8>)> {
    SIZES
        .iter()
        .enumerate()
        .map(|(i, (name, len))| (format!("pkgs/{name}"), pattern(*len, i as u64 + 7)))
        .collect()
}

/// Runs the whole check against a stack; `origin_requests` counts what the origin saw.
fn check_all_tiers(stack: &mut Stack, origin_requests: &dyn Fn() -> Option<usize>) {
    let objects = objects();
    for (key, data) in &objects {
        let url = stack.url(&format!("/{key}"));
        let first = get(&url);
        assert_eq!(first.status, 200, "{key}: {:?}", first);
        assert_eq!(first.body.len(), data.len(), "{key} length");
        assert_eq!(
            sha256_hex(&first.body),
            sha256_hex(data),
            "{key} bytes on the miss"
        );
        let status = first.cache_status();
        assert!(
            status.starts_with("shield; fwd=miss; fwd-status=200; stored"),
            "{key}: {status}"
        );
        assert!(
            status.contains(", edge-pop; fwd=miss; fwd-status=200; stored"),
            "{key}: {status}"
        );

        let second = get(&url);
        assert_eq!(
            sha256_hex(&second.body),
            sha256_hex(data),
            "{key} bytes on the hit"
        );
        assert!(
            second.cache_status().starts_with("edge-pop; hit"),
            "{key}: {}",
            second.cache_status()
        );
        assert!(
            !second.cache_status().contains("shield"),
            "an L1 hit names no other tier"
        );
        assert!(second.header("age").is_some(), "{key}: hits carry Age");
    }

    let before = origin_requests();
    let fresh_edge = stack.start_edge();
    for (key, data) in &objects {
        let reply = get(&format!("http://{fresh_edge}/{key}"));
        assert_eq!(
            sha256_hex(&reply.body),
            sha256_hex(data),
            "{key} bytes via the fresh edge"
        );
        let status = reply.cache_status();
        assert!(
            status.starts_with("shield; hit"),
            "{key}: L2 hit expected, got {status}"
        );
        assert!(
            status.contains(", edge-pop; fwd=miss; fwd-status=200; stored"),
            "{key}: {status}"
        );
    }
    assert_eq!(
        origin_requests(),
        before,
        "L2 hits must not reach the origin"
    );
}

#[test]
fn local_directory_origin() {
    let objects = objects();
    let files: Vec<(&str, &[u8])> = objects.iter().map(|(k, d)| (k.as_str(), &d[..])).collect();
    let root = origin_dir(&files);
    let mut stack = Stack::start(StackOptions::new(Backend::Local(root.path().to_owned())));
    // The adapter counts each request it answers.
    let origin_admin = stack.origin_admin;
    let counter = move || Some(answered(origin_admin) as usize);
    check_all_tiers(&mut stack, &counter);
    assert!(
        counter().unwrap() >= SIZES.len(),
        "the origin served the misses"
    );
}

#[test]
fn s3_origin() {
    let s3 = S3Server::start("packages");
    for (key, data) in objects() {
        s3.put(&key, &data);
    }
    let mut stack = Stack::start(StackOptions::new(Backend::s3(&s3)));
    let counter = || Some(s3.requests());
    check_all_tiers(&mut stack, &counter);
    assert!(
        s3.requests() >= SIZES.len(),
        "the S3 server served the misses"
    );
}
