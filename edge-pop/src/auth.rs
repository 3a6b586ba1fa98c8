//! Who may have what: routes marked `auth: true` need credentials. Verifying them is not built
//! yet, so such routes are closed: every request for them is answered 401 with a `Bearer`
//! challenge, before the cache is looked at.

use cdn_config::RoutePolicy;
use cdn_proxy::{Gate, HttpError, RequestHeader};

#[derive(Debug, Clone, Copy, Default)]
pub struct EdgeGate;

impl Gate for EdgeGate {
    fn admit(&self, _req: &RequestHeader, policy: &RoutePolicy) -> Result<(), HttpError> {
        if policy.auth_required {
            return Err(HttpError::Unauthorized);
        }
        Ok(())
    }
}
