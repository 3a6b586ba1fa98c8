//! Which object keys each route reads, and the check that no route reaches another's. The
//! route, the gate and the cache key are all decided on the request's path, but origin-adapter
//! reads a key made of the route's source (a backend and a key prefix) and the path: two routes
//! over one backend could then hand out the same object, an `auth` route's through a public one
//! (a catch-all over the bucket's root read every manifest and layer the `/v2/` route guards,
//! by their layout paths).
//!
//! What a route reads:
//! - a `path` route the key `<source prefix>/<path without its leading '/'>`, for the paths it
//!   covers (those no longer route's prefix takes);
//! - an `npm` or `oci` route anything under its source prefix (the package layouts are read
//!   whole: packuments, tarballs, links, blobs).
//!
//! Two `path` routes with the same source read a key only through its own path, so the longest
//! prefix decides between them as it does for requests; any other pair must keep apart.
//!
//! Sources are compared by where they read, not by their backends' names: two names for one
//! folder or bucket, or a folder inside another, are the same keys (a second backend over the
//! bucket had let a public route read the registry layout again). A local folder is compared
//! as the file system resolves it (symbolic links followed) where it exists, as on the
//! origin's host, else as written without `.` and `..`. Two S3 backends naming one bucket are
//! taken for one store whatever their endpoints say: one endpoint has many spellings (host
//! case, a default port, `localhost` for `127.0.0.1`, AWS's regional names), and a bucket name
//! is one store's at a given service.

use crate::{Backend, Naming, OriginConfig, Route};
use std::path::{Component, Path, PathBuf};

/// Two routes that can read one key: `reader` reaches a key `owner` serves, by `path`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Overlap {
    /// Indices in the order the routes were given.
    pub reader: usize,
    pub owner: usize,
    /// A path covered by `reader` whose key is among `owner`'s.
    pub path: String,
    /// The key prefix `owner` reads, which `path` reaches.
    pub keys: String,
}

/// What of a route says which keys it reads.
#[derive(Debug, Clone)]
pub(crate) struct Reads<'a> {
    pub prefix: &'a str,
    pub naming: Naming,
    /// Where every key it reads starts: its backend's location, then its source prefix, each
    /// ending in `/` (so `npm` does not cover `npm-private`).
    pub root: String,
}

impl Reads<'_> {
    pub fn of<'a>(route: &'a Route, origin: &OriginConfig) -> Reads<'a> {
        let backend = match &route.source.backend {
            Some(name) => origin.backends.get(name).unwrap_or(&origin.backend),
            None => &origin.backend,
        };
        let mut root = location(backend);
        match route.source.prefix.trim_matches('/') {
            "" => {}
            prefix => root.push_str(&format!("{prefix}/")),
        }
        Reads {
            prefix: &route.prefix,
            naming: route.policy.naming,
            root,
        }
    }

    /// The key prefix of everything the route reads.
    fn region(&self) -> String {
        match self.naming {
            Naming::Path => format!("{}{}", self.root, &self.prefix[1..]),
            Naming::Npm | Naming::Oci => self.root.clone(),
        }
    }
}

/// Where a backend reads, as a key prefix ending in `/`.
fn location(backend: &Backend) -> String {
    match backend {
        Backend::Local { root } => {
            let real = root.canonicalize().unwrap_or_else(|_| normal(root));
            let mut at = format!("file:{}", real.display());
            if !at.ends_with('/') {
                at.push('/');
            }
            at
        }
        Backend::S3(s3) => {
            let mut at = format!("s3:{}/", s3.bucket.to_ascii_lowercase());
            if !s3.prefix.is_empty() {
                at.push_str(&format!("{}/", s3.prefix.trim_matches('/')));
            }
            at
        }
    }
}

