//! The edge's gate: on every request, hit or miss, before the cache is looked at — the route's
//! per-address rate limit, then, on `auth: true` routes, the credential (`cdn_auth`) against
//! what the canonical path names, then the per-credential rate limit. Refusals become 401 with
//! the challenge package clients follow (`Basic` on registry routes, as docker and skopeo
//! expect; `Bearer` with an RFC 6750 `error` elsewhere), 403 out of scope, 429 over a limit.
//! The health probe's path and the internal prefix (the entitlement document's) are never
//! served to clients; a credential sent on a public route goes no further than the edge
//! unless the route says to forward it.
//!
//! Nothing here logs or counts a credential: refusals are logged by kind, grants by subject.

use crate::entitlements::Nudge;
use crate::limits::RouteLimits;
use cdn_auth::{Authority, Invalid, KeySource, Refusal};
use cdn_config::Naming;
use cdn_proxy::{Asking, Gate, HttpError, Pass};
use std::sync::Arc;
use std::time::SystemTime;

pub struct EdgeGate {
    authority: Authority,
    /// Per route, in the order of `Routes::iter`.
    limits: Vec<RouteLimits>,
    realm: String,
    nudge: Option<Nudge>,
    /// The entitlement document, when API keys are accepted (for `/readyz`).
    keys: Option<Arc<KeySource>>,
}

/// Paths the tiers keep for themselves, never served to a client: the health probe's (which
/// the shield answers to the edge, so proxied it would say the shield is up), and everything
/// under the internal prefix (the entitlement document, and whatever else is put there).
fn internal(path: &str) -> bool {
    path == cdn_http::trust::HEALTH_PATH || path.starts_with(cdn_config::INTERNAL_PREFIX)
}

impl EdgeGate {
    pub fn new(
        authority: Authority,
        limits: Vec<RouteLimits>,
        realm: String,
        nudge: Option<Nudge>,
        keys: Option<Arc<KeySource>>,
    ) -> EdgeGate {
        EdgeGate {
            authority,
            limits,
            realm,
            nudge,
            keys,
        }
    }

    fn refusal(&self, refusal: Refusal, naming: Naming) -> HttpError {
        let realm = &self.realm;
        let bearer = |error: Option<&str>| match error {
            Some(error) => format!("Bearer realm=\"{realm}\", error=\"{error}\""),
            None => format!("Bearer realm=\"{realm}\""),
        };
        let challenge = |error: Option<&str>| match naming {
            Naming::Oci => format!("Basic realm=\"{realm}\""),
            Naming::Path | Naming::Npm => bearer(error),
        };
        match refusal {
            Refusal::Missing => HttpError::Unauthorized {
                challenge: challenge(None),
            },
            Refusal::Malformed => HttpError::Unauthorized {
                challenge: challenge(Some("invalid_request")),
            },
            Refusal::Invalid(_) => HttpError::Unauthorized {
                challenge: challenge(Some("invalid_token")),
            },
            Refusal::OutOfScope => HttpError::Forbidden {
                challenge: (naming != Naming::Oci).then(|| bearer(Some("insufficient_scope"))),
            },
            Refusal::NotLoaded => HttpError::Unavailable { retry_after: 1 },
            Refusal::Stale => HttpError::Unavailable { retry_after: 5 },
        }
    }
}

impl Gate for EdgeGate {
    fn degraded(&self) -> Option<String> {
        match self.keys.as_ref()?.unusable()? {
            Refusal::Stale => Some(
                "the entitlement document could not be read again within auth.api_keys.max_stale: API keys are refused".into(),
            ),
            _ => Some("the entitlement document was never read: API keys are refused".into()),
        }
    }

    fn admit(&self, asking: &Asking<'_>) -> Result<Pass, HttpError> {
        let path = asking.target.path();
        let limits = &self.limits[asking.route_index];
        if let Some(client) = asking.client {
            limits.client(client)?;
        }
        if internal(path) {
            return Err(HttpError::NotFound);
        }
        let policy = &asking.route.policy;
        if !policy.auth_required {
            return Ok(if policy.forward_authorization {
                Pass::AsIs
            } else {
                Pass::Anonymous
            });
        }
        let resource = crate::names::resource(asking.route, path);
        let authorization = asking
            .req
            .headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        match self
            .authority
            .check(authorization, resource.as_ref(), SystemTime::now())
        {
            Ok(grant) => {
                limits.credential(&grant.limit_key)?;
                tracing::debug!(subject = %grant.subject, path, "granted");
                Ok(Pass::Authenticated)
            }
            Err(refusal) => {
                if refusal == Refusal::Invalid(Invalid::UnknownKey) {
                    if let Some(nudge) = &self.nudge {
                        nudge.unknown_key();
                    }
                }
                tracing::debug!(reason = %refusal, path, "refused");
                Err(self.refusal(refusal, policy.naming))
            }
        }
    }
}
