//! Registry API v2 / OCI distribution, pull side: the paths under `/v2/`, where registry:2
//! (Docker Distribution's storage driver layout, `registry/storage/paths.go`) keeps what they
//! name, manifests' media types, and the registry's JSON errors.

use crate::digest::Digest;

/// Sent on every `/v2/` answer; clients check it on `GET /v2/`.
pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";
pub const API_VERSION: &str = "registry/2.0";
/// The digest of the manifest or blob a response carries.
pub const CONTENT_DIGEST_HEADER: &str = "docker-content-digest";

/// What a path under `/v2/` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/<name>/manifests/<tag or digest>`.
    Manifest { name: String, reference: Reference },
    /// `/v2/<name>/blobs/<digest>`.
    Blob { name: String, digest: Digest },
    /// `/v2/<name>/tags/list`.
    Tags { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

/// Why a `/v2/` path names nothing, as the registry says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    /// Not a pull path at all.
    Unknown,
    NameInvalid,
    TagInvalid,
    DigestInvalid,
}

/// A pull path split into its repository, its operation and the operation's last segment:
/// the repository is everything before the last two segments, so a tag may be called
/// `manifests` and a repository `blobs`. `Ok(None)` for the base.
fn split(rest: &str) -> Result<Option<(&str, &str, &str)>, BadRequest> {
    if rest.is_empty() {
        return Ok(None);
    }
    let mut from_end = rest.rsplitn(3, '/');
    let (Some(last), Some(kind), Some(name)) = (from_end.next(), from_end.next(), from_end.next())
    else {
        return Err(BadRequest::Unknown);
    };
    if !matches!(
        (kind, last),
        ("manifests", _) | ("blobs", _) | ("tags", "list")
    ) {
        return Err(BadRequest::Unknown);
    }
    if !valid_name(name) {
        return Err(BadRequest::NameInvalid);
    }
    Ok(Some((name, kind, last)))
}

/// The repository a path under `/v2/` names, as [`Request::parse`] reads it, whatever its tag
/// or digest (the registry answers a malformed one with its own error): `Ok(None)` for the
/// base, an error when the path names no repository.
pub fn repository(rest: &str) -> Result<Option<&str>, BadRequest> {
    split(rest).map(|parts| parts.map(|(name, _, _)| name))
}

impl Request {
    /// `rest` is the decoded path after `/v2/`.
    pub fn parse(rest: &str) -> Result<Request, BadRequest> {
        let Some((name, kind, last)) = split(rest)? else {
            return Ok(Request::Base);
        };
        let name = name.to_owned();
        match kind {
            "manifests" => {
                let reference = if last.contains(':') {
                    Reference::Digest(Digest::parse(last).map_err(|_| BadRequest::DigestInvalid)?)
                } else if valid_tag(last) {
                    Reference::Tag(last.to_owned())
                } else {
                    return Err(BadRequest::TagInvalid);
                };
                Ok(Request::Manifest { name, reference })
            }
            "blobs" => Ok(Request::Blob {
                name,
                digest: Digest::parse(last).map_err(|_| BadRequest::DigestInvalid)?,
            }),
            _ => Ok(Request::Tags { name }),
        }
    }

    /// The digest the path names, which the body must hash to.
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            Request::Blob { digest, .. }
            | Request::Manifest {
                reference: Reference::Digest(digest),
                ..
            } => Some(digest),
            _ => None,
        }
    }
}

