//! The npm registry, install side: what a path under the npm route names, where Verdaccio
//! keeps it (`<storage>/<name>/package.json` and the tarballs beside it, scoped packages under
//! `@scope/name/`), the abbreviated packument, version documents, and tarball URLs pointed
//! back through the CDN.

use crate::digest::Expected;
use serde_json::{Map, Value};

/// The `Accept` value npm sends for the abbreviated packument, and its content type.
pub const ABBREVIATED: &str = "application/vnd.npm.install-v1+json";

/// What a path under the npm route names. Scoped names arrive decoded (`@scope/name`), so
/// `@scope%2fname` and `@scope/name` name the same package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `<name>`: the packument.
    Packument { name: String },
    /// `<name>/<version or dist-tag>`: one version's document.
    Version { name: String, version: String },
    /// `<name>/-/<file>`: a tarball.
    Tarball { name: String, file: String },
}

impl Request {
    /// `rest` is the decoded path after the route's prefix. `None` when it names no package.
    pub fn parse(rest: &str) -> Option<Request> {
        let segments: Vec<&str> = rest.split('/').collect();
        let take = if rest.starts_with('@') { 2 } else { 1 };
        if segments.len() < take {
            return None;
        }
        let name = segments[..take].join("/");
        if !valid_name(&name) {
            return None;
        }
        match &segments[take..] {
            [] => Some(Request::Packument { name }),
            [version] if !version.is_empty() => Some(Request::Version {
                name,
                version: (*version).to_owned(),
            }),
            ["-", file] if valid_file(file) => Some(Request::Tarball {
                name,
                file: (*file).to_owned(),
            }),
            _ => None,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Request::Packument { name }
            | Request::Version { name, .. }
            | Request::Tarball { name, .. } => name,
        }
    }
}

/// A package name as the registry takes it: at most 214 characters of URL-safe characters,
/// not starting with `.` or `_`; scoped as `@scope/name`.
pub fn valid_name(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && !p.starts_with('_')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    };
    if name.len() > 214 {
        return false;
    }
    match name.strip_prefix('@') {
        Some(scoped) => matches!(scoped.split_once('/'), Some((s, n)) if part(s) && part(n)),
        None => part(name),
    }
}

fn valid_file(file: &str) -> bool {
    file.ends_with(".tgz") && !file.starts_with('.') && !file.contains('/')
}

/// The file name npm gives a version's tarball: the unscoped name, the version, `.tgz`.
pub fn tarball_file(name: &str, version: &str) -> String {
    let bare = name.rsplit('/').next().unwrap_or(name);
    format!("{bare}-{version}.tgz")
}

/// Where Verdaccio keeps packages, under a root (its `storage`, empty for a bucket's top).
#[derive(Debug, Clone)]
pub struct Layout {
    root: String,
}

impl Layout {
    pub fn new(root: &str) -> Layout {
        Layout {
            root: root.trim_matches('/').to_owned(),
        }
    }

    pub fn packument(&self, name: &str) -> String {
        crate::join(&self.root, &format!("{name}/package.json"))
    }

    pub fn tarball(&self, name: &str, file: &str) -> String {
        crate::join(&self.root, &format!("{name}/{file}"))
    }
}

/// The fields of a version the abbreviated packument keeps (npm's "corgi" document).
const ABBREVIATED_FIELDS: &[&str] = &[
    "name",
    "version",
    "deprecated",
    "dependencies",
    "optionalDependencies",
    "devDependencies",
    "bundleDependencies",
    "bundledDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
    "bin",
    "directories",
    "dist",
    "engines",
    "_hasShrinkwrap",
    "hasInstallScript",
    "os",
    "cpu",
    "funding",
    "license",
];

/// The abbreviated packument: name, dist-tags, modified, and each version with only what an
/// install needs.
pub fn abbreviate(packument: &Value) -> Value {
    let mut out = Map::new();
    for key in ["name", "dist-tags"] {
        if let Some(v) = packument.get(key) {
            out.insert(key.to_owned(), v.clone());
        }
    }
    if let Some(modified) = packument.pointer("/time/modified") {
        out.insert("modified".to_owned(), modified.clone());
    }
    let versions: Map<String, Value> = packument
        .get("versions")
        .and_then(Value::as_object)
        .map(|versions| {
            versions
                .iter()
                .map(|(v, doc)| {
                    let kept = ABBREVIATED_FIELDS
                        .iter()
                        .filter_map(|f| doc.get(*f).map(|x| ((*f).to_owned(), x.clone())))
                        .collect::<Map<_, _>>();
                    (v.clone(), Value::Object(kept))
                })
                .collect()
        })
        .unwrap_or_default();
    out.insert("versions".to_owned(), Value::Object(versions));
    Value::Object(out)
}

