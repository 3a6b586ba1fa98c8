//! The canonical request target: one form of a request's path and query, computed once per
//! request at every tier, from which the route, the auth decision, the cache key, the origin key
//! and the URL sent upstream are all taken. No spelling of a path can reach a route other than
//! the one its canonical form names, because nothing downstream ever looks at the raw one.
//!
//! The path is percent-decoded whole, and refused (400) where decoding could make it mean
//! something else: `.`/`..` segments and empty segments (raw or encoded), an encoded `/` or
//! `\` (one answer for both: refused; the one exception is npm's scoped name, `@scope%2fname`,
//! which is the two segments `@scope/name`), a raw backslash, invalid UTF-8 (overlong forms
//! included) and control characters (NUL included). What is left is written back in one
//! encoding ([`Target::encoded_path`]), so the next tier parses the same target again.
//!
//! An absolute-form target (`GET http://host/a HTTP/1.1`, RFC 9112 §3.2.2) is judged by its
//! path and query: one origin per deployment, the authority does not name another object. Its
//! authority must be the `Host` sent with it, as that section requires of clients (Pingora's
//! HTTP/1 server refuses a mismatch before we see it; the origin-adapter's server does not).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use std::borrow::Cow;

/// Why a target was refused; always answered 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPath(pub &'static str);

impl BadPath {
    pub const TOO_LONG: BadPath = BadPath("request target too long");
}

impl From<BadPath> for crate::HttpError {
    fn from(bad: BadPath) -> Self {
        if bad == BadPath::TOO_LONG {
            return crate::HttpError::UriTooLong;
        }
        crate::HttpError::BadRequest(bad.0)
    }
}

/// The longest canonical path and query a tier sends on (well under what any HTTP parser
/// takes, and a URI's own limit).
pub const MAX_TARGET: usize = 8 * 1024;
/// The longest decoded path: no object key is longer (S3's limit), and a local folder's path
/// is soon past what the file system takes.
pub const MAX_PATH: usize = 1024;
/// The longest segment of a decoded path: no file name is longer. (Past it origin-adapter's
/// folder failed with a 502, never stored, so each such request went to the origin.)
pub const MAX_SEGMENT: usize = 255;

/// Bytes written percent-encoded in a canonical path: everything but RFC 3986's unreserved
/// characters, sub-delims, `:`, `@` and `/`.
const PATH_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A request's target in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Decoded, starting with `/`.
    path: String,
    /// As sent, without the `?`; `None` when absent or empty.
    query: Option<String>,
}

impl Target {
    /// The canonical form of a request target (origin-form or absolute-form), given the
    /// request's `Host`.
    pub fn parse(uri: &http::Uri, host: Option<&http::HeaderValue>) -> Result<Target, BadPath> {
        if let Some(authority) = uri.authority() {
            let host = host.map(http::HeaderValue::as_bytes).unwrap_or_default();
            if !host.eq_ignore_ascii_case(authority.as_str().as_bytes()) {
                return Err(BadPath("Host differs from the target's authority"));
            }
        }
        let query = uri.query().filter(|q| !q.is_empty()).map(str::to_owned);
        let target = Target {
            path: decode_path(uri.path())?,
            query,
        };
        // Re-encoding may triple a path's length: judge what will be sent on.
        let sent = target.encoded_path().len() + target.query.as_ref().map_or(0, |q| q.len() + 1);
        let segment_too_long = target.path.split('/').any(|s| s.len() > MAX_SEGMENT);
        if sent > MAX_TARGET || target.path.len() > MAX_PATH || segment_too_long {
            return Err(BadPath::TOO_LONG);
        }
        Ok(target)
    }

    /// The decoded path, as routes are matched against it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The object key: the decoded path without its leading `/`.
    pub fn object_key(&self) -> &str {
        &self.path[1..]
    }

    /// The query as the client sent it (no `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The path in the one encoding every tier sends upstream.
    pub fn encoded_path(&self) -> String {
        utf8_percent_encode(&self.path, PATH_ESCAPES).to_string()
    }

