//! Request path → object key, checked the same way by every tier. Rejects every spelling of a
//! path that could escape the served tree or mean two different keys: `..` and `.` segments
//! (raw or percent-encoded), encoded slashes, backslashes, NUL and other control characters,
//! empty segments.

use percent_encoding::percent_decode_str;

/// Why a path was refused; always answered 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPath(pub &'static str);

impl From<BadPath> for crate::HttpError {
    fn from(bad: BadPath) -> Self {
        crate::HttpError::BadRequest(bad.0)
    }
}

/// The object key for a request path (query already removed), without the leading `/`.
pub fn object_key(path: &str) -> Result<String, BadPath> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(BadPath("path must start with '/'"));
    };
    let lower = rest.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return Err(BadPath("encoded slash in path"));
    }
    let decoded = percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| BadPath("path is not UTF-8"))?;
    if decoded.chars().any(|c| c.is_control()) {
        return Err(BadPath("control character in path"));
    }
    if decoded.contains('\\') {
        return Err(BadPath("backslash in path"));
    }
    if decoded.split('/').any(|s| s == ".." || s == ".") {
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
    fn traversal_in_every_spelling() {
        check("/../etc/passwd", Err("dot segment in path"));
        check("/a/../../etc/passwd", Err("dot segment in path"));
        check("/%2e%2e/etc/passwd", Err("dot segment in path"));
        check("/%2E%2E/etc/passwd", Err("dot segment in path"));
        check("/.%2e/etc/passwd", Err("dot segment in path"));
        check("/a/./b", Err("dot segment in path"));
        check("/..%2fetc%2fpasswd", Err("encoded slash in path"));
        check("/..%2Fetc", Err("encoded slash in path"));
        check("/..%5cetc", Err("encoded slash in path"));
        check("/..\\etc\\passwd", Err("backslash in path"));
        check("/a%00b", Err("control character in path"));
        check("/a\0b", Err("control character in path"));
        check("/a//b", Err("empty segment in path"));
        check("/%ff", Err("path is not UTF-8"));
        check("relative", Err("path must start with '/'"));
    }
}