/// `path` without `.` components, and each `..` taking off the component before it.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The route a path goes to: the longest prefix that starts it.
fn route_of(routes: &[Reads<'_>], path: &str) -> Option<usize> {
    routes
        .iter()
        .enumerate()
        .filter(|(_, r)| path.starts_with(r.prefix))
        .max_by_key(|(_, r)| r.prefix.len())
        .map(|(i, _)| i)
}

/// A path that `routes[reader]` covers and whose key starts with `keys`, if there is one.
fn reaching_path(routes: &[Reads<'_>], reader: usize, keys: &str) -> Option<String> {
    let route = &routes[reader];
    match route.naming {
        Naming::Npm | Naming::Oci => {
            let own = route.region();
            (own.starts_with(keys) || keys.starts_with(&own)).then(|| route.prefix.to_owned())
        }
        Naming::Path => {
            if let Some(rest) = keys.strip_prefix(route.root.as_str()) {
                // Keys under `keys` are read through the paths that start with this.
                let path = format!("/{rest}");
                if route.prefix.starts_with(&path) {
                    // Every path of the route does.
                    Some(route.prefix.to_owned())
                } else if path.starts_with(route.prefix) && route_of(routes, &path) == Some(reader)
                {
                    Some(path)
                } else {
                    None
                }
            } else if route.root.starts_with(keys) {
                // All of its keys are.
                Some(route.prefix.to_owned())
            } else {
                None
            }
        }
    }
}

/// The first pair of routes over one backend where one reads what the other serves.
pub(crate) fn first_overlap(routes: &[Reads<'_>]) -> Option<Overlap> {
    for (reader, r) in routes.iter().enumerate() {
        for (owner, o) in routes.iter().enumerate() {
            if reader == owner {
                continue;
            }
            let paths = (r.naming == Naming::Path, o.naming == Naming::Path);
            if paths == (true, true) && r.root == o.root {
                continue;
            }
            if paths == (false, true) {
                // A path route owns only the keys of the paths it covers: whether one lies
                // among a package route's is asked the other way round, with its paths.
                continue;
            }
            let keys = o.region();
            if let Some(path) = reaching_path(routes, reader, &keys) {
                return Some(Overlap {
                    reader,
                    owner,
                    path,
                    keys,
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &'static str, naming: Naming, source: &str) -> Reads<'static> {
        Reads {
            prefix,
            naming,
            root: if source.is_empty() {
                "file:/data/".into()
            } else {
                format!("file:/data/{source}/")
            },
        }
    }

    fn overlap(routes: &[Reads<'_>]) -> Option<(usize, usize, String)> {
        first_overlap(routes).map(|o| (o.reader, o.owner, o.path))
    }

    #[test]
    fn a_catch_all_over_the_registry_root_is_refused() {
        let routes = [
            route("/v2/", Naming::Oci, "registry"),
            route("/", Naming::Path, ""),
        ];
        assert_eq!(overlap(&routes), Some((1, 0, "/registry/".into())));
        let routes = [
            route("/v2/", Naming::Oci, "registry"),
            route("/", Naming::Path, "files"),
        ];
        assert_eq!(
            overlap(&routes),
            None,
            "the catch-all has a folder of its own"
        );
    }

    #[test]
    fn a_package_route_whose_folder_its_own_path_covers_is_apart() {
        // `/npm/…` goes to the npm route, so the catch-all never reads `npm/…`.
        let routes = [
            route("/npm/", Naming::Npm, "npm"),
            route("/", Naming::Path, ""),
        ];
        assert_eq!(overlap(&routes), None);
        // `npm` is not `npm-private`.
        let routes = [
            route("/npm/", Naming::Npm, "npm"),
            route("/npm-private/", Naming::Npm, "npm-private"),
        ];
        assert_eq!(overlap(&routes), None);
        // Two package routes over one folder, or one inside the other.
        let routes = [
            route("/npm/", Naming::Npm, "pkgs"),
            route("/npm2/", Naming::Npm, "pkgs/sub"),
        ];
        assert_eq!(overlap(&routes), Some((0, 1, "/npm/".into())));
    }

    #[test]
    fn path_routes_over_one_source_are_decided_by_their_prefixes() {
        let routes = [
            route("/private/", Naming::Path, ""),
            route("/_cdn/", Naming::Path, ""),
            route("/", Naming::Path, ""),
        ];
        assert_eq!(overlap(&routes), None);
    }

    #[test]
    fn path_routes_over_nested_sources_meet() {
        // `/files/x` (route `/files/`, key `files/x`) and `/x` (route `/`, key `files/x`).
        let routes = [
            route("/files/", Naming::Path, ""),
            route("/", Naming::Path, "files"),
        ];
        assert!(overlap(&routes).is_some());
        // A public route whose folder holds a private route's keys: `/public/x` and
        // `/private/public/x` read `private/public/x`.
        let routes = [
            route("/private/", Naming::Path, ""),
            route("/public/", Naming::Path, "private"),
        ];
        assert_eq!(overlap(&routes), Some((0, 1, "/private/public/".into())));
        assert_eq!(
            overlap(&[routes[1].clone(), routes[0].clone()]),
            Some((0, 1, "/public/".into()))
        );
    }

    #[test]
    fn backends_meet_where_they_read_whatever_their_names() {
        let mut registry = route("/v2/", Naming::Oci, "");
        registry.root = "s3:http://127.0.0.1:9100/images/".into();
        assert_eq!(
            overlap(&[registry.clone(), route("/", Naming::Path, "")]),
            None
        );
        // Regression: a second name for the folder the registry is read from.
        let mut alias = route("/registry/", Naming::Path, "");
        alias.root = "file:/data/".into();
        let registry = route("/v2/", Naming::Oci, "registry");
        assert!(overlap(&[registry.clone(), alias]).is_some());
        // A backend over a folder inside another's.
        let mut inner = route("/inner/", Naming::Path, "");
        inner.root = "file:/data/registry/".into();
        assert!(overlap(&[registry, inner]).is_some());
    }

    #[test]
    fn locations() {
        let local = |root: &str| location(&Backend::Local { root: root.into() });
        assert_eq!(local("/srv/data"), "file:/srv/data/");
        assert_eq!(local("/srv/data/"), "file:/srv/data/");
        assert_eq!(local("/srv/./x/../data"), "file:/srv/data/");
        let s3 = |endpoint: Option<&str>, prefix: &str| {
            location(&Backend::S3(crate::S3Backend {
                endpoint: endpoint.map(str::to_owned),
                bucket: "pkgs".into(),
                region: "us-east-1".into(),
                path_style: true,
                allow_http: true,
                prefix: prefix.into(),
            }))
        };
        assert_eq!(s3(None, ""), "s3:pkgs/");
        // Regression: one endpoint spelled two ways was two stores.
        for endpoint in [
            None,
            Some("http://LocalHost:9100"),
            Some("http://127.0.0.1:9100/"),
        ] {
            assert_eq!(s3(endpoint, "a/b"), "s3:pkgs/a/b/", "{endpoint:?}");
        }
        // Regression: a symbolic link to a folder, or `..` after one, is where it leads.
        let base = std::env::temp_dir().join(format!("key-spaces-{}", std::process::id()));
        let real = base.join("real/registry");
        std::fs::create_dir_all(real.join("sub")).unwrap();
        std::os::unix::fs::symlink(&real, base.join("link")).unwrap();
        std::fs::create_dir_all(base.join("d1")).unwrap();
        std::os::unix::fs::symlink(real.join("sub"), base.join("d1/ln")).unwrap();
        let resolved = format!("file:{}/", real.canonicalize().unwrap().display());
        assert_eq!(local(base.join("link").to_str().unwrap()), resolved);
        assert_eq!(local(base.join("d1/ln/..").to_str().unwrap()), resolved);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
