//! What the package formats change in how a proxy tier treats a request, by what its route's
//! paths name (`cdn_config::Naming`); the formats themselves are `cdn_registry`'s.
//!
//! - npm routes: at the edge, a packument's path-absolute tarball URLs are pointed at the
//!   scheme and host the client came in by ([`TarballUrls`]; the stored copy keeps the paths,
//!   so every host gets its own URLs from one copy); a tarball or version document fetched
//!   upstream invalidates its package's stored packument ([`packument_key`]), so a version
//!   just published is seen at once.
//! - oci routes: a tier's own answers take the registry's JSON error form ([`own_error`]).
//! - integrity: at the shield, a full 200 body is hashed as it passes when what it must hash to
//!   is known — the digest an oci path names, else the upstream's `Repr-Digest` ([`Integrity`]).

use crate::admission::Admitted;
use bytes::Bytes;
use cdn_config::Naming;
use cdn_http::Target;
use cdn_observe::Tier;
use cdn_registry::digest::{Check, Expected, REPR_DIGEST};
use cdn_registry::{npm, oci};
use pingora::cache::CacheKey;
use pingora::http::{RequestHeader, ResponseHeader};

/// What an admitted request on an npm route names.
fn npm_request(admitted: &Admitted) -> Option<npm::Request> {
    if admitted.policy.naming != Naming::Npm {
        return None;
    }
    npm::Request::parse(admitted.route_rest())
}

/// On an npm route, the request's `Accept` made the one value of the packument it asks for
/// (`cdn_registry::npm::wants_abbreviated`): the stored packument varies on `Accept`, and two
/// variants are all there are, whatever a client sends (2,000 invented values had made 2,000
/// origin fetches and stored variants).
pub fn canonical_accept(admitted: &Admitted, req: &mut RequestHeader) -> pingora::Result<()> {
    if admitted.policy.naming != Naming::Npm {
        return Ok(());
    }
    let accept = req.headers.get_all(http::header::ACCEPT);
    let abbreviated = npm::wants_abbreviated(accept.iter().map(|v| v.as_bytes()));
    req.insert_header(http::header::ACCEPT, npm::canonical_accept(abbreviated))
}

/// The body and the fields a tier's own answer with `status` takes instead of its plain text,
/// on a route under `naming`: the registry's JSON error on oci routes (docker and skopeo read
/// it); `None` elsewhere.
pub fn own_error(
    naming: Naming,
    status: u16,
) -> Option<(String, [(&'static str, &'static str); 2])> {
    (naming == Naming::Oci).then(|| {
        (
            oci::ErrorCode::for_status(status).body(None),
            [
                ("content-type", "application/json"),
                (oci::API_VERSION_HEADER, oci::API_VERSION),
            ],
        )
    })
}

/// The key of the stored packument a response invalidates: on an npm route, a 200 from
/// upstream to a request for one of the package's tarballs or version documents says a
/// version may have been published since the packument was stored. The key is the one a
/// request for the packument is looked up under (the admission's own function); dropping it
/// drops every variant (the storage drops the variants it stored under a primary with it).
pub fn packument_key(admitted: &Admitted, upstream_status: u16) -> Option<CacheKey> {
    if upstream_status != 200 {
        return None;
    }
    let name = match npm_request(admitted)? {
        npm::Request::Tarball { name, .. } | npm::Request::Version { name, .. } => name,
        npm::Request::Packument { .. } => return None,
    };
    let uri: http::Uri = format!("{}{name}", admitted.route_prefix).parse().ok()?;
    let target = Target::parse(&uri, None).ok()?;
    Some(admitted.key_of(&target))
}

/// What packuments say before a path-absolute tarball URL.
const TARBALL: &[u8] = br#""tarball":"/"#;

/// `<scheme>://<host>` as the client reached this tier, when its host (`Host`, or HTTP/2's
/// `:authority`) is a plain `host[:port]`; `None` otherwise (the URLs are then left as paths).
pub fn client_origin(host: Option<&str>, tls: bool) -> Option<String> {
    let host = host.filter(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    })?;
    let scheme = if tls { "https" } else { "http" };
    Some(format!("{scheme}://{host}"))
}

/// Whether this tier points the tarball URLs of this response at the client's host: at the
/// edge, on an npm route, a 200 to a packument request.
pub fn points_tarballs(tier: Tier, admitted: &Admitted, status: u16) -> bool {
    tier == Tier::Edge
        && status == 200
        && matches!(npm_request(admitted), Some(npm::Request::Packument { .. }))
}