    /// The query's parameters that `keep` accepts (by decoded name), in the order sent, each
    /// in one spelling (escaped unreserved characters decoded, other escapes in upper case);
    /// empty parameters dropped. `None` when nothing is kept.
    pub fn query_kept(&self, keep: impl Fn(&str) -> bool) -> Option<String> {
        let query = self.query.as_deref()?;
        let kept: Vec<String> = query
            .split('&')
            .filter(|param| !param.is_empty())
            .filter(|param| {
                let name = param.split_once('=').map_or(*param, |(name, _)| name);
                keep(&percent_decode_str(name).decode_utf8_lossy())
            })
            .map(one_spelling)
            .collect();
        (!kept.is_empty()).then(|| kept.join("&"))
    }
}

/// `%41` → `A` for unreserved characters (RFC 3986 §6.2.2.2), `%2f` → `%2F` for the rest.
fn one_spelling(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let byte = rest
            .get(at + 1..at + 3)
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match byte {
            Some(b) if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(char::from(b)),
            Some(b) => out.push_str(&format!("%{b:02X}")),
            None => {
                out.push('%');
                rest = &rest[at + 1..];
                continue;
            }
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    out
}

/// npm asks for a scoped package as one segment, `@scope%2fname`: that one encoded `/`, right
/// after an `@scope` segment start with something on both sides, is the two segments `@scope`
/// and `name` (each then judged as every segment is). Every other encoded `/` is refused.
fn split_scoped(path: &str) -> Result<Cow<'_, str>, BadPath> {
    const REFUSED: BadPath = BadPath("encoded slash in path");
    if !path.to_ascii_lowercase().contains("%2f") {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let lower = segment.to_ascii_lowercase();
        let Some(at) = lower.find("%2f") else {
            out.push_str(segment);
            continue;
        };
        let (scope, name) = (&segment[..at], &segment[at + 3..]);
        let decoded_scope = percent_decode_str(scope).decode_utf8_lossy();
        let scoped = decoded_scope.len() > 1 && decoded_scope.starts_with('@');
        if !scoped || name.is_empty() || lower[at + 3..].contains("%2f") {
            return Err(REFUSED);
        }
        out.push_str(scope);
        out.push('/');
        out.push_str(name);
    }
    Ok(Cow::Owned(out))
}