/// A repository name: path components of lower-case alphanumerics separated by `.`, `_`,
/// `__` or runs of `-` (the distribution spec's grammar), at most 255 characters.
pub fn valid_name(name: &str) -> bool {
    name.len() <= 255 && !name.is_empty() && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Separators: `.`, `_`, `__`, or any run of `-`, each between alphanumerics.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A tag: a word character, then up to 127 of word characters, `.` and `-`.
pub fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// Where registry:2 keeps things, under a root (its `rootdirectory`, empty for a bucket's top).
#[derive(Debug, Clone)]
pub struct Layout {
    base: String,
}

impl Layout {
    pub fn new(root: &str) -> Layout {
        Layout {
            base: crate::join(root, "docker/registry/v2"),
        }
    }

    /// The bytes of a blob (layers, configs and manifests alike).
    pub fn blob_data(&self, digest: &Digest) -> String {
        let hex = digest.hex();
        format!("{}/blobs/sha256/{}/{hex}/data", self.base, &hex[..2])
    }

    /// The folder of a repository; it exists once anything was pushed to it.
    pub fn repository(&self, name: &str) -> String {
        format!("{}/repositories/{name}/", self.base)
    }

    /// The link file holding the digest a tag points at.
    pub fn tag_link(&self, name: &str, tag: &str) -> String {
        format!(
            "{}/repositories/{name}/_manifests/tags/{tag}/current/link",
            self.base
        )
    }

    /// The link file recording that a tag pointed at `digest` (registry:2 writes one per
    /// manifest a tag ever named, beside `current/link`; it lists a tag's history from them).
    pub fn tag_index_link(&self, name: &str, tag: &str, digest: &Digest) -> String {
        format!(
            "{}/repositories/{name}/_manifests/tags/{tag}/index/sha256/{}/link",
            self.base,
            digest.hex()
        )
    }

    /// The folder listing a repository's tags (one folder per tag).
    pub fn tags(&self, name: &str) -> String {
        format!("{}/repositories/{name}/_manifests/tags/", self.base)
    }

    /// The link file that exists when a manifest was pushed to this repository.
    pub fn manifest_link(&self, name: &str, digest: &Digest) -> String {
        format!(
            "{}/repositories/{name}/_manifests/revisions/sha256/{}/link",
            self.base,
            digest.hex()
        )
    }

    /// The link file that exists when a blob (layer or config) was pushed to this repository.
    pub fn layer_link(&self, name: &str, digest: &Digest) -> String {
        format!(
            "{}/repositories/{name}/_layers/sha256/{}/link",
            self.base,
            digest.hex()
        )
    }
}

/// A link file's content: the digest it points at (registry:2 writes no newline; tolerate one).
pub fn read_link(bytes: &[u8]) -> Option<Digest> {
    let text = std::str::from_utf8(bytes).ok()?;
    Digest::parse(text.trim()).ok()
}

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_V1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// A manifest's media type, read from its body as registry:2 does: its `mediaType` field, or,
/// for OCI manifests that omit it, an index when it lists `manifests`, an image manifest when
/// it names a `config`. `None` when the body is no manifest.
pub fn media_type(manifest: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    let object = value.as_object()?;
    if let Some(mt) = object.get("mediaType").and_then(|v| v.as_str()) {
        return Some(mt.to_owned());
    }
    if object.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return Some(DOCKER_V1_SIGNED.to_owned());
    }
    if object.contains_key("manifests") {
        return Some(OCI_INDEX.to_owned());
    }
    if object.contains_key("config") {
        return Some(OCI_MANIFEST.to_owned());
    }
    None
}

/// The registry's error codes (distribution spec), with the status each is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    ManifestUnknown,
    NameUnknown,
    NameInvalid,
    DigestInvalid,
    TagInvalid,
    Unauthorized,
    Denied,
    TooManyRequests,
    Unsupported,
    Unavailable,
}

impl ErrorCode {
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::TagInvalid => "MANIFEST_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "blob unknown to registry",
            ErrorCode::ManifestUnknown => "manifest unknown",
            ErrorCode::NameUnknown => "repository name not known to registry",
            ErrorCode::NameInvalid => "invalid repository name",
            ErrorCode::DigestInvalid => "provided digest did not match uploaded content",
            ErrorCode::TagInvalid => "invalid tag",
            ErrorCode::Unauthorized => "authentication required",
            ErrorCode::Denied => "requested access to the resource is denied",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::Unsupported => "the operation is unsupported",
            ErrorCode::Unavailable => "service unavailable",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BlobUnknown | ErrorCode::ManifestUnknown | ErrorCode::NameUnknown => 404,
            ErrorCode::NameInvalid | ErrorCode::DigestInvalid | ErrorCode::TagInvalid => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Unsupported => 405,
            ErrorCode::Unavailable => 503,
        }
    }

    /// The code a tier's own answer with `status` takes on a registry route.
    pub fn for_status(status: u16) -> ErrorCode {
        match status {
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Denied,
            404 => ErrorCode::NameUnknown,
            405 => ErrorCode::Unsupported,
            429 => ErrorCode::TooManyRequests,
            400..=499 => ErrorCode::NameInvalid,
            _ => ErrorCode::Unavailable,
        }
    }

    /// The JSON body: `{"errors":[{"code":…,"message":…,"detail":…}]}`.
    pub fn body(self, detail: Option<&str>) -> String {
        serde_json::json!({
            "errors": [{
                "code": self.code(),
                "message": self.message(),
                "detail": detail,
            }]
        })
        .to_string()
    }
}

