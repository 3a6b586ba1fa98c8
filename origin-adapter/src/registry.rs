//! The registry API v2 / OCI distribution, pull side, read from registry:2's storage layout
//! under the route's source: the version check, manifests by tag and by digest (with the
//! media type read from the body and `Docker-Content-Digest`), blobs by digest (ranges and
//! HEAD included), tag lists, and the registry's JSON errors.
//!
//! A blob or manifest is served only if the repository asked for links it: a digest known in
//! one repository cannot be read through another. What a digest names never changes (kept
//! forever); a tag may be moved (kept for the route's `ttl`). Every answer carrying a body
//! that has a digest says it in `Repr-Digest`, which the shield checks before storing.

use crate::serve::{
    backend_error, content_etag, document, error_response, Body, Freshness, Origin,
};
use bytes::Bytes;
use cdn_config::Route;
use cdn_http::HttpError;
use cdn_registry::digest::{Digest, REPR_DIGEST};
use cdn_registry::oci::{self, ErrorCode, Layout, Reference};
use futures::StreamExt;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use object_store::ObjectStore;
use std::sync::Arc;

/// The largest manifest served (registry:2 refuses pushes of manifests over 4 MiB).
const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;
/// A link file holds one digest.
const LINK_LIMIT: u64 = 1024;

/// Why a registry request got no object.
enum Failure {
    /// The registry's own answer: a code and detail.
    Registry(ErrorCode, Option<String>),
    /// The backend failed (502, 504…).
    Http(HttpError),
}

impl From<HttpError> for Failure {
    fn from(e: HttpError) -> Failure {
        Failure::Http(e)
    }
}

pub(crate) async fn answer<B>(
    origin: &Origin,
    req: &Request<B>,
    head_only: bool,
    route: &Route,
    store: &Arc<dyn ObjectStore>,
    rest: &str,
) -> Response<Body> {
    let pull = Pull {
        origin,
        store,
        layout: Layout::new(&route.source.prefix),
        route,
    };
    let mut resp = match pull.answer(req, head_only, rest).await {
        Ok(resp) => resp,
        Err(Failure::Registry(code, detail)) => {
            // Something missing is kept for the route's negative_ttl, as a missing file is.
            let cache = if code.status() == 404 {
                crate::serve::cache_control(&route.policy, Freshness::Missing)
            } else {
                "no-store".to_owned()
            };
            let body = Bytes::from(code.body(detail.as_deref()));
            let resp = Response::builder()
                .status(code.status())
                .header(CONTENT_TYPE, "application/json")
                .header(CONTENT_LENGTH, body.len())
                .header(CACHE_CONTROL, cache);
            let body = if head_only { Bytes::new() } else { body };
            resp.body(
                Full::new(body)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .expect("valid response")
        }
        Err(Failure::Http(e)) => {
            if e.is_server_error() {
                tracing::warn!(path = %req.uri().path(), error = %e, "registry request failed");
            }
            error_response(&e)
        }
    };
    resp.headers_mut().insert(
        oci::API_VERSION_HEADER,
        HeaderValue::from_static(oci::API_VERSION),
    );
    resp
}

struct Pull<'a> {
    origin: &'a Origin,
    store: &'a Arc<dyn ObjectStore>,
    layout: Layout,
    route: &'a Route,
}

