//! What a credential's scopes allow. A request asks for a `Resource`: a plain path, an npm
//! package (`@scope/name` or `name`, the tarballs under it included), or a Docker/OCI
//! repository. Which one a path names is read by the edge with the package formats' own
//! parsers (`cdn_registry`), the same ones origin-adapter serves by, so a scope covers exactly
//! what is served. A scope is `kind:pattern` — `path:/private/*`, `npm:@acme/*`,
//! `npm:left-pad`, `oci:acme/*` — or `*` for everything; `*` in a pattern matches any run of
//! characters, `/` included.

/// What one request asks for, in the terms scopes are written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A plain path (canonical, decoded).
    Path(String),
    /// An npm package: `name` or `@scope/name`.
    Npm(String),
    /// A Docker/OCI repository.
    Oci(String),
    /// Something every authenticated caller may see (the registry's `/v2/` base).
    Any,
}

impl Resource {
    /// Whether any of `scopes` allows this.
    pub fn allowed_by<S: AsRef<str>>(&self, scopes: &[S]) -> bool {
        *self == Resource::Any || scopes.iter().any(|s| self.allowed_by_one(s.as_ref()))
    }

    fn allowed_by_one(&self, scope: &str) -> bool {
        if scope == "*" {
            return true;
        }
        let Some((kind, pattern)) = scope.split_once(':') else {
            return false;
        };
        match (self, kind) {
            (Resource::Path(p), "path") | (Resource::Npm(p), "npm") | (Resource::Oci(p), "oci") => {
                glob(pattern.as_bytes(), p.as_bytes())
            }
            _ => false,
        }
    }
}

/// `*` matches any run of bytes; everything else itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_allow_what_they_name() {
        let npm = Resource::Npm("@acme/util".into());
        assert!(npm.allowed_by(&["npm:@acme/*"]));
        assert!(npm.allowed_by(&["npm:@acme/util"]));
        assert!(npm.allowed_by(&["*"]));
        assert!(!npm.allowed_by(&["npm:@acme/utility"]));
        assert!(!npm.allowed_by(&["npm:@other/*", "oci:*", "path:*"]));
        let empty: [&str; 0] = [];
        assert!(!npm.allowed_by(&empty));

        let repo = Resource::Oci("acme/app".into());
        assert!(repo.allowed_by(&["oci:acme/*"]));
        assert!(repo.allowed_by(&["oci:*/app"]));
        assert!(!repo.allowed_by(&["oci:acme"]));

        let path = Resource::Path("/private/team/x.bin".into());
        assert!(path.allowed_by(&["path:/private/*"]));
        assert!(path.allowed_by(&["path:/private/*/x.bin"]));
        assert!(!path.allowed_by(&["path:/private/other/*"]));
        assert!(!path.allowed_by(&["garbage"]));

        assert!(Resource::Any.allowed_by(&["npm:nothing-in-particular"]));
        assert!(Resource::Any.allowed_by(&empty), "any credential at all");
    }

    #[test]
    fn globs() {
        assert!(glob(b"a*c", b"abbbc"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a**", b"a"));
        assert!(!glob(b"a*c", b"abcd"));
        assert!(glob(b"*b*", b"aaba"));
        assert!(!glob(b"", b"a"));
    }
}