impl From<BadRequest> for ErrorCode {
    fn from(bad: BadRequest) -> ErrorCode {
        match bad {
            BadRequest::Unknown => ErrorCode::Unsupported,
            BadRequest::NameInvalid => ErrorCode::NameInvalid,
            BadRequest::TagInvalid => ErrorCode::TagInvalid,
            BadRequest::DigestInvalid => ErrorCode::DigestInvalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn pull_paths() {
        assert_eq!(Request::parse(""), Ok(Request::Base));
        assert_eq!(
            Request::parse("acme/app/manifests/v1.0"),
            Ok(Request::Manifest {
                name: "acme/app".into(),
                reference: Reference::Tag("v1.0".into())
            })
        );
        let by_digest = Request::parse(&format!("app/manifests/{D}")).unwrap();
        assert_eq!(by_digest.digest().unwrap().to_string(), D);
        let blob = Request::parse(&format!("a/b/c/blobs/{D}")).unwrap();
        assert!(matches!(&blob, Request::Blob { name, .. } if name == "a/b/c"));
        assert_eq!(
            Request::parse("app/tags/list"),
            Ok(Request::Tags { name: "app".into() })
        );
        assert_eq!(
            Request::parse("app/blobs/sha256:12"),
            Err(BadRequest::DigestInvalid)
        );
        assert_eq!(
            Request::parse("App/manifests/x"),
            Err(BadRequest::NameInvalid)
        );
        assert_eq!(
            Request::parse("app/manifests/-x"),
            Err(BadRequest::TagInvalid)
        );
        assert_eq!(Request::parse("app/other/x"), Err(BadRequest::Unknown));
        assert_eq!(Request::parse("app"), Err(BadRequest::Unknown));
        assert_eq!(
            Request::parse("app/blobs/uploads"),
            Err(BadRequest::DigestInvalid)
        );
    }

    #[test]
    fn names() {
        for good in ["a", "acme/app", "a.b_c__d---e/f0", "library/debian"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "a/../b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn layout_paths() {
        let d = Digest::parse(D).unwrap();
        let at_top = Layout::new("");
        assert_eq!(
            at_top.blob_data(&d),
            format!("docker/registry/v2/blobs/sha256/2c/{}/data", d.hex())
        );
        let under = Layout::new("/reg/");
        assert_eq!(
            under.tag_link("acme/app", "1.0"),
            "reg/docker/registry/v2/repositories/acme/app/_manifests/tags/1.0/current/link"
        );
        assert_eq!(
            under.tag_index_link("acme/app", "1.0", &d),
            format!(
                "reg/docker/registry/v2/repositories/acme/app/_manifests/tags/1.0/index/sha256/{}/link",
                d.hex()
            )
        );
        assert!(under
            .layer_link("x", &d)
            .ends_with(&format!("x/_layers/sha256/{}/link", d.hex())));
        assert_eq!(read_link(D.as_bytes()), Some(d.clone()));
        assert_eq!(read_link(format!("{D}\n").as_bytes()), Some(d));
    }

    #[test]
    fn media_types_from_bodies() {
        assert_eq!(
            media_type(br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#).as_deref(),
            Some(DOCKER_MANIFEST)
        );
        assert_eq!(
            media_type(br#"{"schemaVersion":2,"manifests":[]}"#).as_deref(),
            Some(OCI_INDEX)
        );
        assert_eq!(
            media_type(br#"{"schemaVersion":2,"config":{}}"#).as_deref(),
            Some(OCI_MANIFEST)
        );
        assert_eq!(media_type(b"not json"), None);
        let body = ErrorCode::ManifestUnknown.body(Some("tag 9"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["errors"][0]["code"], "MANIFEST_UNKNOWN");
    }
}
