//! The npm registry, install side: what a path under the npm route names, where Verdaccio
//! keeps it (`<storage>/<name>/package.json` and the tarballs beside it, scoped packages under
//! `@scope/name/`), the abbreviated packument, version documents, and tarball URLs pointed
//! back through the CDN.

use crate::digest::Expected;
use serde_json::{Map, Value};

/// The `Accept` value npm sends for the abbreviated packument, and its content type.
pub const ABBREVIATED: &str = "application/vnd.npm.install-v1+json";
/// The content type of the full packument, and the `Accept` it is asked by.
pub const FULL: &str = "application/json";

/// Which of the two packuments a request's `Accept` values ask for: the abbreviated one when
/// npm's install type is named anywhere in them (in any case: media types are), else the full
/// document. Every `Accept` comes
/// down to one of the two, so a packument has two variants whatever clients send.
pub fn wants_abbreviated<'a>(accept: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let wanted = ABBREVIATED.as_bytes();
    accept.into_iter().any(|v| {
        v.windows(wanted.len())
            .any(|w| w.eq_ignore_ascii_case(wanted))
    })
}

/// The one `Accept` value each packument is asked by.
pub fn canonical_accept(abbreviated: bool) -> &'static str {
    if abbreviated {
        ABBREVIATED
    } else {
        FULL
    }
}

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

/// A version's tarball as the packument records it: the file it is stored under beside the
/// packument, `dist.integrity` (`sha512-<base64>`) and `dist.shasum` (sha1 hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dist {
    pub file: String,
    pub integrity: String,
    pub shasum: String,
}

/// What [`add_version`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The version is new in the packument.
    New,
    /// The same bytes were published before: only the dist-tag was (re)set.
    Unchanged,
}

/// Why a version cannot be added to a packument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("package.json has no valid `name` (got {0})")]
    Name(String),
    #[error("package.json has no valid `version` (got {0})")]
    Version(String),
    #[error("dist-tag {0:?} is not a valid tag")]
    Tag(String),
    #[error("the stored packument is not a JSON object")]
    NotAPackument,
    #[error("the stored packument is for {stored:?}, not {name:?}")]
    OtherPackage { stored: String, name: String },
    /// npm versions are immutable: the same version with other bytes would make every
    /// lockfile's integrity for it wrong.
    #[error(
        "{name}@{version} is already published with different content; versions are immutable"
    )]
    Exists { name: String, version: String },
}

/// Adds the version `package_json` describes (the `package.json` inside its tarball) to
/// `packument` (`None` when the package is new), as Verdaccio stores it: the version document
/// is the package.json with `_id` and `dist`, `dist-tags.<tag>` names it, `time` records when
/// (`now`, RFC 3339 with milliseconds as npm writes it). `dist.tarball` is `<name>/-/<file>`:
/// the origin-adapter points it through the CDN when serving. Existing versions are kept;
/// republishing identical bytes only moves the tag; other bytes under an existing version are
/// refused.
pub fn add_version(
    packument: Option<Value>,
    package_json: &Value,
    dist: &Dist,
    tag: &str,
    now: &str,
) -> Result<(Value, Added), PublishError> {
    let name = string_field(package_json, "name")
        .filter(|n| valid_name(n))
        .ok_or_else(|| PublishError::Name(shown(package_json.get("name"))))?;
    let version = string_field(package_json, "version")
        .filter(|v| valid_version(v))
        .ok_or_else(|| PublishError::Version(shown(package_json.get("version"))))?;
    if !valid_version(tag) || tag.parse::<u64>().is_ok() {
        return Err(PublishError::Tag(tag.to_owned()));
    }
    let mut packument = match packument {
        Some(Value::Object(map)) => map,
        Some(_) => return Err(PublishError::NotAPackument),
        None => new_packument(&name, now),
    };
    if let Some(stored) = packument.get("name").and_then(Value::as_str) {
        if stored != name {
            return Err(PublishError::OtherPackage {
                stored: stored.to_owned(),
                name,
            });
        }
    }
    let added = match packument.get("versions").and_then(|v| v.get(&version)) {
        Some(existing) if same_tarball(existing, dist) => Added::Unchanged,
        Some(_) => return Err(PublishError::Exists { name, version }),
        None => Added::New,
    };
    let tag_moves = packument
        .get("dist-tags")
        .and_then(|tags| tags.get(tag))
        .and_then(Value::as_str)
        != Some(version.as_str());
    if added == Added::New {
        let doc = version_document(package_json, &name, &version, dist);
        object_at(&mut packument, "versions").insert(version.clone(), doc);
        object_at(&mut packument, "time").insert(version.clone(), now.into());
        object_at(&mut packument, "_attachments").insert(
            dist.file.clone(),
            serde_json::json!({ "shasum": dist.shasum, "version": version }),
        );
    }
    object_at(&mut packument, "dist-tags").insert(tag.to_owned(), version.into());
    if added == Added::New || tag_moves {
        object_at(&mut packument, "time").insert("modified".to_owned(), now.into());
    }
    Ok((Value::Object(packument), added))
}

fn string_field(doc: &Value, key: &str) -> Option<String> {
    doc.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "nothing".to_owned(), Value::to_string)
}

