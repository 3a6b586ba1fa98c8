//! The package formats the CDN serves, as plain functions of paths and bytes.
//!
//! - [`oci`]: the registry API v2 / OCI distribution pull paths under `/v2/`, Docker
//!   Distribution's (registry:2) storage layout they are read from, manifest media types and
//!   the registry's JSON errors.
//! - [`npm`]: npm registry paths (packuments, version documents, tarballs), Verdaccio's storage
//!   layout, the abbreviated packument, and tarball URLs pointed back through the CDN.
//! - [`digest`]: content digests (`sha256:…`, npm's `sha512-…`, `Repr-Digest`) and their
//!   streaming check.
//!
//! Used by origin-adapter (serving), the shield (integrity) and cdn-admin (publishing); it
//! knows no HTTP library and no storage client.

pub mod digest;
pub mod npm;
pub mod oci;

/// `rest` under the key prefix `root` (empty, or a folder with or without slashes around it).
pub fn join(root: &str, rest: &str) -> String {
    let root = root.trim_matches('/');
    if root.is_empty() {
        rest.to_owned()
    } else {
        format!("{root}/{rest}")
    }
}