impl Pull<'_> {
    async fn answer<B>(
        &self,
        req: &Request<B>,
        head_only: bool,
        rest: &str,
    ) -> Result<Response<Body>, Failure> {
        let request =
            oci::Request::parse(rest).map_err(|bad| Failure::Registry(bad.into(), None))?;
        match request {
            oci::Request::Base => {
                let mut headers = self.origin.headers(&self.route.policy, Freshness::Route);
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                let epoch = std::time::SystemTime::UNIX_EPOCH;
                Ok(document(
                    req,
                    head_only,
                    Bytes::from_static(b"{}"),
                    "\"v2\"",
                    epoch,
                    headers,
                ))
            }
            oci::Request::Manifest { name, reference } => {
                let (digest, freshness) = match reference {
                    Reference::Tag(tag) => {
                        let link = self.layout.tag_link(&name, &tag);
                        match self.link(&link).await? {
                            Some(digest) => (digest, Freshness::Route),
                            None => {
                                return Err(self
                                    .unknown(&name, ErrorCode::ManifestUnknown, &tag)
                                    .await)
                            }
                        }
                    }
                    Reference::Digest(digest) => {
                        let link = self.layout.manifest_link(&name, &digest);
                        if !self.origin.exists(self.store, &link).await? {
                            let code = ErrorCode::ManifestUnknown;
                            return Err(self.unknown(&name, code, &digest.to_string()).await);
                        }
                        (digest, Freshness::Immutable)
                    }
                };
                self.manifest(req, head_only, &digest, freshness).await
            }
            oci::Request::Blob { name, digest } => {
                let link = self.layout.layer_link(&name, &digest);
                if !self.origin.exists(self.store, &link).await? {
                    return Err(self
                        .unknown(&name, ErrorCode::BlobUnknown, &digest.to_string())
                        .await);
                }
                let mut headers = self.digest_headers(&digest, Freshness::Immutable);
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                let key = self.layout.blob_data(&digest);
                match self
                    .origin
                    .serve(req, head_only, self.store, &key, headers)
                    .await
                {
                    Err(HttpError::NotFound) => Err(Failure::Registry(
                        ErrorCode::BlobUnknown,
                        Some(format!("{digest} is linked but not stored")),
                    )),
                    other => Ok(other?),
                }
            }
            oci::Request::Tags { name } => self.tags(req, head_only, &name).await,
        }
    }

    /// The digest a link file names; `None` when there is no such link.
    async fn link(&self, key: &str) -> Result<Option<Digest>, Failure> {
        match self.origin.read_small(self.store, key, LINK_LIMIT).await {
            Ok((bytes, _)) => match oci::read_link(&bytes) {
                Some(digest) => Ok(Some(digest)),
                None => Err(Failure::Http(HttpError::upstream(format!(
                    "{key} holds no digest"
                )))),
            },
            Err(HttpError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `code` for something missing in a repository that exists, `NAME_UNKNOWN` when the
    /// repository itself does not.
    async fn unknown(&self, name: &str, code: ErrorCode, what: &str) -> Failure {
        match self.repository_exists(name).await {
            Ok(true) => Failure::Registry(code, Some(format!("{name}: {what}"))),
            Ok(false) => Failure::Registry(ErrorCode::NameUnknown, Some(name.to_owned())),
            Err(e) => e.into(),
        }
    }

    async fn repository_exists(&self, name: &str) -> Result<bool, HttpError> {
        let prefix =
            object_store::path::Path::from(self.layout.repository(name).trim_end_matches('/'));
        let mut listing = self.store.list(Some(&prefix));
        match tokio::time::timeout(self.origin.timeout(), listing.next()).await {
            Ok(Some(Ok(_))) => Ok(true),
            Ok(None) => Ok(false),
            Ok(Some(Err(e))) => match backend_error(e) {
                HttpError::NotFound => Ok(false),
                e => Err(e),
            },
            Err(_) => Err(HttpError::UpstreamTimeout),
        }
    }

    /// A manifest's bytes as stored, with the media type its body states.
    async fn manifest<B>(
        &self,
        req: &Request<B>,
        head_only: bool,
        digest: &Digest,
        freshness: Freshness,
    ) -> Result<Response<Body>, Failure> {
        let key = self.layout.blob_data(digest);
        let (bytes, meta) = match self
            .origin
            .read_small(self.store, &key, MANIFEST_LIMIT)
            .await
        {
            Err(HttpError::NotFound) => {
                let detail = format!("{digest} is linked but not stored");
                return Err(Failure::Registry(ErrorCode::ManifestUnknown, Some(detail)));
            }
            other => other?,
        };
        // A body that is no manifest keeps a manifest type: the shield's digest check is what
        // refuses it.
        let media_type = oci::media_type(&bytes).unwrap_or_else(|| oci::OCI_MANIFEST.to_owned());
        let mut headers = self.digest_headers(digest, freshness);
        if let Ok(value) = HeaderValue::from_str(&media_type) {
            headers.insert(CONTENT_TYPE, value);
        }
        let etag = format!("\"{digest}\"");
        Ok(document(
            req,
            head_only,
            bytes,
            &etag,
            meta.last_modified.into(),
            headers,
        ))
    }

    /// The repository's tags: one folder per tag under `_manifests/tags/`.
    async fn tags<B>(
        &self,
        req: &Request<B>,
        head_only: bool,
        name: &str,
    ) -> Result<Response<Body>, Failure> {
        let prefix = object_store::path::Path::from(self.layout.tags(name).trim_end_matches('/'));
        let listed = tokio::time::timeout(
            self.origin.timeout(),
            self.store.list_with_delimiter(Some(&prefix)),
        )
        .await
        .map_err(|_| HttpError::UpstreamTimeout)?
        .map_err(backend_error);
        let mut tags: Vec<String> = match listed {
            Ok(listed) => listed
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_owned))
                .collect(),
            Err(HttpError::NotFound) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        if tags.is_empty() {
            return Err(self.unknown(name, ErrorCode::NameUnknown, "no tags").await);
        }
        tags.sort();
        let body = serde_json::json!({ "name": name, "tags": tags }).to_string();
        let body = Bytes::from(body);
        let etag = content_etag(&body);
        let mut headers = self.origin.headers(&self.route.policy, Freshness::Route);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let now = std::time::SystemTime::now();
        Ok(document(req, head_only, body, &etag, now, headers))
    }

    /// `Cache-Control`, `Docker-Content-Digest` and `Repr-Digest` of what `digest` names.
    fn digest_headers(&self, digest: &Digest, freshness: Freshness) -> HeaderMap {
        let mut headers = self.origin.headers(&self.route.policy, freshness);
        let text = HeaderValue::from_str(&digest.to_string()).expect("a digest is ascii");
        headers.insert(oci::CONTENT_DIGEST_HEADER, text);
        let repr =
            HeaderValue::from_str(&digest.expected().repr_digest()).expect("base64 is ascii");
        headers.insert(REPR_DIGEST, repr);
        headers
    }
}