/// A version or dist-tag usable in a file name and a URL: semver's characters only.
fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 256
        && !v.starts_with('.')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'_'))
}

fn new_packument(name: &str, now: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("_id".to_owned(), name.into());
    map.insert("name".to_owned(), name.into());
    map.insert("versions".to_owned(), Value::Object(Map::new()));
    map.insert("dist-tags".to_owned(), Value::Object(Map::new()));
    map.insert("time".to_owned(), serde_json::json!({ "created": now }));
    map.insert("_attachments".to_owned(), Value::Object(Map::new()));
    map
}

/// Whether a stored version document names the same tarball bytes as `dist`.
fn same_tarball(existing: &Value, dist: &Dist) -> bool {
    match existing.pointer("/dist/integrity").and_then(Value::as_str) {
        Some(integrity) => integrity == dist.integrity,
        None => existing.pointer("/dist/shasum").and_then(Value::as_str) == Some(&dist.shasum),
    }
}

fn version_document(package_json: &Value, name: &str, version: &str, dist: &Dist) -> Value {
    let mut doc = package_json.as_object().cloned().unwrap_or_default();
    doc.insert("_id".to_owned(), format!("{name}@{version}").into());
    doc.insert(
        "dist".to_owned(),
        serde_json::json!({
            "tarball": format!("{name}/-/{}", dist.file),
            "integrity": dist.integrity,
            "shasum": dist.shasum,
        }),
    );
    Value::Object(doc)
}

/// The object under `key`, made (or replacing a non-object) if needed.
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(inner) => inner,
        _ => unreachable!("made an object just above"),
    }
}

/// A JSON pointer token for `s` (RFC 6901).
fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accept_asks_for_one_of_two_packuments() {
        let asks = |values: &[&str]| wants_abbreviated(values.iter().map(|v| v.as_bytes()));
        assert!(asks(&[
            "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*"
        ]));
        assert!(asks(&["text/html", ABBREVIATED]));
        assert!(asks(&["APPLICATION/VND.NPM.INSTALL-V1+JSON"]));
        assert!(!asks(&["application/json"]));
        assert!(!asks(&["x/bust-1, application/json"]));
        assert!(!asks(&[]));
        assert_eq!(canonical_accept(true), ABBREVIATED);
        assert_eq!(canonical_accept(false), FULL);
    }
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

    fn dist(bytes: &[u8], file: &str) -> Dist {
        Dist {
            file: file.to_owned(),
            integrity: crate::digest::npm_integrity(bytes),
            shasum: "00".repeat(20),
        }
    }

    #[test]
    fn versions_are_added_and_immutable() {
        let v1 = json!({"name": "@acme/util", "version": "1.0.0", "main": "index.js"});
        let d1 = dist(b"one", "util-1.0.0.tgz");
        let (p, added) = add_version(None, &v1, &d1, "latest", "T1").unwrap();
        assert_eq!(added, Added::New);
        assert_eq!(p["name"], "@acme/util");
        assert_eq!(p["dist-tags"]["latest"], "1.0.0");
        assert_eq!(p["time"]["created"], "T1");
        assert_eq!(p["time"]["1.0.0"], "T1");
        let doc = &p["versions"]["1.0.0"];
        assert_eq!(doc["_id"], "@acme/util@1.0.0");
        assert_eq!(doc["main"], "index.js");
        assert_eq!(doc["dist"]["tarball"], "@acme/util/-/util-1.0.0.tgz");
        assert_eq!(
            integrity_of(&p, "util-1.0.0.tgz"),
            Expected::from_integrity(&d1.integrity)
        );

        let v2 = json!({"name": "@acme/util", "version": "2.0.0-rc.1"});
        let d2 = dist(b"two", "util-2.0.0-rc.1.tgz");
        let (p, _) = add_version(Some(p), &v2, &d2, "next", "T2").unwrap();
        assert_eq!(
            p["dist-tags"],
            json!({"latest": "1.0.0", "next": "2.0.0-rc.1"})
        );
        assert_eq!(p["time"]["created"], "T1");
        assert_eq!(p["time"]["modified"], "T2");
        assert_eq!(p["versions"].as_object().unwrap().len(), 2);

        let (same, added) = add_version(Some(p.clone()), &v1, &d1, "latest", "T3").unwrap();
        assert_eq!(added, Added::Unchanged);
        assert_eq!(same, p, "an identical republish changes nothing");
        let err = add_version(
            Some(p.clone()),
            &v1,
            &dist(b"other", "util-1.0.0.tgz"),
            "latest",
            "T3",
        );
        assert!(matches!(err, Err(PublishError::Exists { .. })), "{err:?}");

        let other = json!({"name": "left-pad", "version": "1.0.0"});
        assert!(matches!(
            add_version(Some(p.clone()), &other, &d1, "latest", "T"),
            Err(PublishError::OtherPackage { .. })
        ));
        for bad in [
            json!({"version": "1.0.0"}),
            json!({"name": "x", "version": "../1"}),
        ] {
            assert!(
                add_version(None, &bad, &d1, "latest", "T").is_err(),
                "{bad}"
            );
        }
        assert!(add_version(None, &v1, &d1, "1", "T").is_err());
    }
}
