//! The npm registry, install side, read from Verdaccio's storage layout under the route's
//! source: packuments (full, or abbreviated when the client's `Accept` asks for
//! `application/vnd.npm.install-v1+json`), version documents, and tarballs.
//!
//! Packuments and version documents may change (a new version is published): they are kept
//! for the route's `ttl` and may be served stale while one request refreshes them. Tarballs
//! never change once published: kept forever, each with the `Repr-Digest` its packument's
//! `dist.integrity` states, which the shield checks before it stores the tarball.

use crate::serve::{content_etag, document, Body, Freshness, Origin};
use bytes::Bytes;
use cdn_config::Route;
use cdn_http::HttpError;
use cdn_registry::digest::REPR_DIGEST;
use cdn_registry::npm::{self, Layout};
use http::header::{ACCEPT, CONTENT_TYPE, VARY};
use http::{HeaderValue, Request, Response};
use object_store::ObjectStore;
use serde_json::Value;
use std::sync::Arc;

/// The largest packument read (the biggest on the public registry are tens of MiB).
const PACKUMENT_LIMIT: u64 = 64 * 1024 * 1024;

/// Fields Verdaccio keeps for itself, never sent to clients.
const PRIVATE_FIELDS: &[&str] = &["_attachments", "_uplinks", "_distfiles", "_rev"];

pub(crate) async fn answer<B>(
    origin: &Origin,
    req: &Request<B>,
    head_only: bool,
    route: &Route,
    store: &Arc<dyn ObjectStore>,
    rest: &str,
) -> Result<Response<Body>, HttpError> {
    let request = npm::Request::parse(rest).ok_or(HttpError::NotFound)?;
    let layout = Layout::new(&route.source.prefix);
    let policy = &route.policy;
    match request {
        npm::Request::Packument { name } => {
            let (packument, modified) =
                read_packument(origin, store, &layout, &name, route).await?;
            let accept = req.headers().get_all(ACCEPT).iter().map(|v| v.as_bytes());
            let (doc, content_type) = if npm::wants_abbreviated(accept) {
                (npm::abbreviate(&packument), npm::ABBREVIATED)
            } else {
                (packument, npm::FULL)
            };
            let mut headers = origin.headers(policy, Freshness::Route);
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(VARY, HeaderValue::from_static("Accept"));
            Ok(json_document(req, head_only, &doc, modified, headers))
        }
        npm::Request::Version { name, version } => {
            let (packument, modified) =
                read_packument(origin, store, &layout, &name, route).await?;
            let doc = npm::version(&packument, &version).ok_or(HttpError::NotFound)?;
            let mut headers = origin.headers(policy, Freshness::Route);
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(json_document(req, head_only, doc, modified, headers))
        }
        npm::Request::Tarball { name, file } => {
            let mut headers = origin.headers(policy, Freshness::Immutable);
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            // What the tarball must hash to, as its packument says; a packument that cannot be
            // read does not stop the tarball (the shield then stores it unchecked).
            match read_packument(origin, store, &layout, &name, route).await {
                Ok((packument, _)) => {
                    if let Some(expected) = npm::integrity_of(&packument, &file) {
                        let value = HeaderValue::from_str(&expected.repr_digest())
                            .expect("base64 is a valid header value");
                        headers.insert(REPR_DIGEST, value);
                    }
                }
                Err(e) => {
                    tracing::debug!(package = %name, error = %e, "no packument for a tarball")
                }
            }
            let key = layout.tarball(&name, &file);
            origin.serve(req, head_only, store, &key, headers).await
        }
    }
}

/// The stored packument, cleaned of Verdaccio's own fields, its tarball URLs pointed at this
/// route (path-absolute: the edge adds its scheme and host), and when it was stored.
async fn read_packument(
    origin: &Origin,
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    name: &str,
    route: &Route,
) -> Result<(Value, std::time::SystemTime), HttpError> {
    let key = layout.packument(name);
    let (bytes, meta) = origin.read_small(store, &key, PACKUMENT_LIMIT).await?;
    let mut packument: Value = serde_json::from_slice(&bytes)
        .map_err(|e| HttpError::upstream(format!("{key} is not JSON: {e}")))?;
    if let Some(fields) = packument.as_object_mut() {
        for field in PRIVATE_FIELDS {
            fields.remove(*field);
        }
    }
    npm::point_tarballs(&mut packument, &route.prefix);
    Ok((packument, meta.last_modified.into()))
}

/// A JSON document with an `ETag` of its own bytes.
fn json_document<B>(
    req: &Request<B>,
    head_only: bool,
    doc: &Value,
    modified: std::time::SystemTime,
    headers: http::HeaderMap,
) -> Response<Body> {
    let body = Bytes::from(serde_json::to_vec(doc).expect("a JSON value serializes"));
    let etag = content_etag(&body);
    document(req, head_only, body, &etag, modified, headers)
}