/// Points every version's `dist.tarball` at `<base><name>/-/<file>` (`base` is the npm
/// route's path, such as `/npm/`), whatever host the stored packument names. The file is the
/// last segment of the stored URL (Verdaccio stores the tarball under it), or npm's own name
/// for the version when there is none. The edge puts its own scheme and host in front.
pub fn point_tarballs(packument: &mut Value, base: &str) {
    let Some(name) = packument
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return;
    };
    let Some(versions) = packument.get_mut("versions").and_then(Value::as_object_mut) else {
        return;
    };
    for (version, doc) in versions.iter_mut() {
        let Some(dist) = doc.get_mut("dist").and_then(Value::as_object_mut) else {
            continue;
        };
        let file = dist
            .get("tarball")
            .and_then(Value::as_str)
            .and_then(|url| url.rsplit('/').next())
            .filter(|f| valid_file(f))
            .map_or_else(|| tarball_file(&name, version), str::to_owned);
        dist.insert(
            "tarball".to_owned(),
            Value::String(format!("{base}{name}/-/{file}")),
        );
    }
}

/// One version's document, by version or by dist-tag.
pub fn version<'a>(packument: &'a Value, version_or_tag: &str) -> Option<&'a Value> {
    let versions = packument.get("versions")?;
    versions.get(version_or_tag).or_else(|| {
        let tagged = packument.pointer(&format!("/dist-tags/{}", escape(version_or_tag)))?;
        versions.get(tagged.as_str()?)
    })
}

/// What the tarball `file` must hash to, from the `dist.integrity` of the version that names
/// it; `None` when no version names it or it states no sha512/sha256.
pub fn integrity_of(packument: &Value, file: &str) -> Option<Expected> {
    let versions = packument.get("versions")?.as_object()?;
    versions.values().find_map(|doc| {
        let dist = doc.get("dist")?;
        let url = dist.get("tarball")?.as_str()?;
        if url.rsplit('/').next()? != file {
            return None;
        }
        Expected::from_integrity(dist.get("integrity")?.as_str()?)
    })
}

/// A JSON pointer token for `s` (RFC 6901).
fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        assert_eq!(
            Request::parse("left-pad"),
            Some(Request::Packument {
                name: "left-pad".into()
            })
        );
        assert_eq!(
            Request::parse("@acme/util"),
            Some(Request::Packument {
                name: "@acme/util".into()
            })
        );
        assert_eq!(
            Request::parse("@acme/util/-/util-1.0.0.tgz"),
            Some(Request::Tarball {
                name: "@acme/util".into(),
                file: "util-1.0.0.tgz".into()
            })
        );
        assert_eq!(
            Request::parse("left-pad/latest"),
            Some(Request::Version {
                name: "left-pad".into(),
                version: "latest".into()
            })
        );
        for bad in [
            "",
            "@acme",
            "_x",
            ".x",
            "a/-/b",
            "a/-/../x.tgz",
            "a/b/c",
            "@/x",
            "a b",
        ] {
            assert_eq!(Request::parse(bad), None, "{bad}");
        }
        let layout = Layout::new("storage/");
        assert_eq!(
            layout.packument("@acme/util"),
            "storage/@acme/util/package.json"
        );
        assert_eq!(layout.tarball("x", "x-1.tgz"), "storage/x/x-1.tgz");
        assert_eq!(Layout::new("").packument("x"), "x/package.json");
    }

    fn sample() -> Value {
        json!({
            "name": "@acme/util",
            "dist-tags": {"latest": "1.0.0"},
            "time": {"modified": "2026-01-01T00:00:00.000Z"},
            "readme": "long",
            "versions": {
                "1.0.0": {
                    "name": "@acme/util", "version": "1.0.0", "readme": "long",
                    "dependencies": {"a": "^1"},
                    "dist": {
                        "tarball": "http://localhost:4873/@acme/util/-/util-1.0.0.tgz",
                        "integrity": crate::digest::npm_integrity(b"t"),
                    }
                }
            }
        })
    }

    #[test]
    fn abbreviated_and_pointed() {
        let mut p = sample();
        point_tarballs(&mut p, "/npm/");
        assert_eq!(
            p["versions"]["1.0.0"]["dist"]["tarball"],
            "/npm/@acme/util/-/util-1.0.0.tgz"
        );
        let short = abbreviate(&p);
        assert_eq!(short["modified"], "2026-01-01T00:00:00.000Z");
        assert!(short.get("readme").is_none());
        assert!(short["versions"]["1.0.0"].get("readme").is_none());
        assert_eq!(short["versions"]["1.0.0"]["dependencies"]["a"], "^1");
        assert_eq!(version(&p, "latest").unwrap()["version"], "1.0.0");
        assert!(version(&p, "2.0.0").is_none());
        assert!(integrity_of(&p, "util-1.0.0.tgz").unwrap().matches(b"t"));
        assert!(integrity_of(&p, "util-2.0.0.tgz").is_none());
    }
}
