//! What a path names and what a credential's scopes allow. A route says how its paths name
//! things (`Naming`): a plain path, an npm package (`@scope/name` or `name`, the tarballs under
//! it included), or a Docker/OCI repository (`/v2/<name>/manifests|blobs|tags/…`). A scope is
//! `kind:pattern` — `path:/private/*`, `npm:@acme/*`, `npm:left-pad`, `oci:acme/*` — or `*`
//! for everything; `*` in a pattern matches any run of characters, `/` included.

/// How a route's paths name what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Naming {
    #[default]
    Path,
    Npm,
    Oci,
}

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
    /// What `path` (canonical, decoded) names under a route of `prefix` named by `naming`.
    /// `None` when the path names nothing of that kind (refused: no scope can allow it).
    pub fn of(naming: Naming, prefix: &str, path: &str) -> Option<Resource> {
        let rest = path
            .strip_prefix(prefix)
            .unwrap_or(path)
            .trim_start_matches('/');
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        match naming {
            Naming::Path => Some(Resource::Path(path.to_owned())),
            Naming::Npm => match segments.as_slice() {
                [scope, name, ..] if scope.starts_with('@') && scope.len() > 1 => {
                    Some(Resource::Npm(format!("{scope}/{name}")))
                }
                [name, ..] if !name.starts_with('@') => Some(Resource::Npm((*name).to_owned())),
                _ => None,
            },
            Naming::Oci => {
                if segments.is_empty() {
                    return Some(Resource::Any);
                }
                let at = segments
                    .iter()
                    .rposition(|s| matches!(*s, "manifests" | "blobs" | "tags"))
                    .filter(|&i| i > 0)?;
                Some(Resource::Oci(segments[..at].join("/")))
            }
        }
    }

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

    fn of(naming: Naming, prefix: &str, path: &str) -> Option<Resource> {
        Resource::of(naming, prefix, path)
    }

    #[test]
    fn paths_name_packages_and_repositories() {
        use Resource::*;
        assert_eq!(
            of(Naming::Path, "/private/", "/private/a/b"),
            Some(Path("/private/a/b".into()))
        );
        assert_eq!(
            of(Naming::Npm, "/npm/", "/npm/left-pad"),
            Some(Npm("left-pad".into()))
        );
        assert_eq!(
            of(Naming::Npm, "/npm/", "/npm/left-pad/-/left-pad-1.0.0.tgz"),
            Some(Npm("left-pad".into()))
        );
        assert_eq!(
            of(Naming::Npm, "/npm/", "/npm/@acme/util"),
            Some(Npm("@acme/util".into()))
        );
        assert_eq!(
            of(Naming::Npm, "/npm/", "/npm/@acme/util/-/util-2.0.0.tgz"),
            Some(Npm("@acme/util".into()))
        );
        assert_eq!(of(Naming::Npm, "/npm/", "/npm/@acme"), None);
        assert_eq!(of(Naming::Npm, "/npm/", "/npm/"), None);
        assert_eq!(of(Naming::Oci, "/v2/", "/v2/"), Some(Any));
        assert_eq!(
            of(Naming::Oci, "/v2/", "/v2/acme/app/manifests/latest"),
            Some(Oci("acme/app".into()))
        );
        assert_eq!(
            of(Naming::Oci, "/v2/", "/v2/acme/app/blobs/sha256:00"),
            Some(Oci("acme/app".into()))
        );
        assert_eq!(
            of(Naming::Oci, "/v2/", "/v2/app/tags/list"),
            Some(Oci("app".into()))
        );
        // A repository may itself be called `blobs`: the last keyword names the operation.
        assert_eq!(
            of(Naming::Oci, "/v2/", "/v2/x/blobs/manifests/1"),
            Some(Oci("x/blobs".into()))
        );
        assert_eq!(of(Naming::Oci, "/v2/", "/v2/manifests/1"), None);
        assert_eq!(of(Naming::Oci, "/v2/", "/v2/acme/app"), None);
    }

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