fn decode_path(path: &str) -> Result<String, BadPath> {
    if !path.starts_with('/') {
        return Err(BadPath("path must start with '/'"));
    }
    if path.to_ascii_lowercase().contains("%5c") {
        return Err(BadPath("encoded slash in path"));
    }
    let path = split_scoped(path)?;
    let decoded = percent_decode_str(&path)
        .decode_utf8()
        .map_err(|_| BadPath("path is not UTF-8"))?;
    if decoded.chars().any(char::is_control) {
        return Err(BadPath("control character in path"));
    }
    if decoded.contains('\\') {
        return Err(BadPath("backslash in path"));
    }
    if decoded[1..].split('/').any(|s| s == ".." || s == ".") {
        return Err(BadPath("dot segment in path"));
    }
    if decoded.contains("//") {
        return Err(BadPath("empty segment in path"));
    }
    Ok(decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str) -> Result<Target, BadPath> {
        let uri = s.parse::<http::Uri>().expect("a URI");
        let host = uri
            .authority()
            .map(|a| a.as_str().parse().expect("a header value"));
        Target::parse(&uri, host.as_ref())
    }

    fn object_key(path: &str) -> Result<String, BadPath> {
        decode_path(path).map(|p| p[1..].to_owned())
    }

    fn check(path: &str, expected: Result<&str, &str>) {
        match (object_key(path), expected) {
            (Ok(k), Ok(e)) => assert_eq!(k, e, "{path}"),
            (Err(BadPath(g)), Err(e)) => assert_eq!(g, e, "{path}"),
            (g, e) => panic!("{path}: got {g:?}, expected {e:?}"),
        }
    }

    #[test]
    fn keys() {
        check(
            "/npm/left-pad/-/left-pad-1.3.0.tgz",
            Ok("npm/left-pad/-/left-pad-1.3.0.tgz"),
        );
        check("/a%20b.txt", Ok("a b.txt"));
        check("/npm/@scope/pkg", Ok("npm/@scope/pkg"));
        check("/", Ok(""));
    }

    #[test]
    fn every_spelling_of_one_path_is_one_target() {
        let canonical = target("/private/secret.txt").unwrap();
        for spelling in [
            "/%70rivate/secret.txt",
            "/%70%72%69%76%61%74%65/secret.txt",
            "/priv%61te/secret.txt",
            "/private/secret%2etxt",
            "/private/secret%2Etxt",
            "/%70rivate/s%65cret.txt",
            "http://example.com/private/secret.txt",
            "http://other.example:81/%70rivate/secret.txt",
            "HTTP://EXAMPLE.COM/private/secret.txt",
            "/private/secret.txt?",
        ] {
            assert_eq!(target(spelling).as_ref(), Ok(&canonical), "{spelling}");
        }
    }

    #[test]
    fn long_targets_are_414() {
        let long = format!("/{}", "%C3%A9".repeat(MAX_TARGET / 4));
        assert_eq!(target(&long), Err(BadPath::TOO_LONG));
        assert_eq!(crate::HttpError::from(BadPath::TOO_LONG).status(), 414);
        let segments = |n: usize, len: usize| format!("/{}", vec!["a".repeat(len); n].join("/"));
        assert!(target(&segments(4, MAX_SEGMENT)).is_ok());
        assert_eq!(
            target(&segments(1, MAX_SEGMENT + 1)),
            Err(BadPath::TOO_LONG)
        );
        assert_eq!(target(&segments(1, MAX_PATH)), Err(BadPath::TOO_LONG));
        // Many short segments: the whole path's length decides.
        assert!(target(&segments(511, 1)).is_ok(), "1,022 bytes");
        assert_eq!(target(&segments(3000, 1)), Err(BadPath::TOO_LONG));
    }

    #[test]
    fn absolute_form_names_its_host() {
        let uri: http::Uri = "http://example.com/a".parse().unwrap();
        let host = |h: &str| http::HeaderValue::from_str(h).unwrap();
        assert!(Target::parse(&uri, Some(&host("example.com"))).is_ok());
        for other in [Some(host("evil.example")), None] {
            assert_eq!(
                Target::parse(&uri, other.as_ref()),
                Err(BadPath("Host differs from the target's authority"))
            );
        }
    }

    #[test]
    fn encoded_path_round_trips() {
        for path in [
            "/a%20b.txt",
            "/100%25.txt",
            "/q%3Fx",
            "/h%23y",
            "/caf%C3%A9",
            "/@s/p:1",
        ] {
            let t = target(path).unwrap();
            let again = target(&t.encoded_path()).unwrap();
            assert_eq!(again, t, "{path} -> {}", t.encoded_path());
        }
        assert_eq!(target("/a%20b").unwrap().encoded_path(), "/a%20b");
        assert_eq!(target("/%7euser").unwrap().encoded_path(), "/~user");
        assert_eq!(target("/100%25").unwrap().encoded_path(), "/100%25");
    }

    #[test]
    fn queries_kept_by_name() {
        let t = target("/a?b=1&&utm=x&a=2&b%3d=3").unwrap();
        assert_eq!(t.query(), Some("b=1&&utm=x&a=2&b%3d=3"));
        assert_eq!(t.query_kept(|_| false), None);
        assert_eq!(t.query_kept(|n| n == "b"), Some("b=1".into()));
        assert_eq!(t.query_kept(|_| true), Some("b=1&utm=x&a=2&b%3D=3".into()));
        assert_eq!(target("/a").unwrap().query_kept(|_| true), None);
        let spelled = |q: &str| target(&format!("/a?{q}")).unwrap().query_kept(|_| true);
        assert_eq!(spelled("v=%31"), spelled("v=1"));
        assert_eq!(spelled("%76=1"), spelled("v=1"));
        assert_eq!(spelled("v=a%2fb"), Some("v=a%2Fb".into()));
        assert_eq!(spelled("v=%"), Some("v=%".into()));
        assert_eq!(spelled("v=%4"), Some("v=%4".into()));
        assert_eq!(spelled("v=%zz1"), Some("v=%zz1".into()));
        assert_eq!(spelled("v=%+1"), Some("v=%+1".into()));
    }

    #[test]
    fn scoped_npm_names_are_two_segments() {
        check("/npm/@acme%2futil", Ok("npm/@acme/util"));
        check("/npm/@acme%2Futil", Ok("npm/@acme/util"));
        check("/npm/%40acme%2futil", Ok("npm/@acme/util"));
        check("/npm/@acme%2futil/1.0.0", Ok("npm/@acme/util/1.0.0"));
        check(
            "/npm/@acme%2futil/-/util-1.0.0.tgz",
            Ok("npm/@acme/util/-/util-1.0.0.tgz"),
        );
        assert_eq!(target("/npm/@acme%2futil"), target("/npm/@acme/util"));
        assert_eq!(
            target("/npm/@acme%2futil").unwrap().encoded_path(),
            "/npm/@acme/util"
        );
        check("/npm/@a%2f..", Err("dot segment in path"));
        check("/npm/@a%2f%2e%2e", Err("dot segment in path"));
        check("/npm/@a%2f.", Err("dot segment in path"));
        check("/private/@x%2f%2e%2e/y", Err("dot segment in path"));
        check("/npm/@%2fx", Err("encoded slash in path"));
        check("/npm/%40%2fx", Err("encoded slash in path"));
        check("/npm/@a%2f", Err("encoded slash in path"));
        check("/npm/@a%2f%2fb", Err("encoded slash in path"));
        check("/npm/@a%2fb%2fc", Err("encoded slash in path"));
        check("/npm/a@b%2fc", Err("encoded slash in path"));
        check("/npm/acme%2futil", Err("encoded slash in path"));
        check("/npm/@a%5cb", Err("encoded slash in path"));
        check("/npm/@a%2f%5cb", Err("encoded slash in path"));
        check("/npm/@a%2fb%00", Err("control character in path"));
    }

    #[test]
    fn traversal_in_every_spelling() {
        check("/../etc/passwd", Err("dot segment in path"));
        check("/a/../../etc/passwd", Err("dot segment in path"));
        check("/%2e%2e/etc/passwd", Err("dot segment in path"));
        check("/%2E%2E/etc/passwd", Err("dot segment in path"));
        check("/.%2e/etc/passwd", Err("dot segment in path"));
        check("/a/./b", Err("dot segment in path"));
        check("/a/%2e/b", Err("dot segment in path"));
        check("/a/.", Err("dot segment in path"));
        check("/..%2fetc%2fpasswd", Err("encoded slash in path"));
        check("/..%2Fetc", Err("encoded slash in path"));
        check("/private%2Fsecret.txt", Err("encoded slash in path"));
        check("/..%5cetc", Err("encoded slash in path"));
        check("/..%5Cetc", Err("encoded slash in path"));
        check("/..\\etc\\passwd", Err("backslash in path"));
        check("/a%00b", Err("control character in path"));
        check("/a\0b", Err("control character in path"));
        check("/a%0d%0aSet-Cookie:x", Err("control character in path"));
        check("/a//b", Err("empty segment in path"));
        check("//private/secret.txt", Err("empty segment in path"));
        check("/%ff", Err("path is not UTF-8"));
        check("/%c0%af", Err("path is not UTF-8"));
        check("/%C0%AE%C0%AE/etc", Err("path is not UTF-8"));
        check("/%e0%80%af", Err("path is not UTF-8"));
        check("relative", Err("path must start with '/'"));
    }
}