/// Rewrites `"tarball":"/` to `"tarball":"<origin>/` in a body streamed in chunks: a chunk's
/// tail that may begin the pattern is held until the next chunk (or the end) says.
#[derive(Debug)]
pub struct TarballUrls {
    replacement: Vec<u8>,
    held: Vec<u8>,
}

impl TarballUrls {
    /// `origin` as [`client_origin`] gives it.
    pub fn new(origin: &str) -> TarballUrls {
        let mut replacement = br#""tarball":""#.to_vec();
        replacement.extend_from_slice(origin.as_bytes());
        replacement.push(b'/');
        TarballUrls {
            replacement,
            held: Vec::new(),
        }
    }

    /// Rewrites one chunk of the body (`None` or empty: nothing to send yet).
    pub fn filter(&mut self, body: &mut Option<Bytes>, end: bool) {
        let mut data = std::mem::take(&mut self.held);
        if let Some(chunk) = body.take() {
            data.extend_from_slice(&chunk);
        }
        let hold = if end { 0 } else { pattern_start(&data) };
        let ready = data.len() - hold;
        self.held = data[ready..].to_vec();
        let out = replace_all(&data[..ready], TARBALL, &self.replacement);
        *body = (!out.is_empty()).then(|| Bytes::from(out));
    }
}

/// The length of the longest tail of `data` that is a proper beginning of the pattern.
fn pattern_start(data: &[u8]) -> usize {
    (1..TARBALL.len().min(data.len() + 1))
        .rev()
        .find(|&n| data.ends_with(&TARBALL[..n]))
        .unwrap_or(0)
}

fn replace_all(data: &[u8], pattern: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + with.len() * 4);
    let mut rest = data;
    while let Some(at) = rest.windows(pattern.len()).position(|w| w == pattern) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + pattern.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// A body being checked against what it must hash to. The latest piece is held back until
/// the end, so a body that fails its check never reaches anyone whole: the end of a body is
/// only known once its last bytes were read, and by then they would have been sent.
#[derive(Debug)]
pub struct Integrity {
    expected: Expected,
    check: Check,
    held: Option<Bytes>,
}

impl Integrity {
    /// At the shield, for a full 200 body from upstream to a GET: the digest an oci path names
    /// (blobs, manifests by digest; taken from the path, never from a header), else the
    /// response's `Repr-Digest` (sha-256 or sha-512: a tag's manifest, an npm tarball). `None`
    /// when nothing is known, or for HEAD and partial answers.
    pub fn of(
        tier: Tier,
        admitted: &Admitted,
        method: &http::Method,
        resp: &ResponseHeader,
    ) -> Option<Integrity> {
        if tier != Tier::Shield || method != http::Method::GET || resp.status != 200 {
            return None;
        }
        let named = (admitted.policy.naming == Naming::Oci)
            .then(|| oci::Request::parse(admitted.route_rest()).ok())
            .flatten()
            .and_then(|request| request.digest().map(|d| d.expected()));
        let expected = named.or_else(|| {
            resp.headers
                .get(REPR_DIGEST)
                .and_then(|v| v.to_str().ok())
                .and_then(Expected::from_repr_digest)
        })?;
        Some(Integrity {
            check: expected.check(),
            expected,
            held: None,
        })
    }

    /// Hashes the piece passing by and sends on the one held before it instead.
    pub fn pass(&mut self, body: &mut Option<Bytes>) {
        if let Some(bytes) = body.take() {
            self.check.update(&bytes);
            *body = self.held.replace(bytes);
        }
    }

