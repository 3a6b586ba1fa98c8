//! What a request's path names, in the terms credentials' scopes are written in, read with
//! the package formats' own parsers (`cdn_registry`): the same reading origin-adapter serves
//! by, so a scope covers exactly the package or repository whose bytes the answer carries.
//! (Read apart, `/v2/acme/manifests/manifests` was repository `acme/manifests` to the scope
//! and `acme`, tag `manifests`, to origin-adapter.)

use cdn_auth::Resource;
use cdn_config::{Naming, Route};
use cdn_registry::{npm, oci};

/// What `path` (canonical, decoded) names under `route`; `None` when it names nothing of the
/// route's kind (no scope can allow it).
pub fn resource(route: &Route, path: &str) -> Option<Resource> {
    let rest = route.rest(path);
    match route.policy.naming {
        Naming::Path => Some(Resource::Path(path.to_owned())),
        Naming::Npm => npm::Request::parse(rest).map(|r| Resource::Npm(r.name().to_owned())),
        Naming::Oci => match oci::repository(rest).ok()? {
            None => Some(Resource::Any),
            Some(name) => Some(Resource::Oci(name.to_owned())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdn_auth::Resource::*;

    fn route(prefix: &str, naming: Naming) -> Route {
        let text = format!(
            "origin:\n  listen: 127.0.0.1:9000\n  backend:\n    local:\n      root: x\n\
             shield:\n  listen: 127.0.0.1:8081\n  origin: 127.0.0.1:9000\n  cache:\n    memory: 8MiB\n\
             edge:\n  listen: 127.0.0.1:8080\n  shields: [127.0.0.1:8081]\n  cache:\n    memory: 8MiB\n\
             routes:\n  - prefix: {prefix}\n    ttl: 1m\n    scope: {}\n",
            match naming {
                Naming::Path => "path",
                Naming::Npm => "npm",
                Naming::Oci => "oci",
            }
        );
        let config = cdn_config::Config::parse(std::path::Path::new("/x.yaml"), &text).unwrap();
        let route = config.routes.iter().next().unwrap().clone();
        route
    }

    #[test]
    fn paths_name_packages_and_repositories() {
        let (path, npm, oci) = (
            route("/private/", Naming::Path),
            route("/npm/", Naming::Npm),
            route("/v2/", Naming::Oci),
        );
        assert_eq!(
            resource(&path, "/private/a/b"),
            Some(Path("/private/a/b".into()))
        );
        assert_eq!(
            resource(&npm, "/npm/left-pad"),
            Some(Npm("left-pad".into()))
        );
        assert_eq!(
            resource(&npm, "/npm/left-pad/-/left-pad-1.0.0.tgz"),
            Some(Npm("left-pad".into()))
        );
        assert_eq!(
            resource(&npm, "/npm/@acme/util"),
            Some(Npm("@acme/util".into()))
        );
        assert_eq!(
            resource(&npm, "/npm/@acme/util/-/util-2.0.0.tgz"),
            Some(Npm("@acme/util".into()))
        );
        assert_eq!(resource(&npm, "/npm/@acme"), None);
        assert_eq!(resource(&npm, "/npm/"), None);
        assert_eq!(resource(&oci, "/v2/"), Some(Any));
        assert_eq!(
            resource(&oci, "/v2/acme/app/manifests/latest"),
            Some(Oci("acme/app".into()))
        );
        let digest = format!("sha256:{}", "0".repeat(64));
        assert_eq!(
            resource(&oci, &format!("/v2/acme/app/blobs/{digest}")),
            Some(Oci("acme/app".into()))
        );
        assert_eq!(resource(&oci, "/v2/app/tags/list"), Some(Oci("app".into())));
        assert_eq!(resource(&oci, "/v2/manifests/1"), None);
        // A malformed reference still names its repository (the registry's 400 follows).
        assert_eq!(
            resource(&oci, "/v2/acme/app/blobs/sha256:1234"),
            Some(Oci("acme/app".into()))
        );
        assert_eq!(
            resource(&oci, "/v2/acme/app/manifests/-bad"),
            Some(Oci("acme/app".into()))
        );
        assert_eq!(resource(&oci, "/v2/acme/app"), None);
    }

    /// Regression: the scope took the last keyword, origin-adapter the segment before the
    /// operation; a tag named like an operation made them read different repositories.
    #[test]
    fn a_tag_named_like_an_operation_names_the_repository_served() {
        let oci = route("/v2/", Naming::Oci);
        for tag in ["manifests", "blobs", "tags", "list"] {
            let path = format!("/v2/acme/manifests/{tag}");
            assert_eq!(resource(&oci, &path), Some(Oci("acme".into())), "{path}");
            let path = format!("/v2/acme/app/manifests/{tag}");
            assert_eq!(
                resource(&oci, &path),
                Some(Oci("acme/app".into())),
                "{path}"
            );
        }
        // A repository may itself be called `blobs` or `manifests`.
        assert_eq!(
            resource(&oci, "/v2/x/blobs/manifests/1"),
            Some(Oci("x/blobs".into()))
        );
        assert_eq!(
            resource(&oci, "/v2/x/manifests/tags/list"),
            Some(Oci("x/manifests".into()))
        );
        // And origin-adapter reads the same: the repository is the parser's.
        for (path, name) in [
            ("acme/manifests/manifests", "acme"),
            ("x/manifests/tags/list", "x/manifests"),
        ] {
            match oci::Request::parse(path).unwrap() {
                oci::Request::Manifest { name: n, .. } | oci::Request::Tags { name: n } => {
                    assert_eq!(n, name)
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