    /// At the end of the body: whether it hashed to what was expected, and if so the held piece
    /// goes on after `body`; if not, the expected digest (for the log).
    pub fn finish(self, body: &mut Option<Bytes>) -> Result<(), String> {
        if !self.check.finish() {
            return Err(self.expected.repr_digest());
        }
        *body = match (body.take(), self.held) {
            (Some(before), Some(held)) => {
                let mut joined = bytes::BytesMut::with_capacity(before.len() + held.len());
                joined.extend_from_slice(&before);
                joined.extend_from_slice(&held);
                Some(joined.freeze())
            }
            (before, held) => before.or(held),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdn_config::RoutePolicy;
    use cdn_http::Target;
    use pingora::cache::key::CacheHashKey;

    fn admitted(prefix: &str, path: &str, naming: Naming) -> Admitted {
        let target = Target::parse(&path.parse().unwrap(), None).unwrap();
        let policy = RoutePolicy {
            naming,
            ..test_policy()
        };
        Admitted {
            upstream_target: target.encoded_path(),
            target,
            policy,
            pass: crate::admission::Pass::AsIs,
            route_prefix: prefix.to_owned(),
            source: "/npm".to_owned(),
        }
    }

    fn test_policy() -> RoutePolicy {
        RoutePolicy {
            ttl: std::time::Duration::from_secs(60),
            cacheable: true,
            auth_required: false,
            stale_if_error: std::time::Duration::ZERO,
            heuristic: Default::default(),
            negative_ttl: std::time::Duration::from_secs(1),
            query: Default::default(),
            pass_writes: false,
            naming: Naming::Path,
            stale_while_revalidate: std::time::Duration::ZERO,
            rate_limit: Default::default(),
            slice: None,
            forward_authorization: false,
        }
    }

    fn rewrite_in_chunks(body: &[u8], size: usize) -> Vec<u8> {
        let mut urls = TarballUrls::new("http://cdn.example:8080");
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = body.chunks(size.max(1)).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut b = Some(Bytes::copy_from_slice(chunk));
            urls.filter(&mut b, i + 1 == chunks.len());
            out.extend_from_slice(&b.unwrap_or_default());
        }
        out
    }

    #[test]
    fn tarball_urls_point_at_the_client_host_in_any_chunking() {
        let body = br#"{"name":"@acme/util","versions":{"1.0.0":{"dist":{"tarball":"/npm/@acme/util/-/util-1.0.0.tgz","integrity":"x"}},"1.1.0":{"dist":{"tarball":"/npm/@acme/util/-/util-1.1.0.tgz"}}},"readme":"\"tarball\":\"http://x/"}"#;
        let expected = br#"{"name":"@acme/util","versions":{"1.0.0":{"dist":{"tarball":"http://cdn.example:8080/npm/@acme/util/-/util-1.0.0.tgz","integrity":"x"}},"1.1.0":{"dist":{"tarball":"http://cdn.example:8080/npm/@acme/util/-/util-1.1.0.tgz"}}},"readme":"\"tarball\":\"http://x/"}"#;
        for size in 1..=body.len() {
            assert_eq!(
                String::from_utf8(rewrite_in_chunks(body, size)).unwrap(),
                String::from_utf8(expected.to_vec()).unwrap(),
                "chunks of {size}"
            );
        }
        // A tail that begins the pattern but is not it comes out at the end, unchanged.
        assert_eq!(rewrite_in_chunks(br#"x"tarball":"#, 3), br#"x"tarball":"#);
        assert_eq!(rewrite_in_chunks(b"", 1), b"");
    }

    #[test]
    fn a_held_tail_is_not_sent_early() {
        let mut urls = TarballUrls::new("https://h");
        let mut b = Some(Bytes::from_static(br#"{"tarball":"#));
        urls.filter(&mut b, false);
        assert_eq!(b.as_deref(), Some(&b"{"[..]));
        let mut b = Some(Bytes::from_static(br#""/a"}"#));
        urls.filter(&mut b, false);
        assert_eq!(b.as_deref(), Some(&br#""tarball":"https://h/a"}"#[..]));
        let mut b = None;
        urls.filter(&mut b, true);
        assert_eq!(b, None);
    }

    #[test]
    fn only_plain_hosts_are_written_into_urls() {
        assert_eq!(
            client_origin(Some("cdn.example:8080"), false).as_deref(),
            Some("http://cdn.example:8080")
        );
        assert_eq!(
            client_origin(Some("[::1]:8443"), true).as_deref(),
            Some("https://[::1]:8443")
        );
        for bad in [
            "",
            "a/b",
            "a\"b",
            "user@host",
            "h?x",
            "h#x",
            "é.example",
            "a b",
        ] {
            assert_eq!(client_origin(Some(bad), false), None, "{bad}");
        }
        assert_eq!(client_origin(None, false), None);
    }

    #[test]
    fn packuments_at_the_edge_only() {
        let packument = admitted("/npm/", "/npm/@acme/util", Naming::Npm);
        assert!(points_tarballs(Tier::Edge, &packument, 200));
        assert!(!points_tarballs(Tier::Shield, &packument, 200));
        assert!(!points_tarballs(Tier::Edge, &packument, 206));
        for (path, naming) in [
            ("/npm/@acme/util/-/util-1.0.0.tgz", Naming::Npm),
            ("/npm/@acme/util/1.0.0", Naming::Npm),
            ("/npm/@acme/util", Naming::Path),
        ] {
            let other = admitted("/npm/", path, naming);
            assert!(!points_tarballs(Tier::Edge, &other, 200), "{path}");
        }
    }

    #[test]
    fn tarballs_and_versions_invalidate_their_packument() {
        let packument = admitted("/npm/", "/npm/@acme/util", Naming::Npm);
        for path in ["/npm/@acme/util/-/util-1.0.0.tgz", "/npm/@acme/util/1.0.0"] {
            let a = admitted("/npm/", path, Naming::Npm);
            assert_eq!(
                packument_key(&a, 200).map(|k| k.primary_bin()),
                Some(packument.cache_key().primary_bin()),
                "{path}"
            );
            assert_eq!(packument_key(&a, 304).map(|k| k.primary_bin()), None);
            assert_eq!(packument_key(&a, 404).map(|k| k.primary_bin()), None);
        }
        assert!(packument_key(&packument, 200).is_none());
        let plain = admitted("/npm/", "/npm/@acme/util/-/util-1.0.0.tgz", Naming::Path);
        assert!(packument_key(&plain, 200).is_none());
    }

    #[test]
    fn integrity_is_known_from_oci_paths_and_repr_digest() {
        let body = b"layer bytes";
        let digest = cdn_registry::digest::Digest::of(body);
        let blob = admitted("/v2/", &format!("/v2/acme/app/blobs/{digest}"), Naming::Oci);
        let ok = ResponseHeader::build(200, None).unwrap();
        let get = http::Method::GET;
        // Each piece is sent on one step late; the last only once the whole body checks out.
        let mut check = Integrity::of(Tier::Shield, &blob, &get, &ok).unwrap();
        let mut piece = Some(Bytes::copy_from_slice(&body[..5]));
        check.pass(&mut piece);
        assert_eq!(piece, None, "the first piece is held");
        let mut piece = Some(Bytes::copy_from_slice(&body[5..]));
        check.pass(&mut piece);
        assert_eq!(piece.as_deref(), Some(&body[..5]));
        let mut end = None;
        assert!(check.finish(&mut end).is_ok());
        assert_eq!(end.as_deref(), Some(&body[5..]), "released at the end");
        let mut check = Integrity::of(Tier::Shield, &blob, &get, &ok).unwrap();
        let mut whole = Some(Bytes::from_static(b"other bytes"));
        check.pass(&mut whole);
        assert_eq!(whole, None);
        let mut end = None;
        assert_eq!(check.finish(&mut end), Err(digest.expected().repr_digest()));
        assert_eq!(end, None, "a body that fails is never completed");
        assert!(Integrity::of(Tier::Edge, &blob, &get, &ok).is_none());
        assert!(Integrity::of(Tier::Shield, &blob, &http::Method::HEAD, &ok).is_none());
        let partial = ResponseHeader::build(206, None).unwrap();
        assert!(Integrity::of(Tier::Shield, &blob, &get, &partial).is_none());
        let tag = admitted("/v2/", "/v2/acme/app/manifests/latest", Naming::Oci);
        assert!(Integrity::of(Tier::Shield, &tag, &get, &ok).is_none());
        // A tag's manifest is checked against the Repr-Digest its upstream states.
        let mut stated = ResponseHeader::build(200, None).unwrap();
        stated
            .insert_header(REPR_DIGEST, digest.expected().repr_digest())
            .unwrap();
        assert!(Integrity::of(Tier::Shield, &tag, &get, &stated).is_some());

        // Elsewhere, only what the upstream's Repr-Digest says.
        let tarball = admitted("/npm/", "/npm/a/-/a-1.0.0.tgz", Naming::Npm);
        assert!(Integrity::of(Tier::Shield, &tarball, &get, &ok).is_none());
        let mut with = ResponseHeader::build(200, None).unwrap();
        with.insert_header(REPR_DIGEST, digest.expected().repr_digest())
            .unwrap();
        let mut check = Integrity::of(Tier::Shield, &tarball, &get, &with).unwrap();
        let mut last = Some(Bytes::from_static(body));
        check.pass(&mut last);
        assert!(check.finish(&mut last).is_ok());
        assert_eq!(last.as_deref(), Some(&body[..]));
    }

    #[test]
    fn registry_errors_on_oci_routes_only() {
        let (body, fields) = own_error(Naming::Oci, 401).unwrap();
        assert!(body.contains(r#""code":"UNAUTHORIZED""#), "{body}");
        assert!(fields.contains(&("content-type", "application/json")));
        assert!(fields.contains(&(oci::API_VERSION_HEADER, oci::API_VERSION)));
        assert!(own_error(Naming::Oci, 403)
            .unwrap()
            .0
            .contains(r#""code":"DENIED""#));
        assert!(own_error(Naming::Npm, 401).is_none());
        assert!(own_error(Naming::Path, 401).is_none());
    }
}
