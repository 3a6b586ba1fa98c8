//! Who may have what, decided at the edge on every request with no round trip: the credential a
//! request carries (`credential`), signed tokens verified by key id (`token`), API keys checked
//! against the entitlement document (`keys`), and what a request names (read by the edge with the
//! package formats' parsers) against what a credential's scopes allow (`scope`). `Authority::check` puts them together into one answer.
//!
//! This crate knows nothing of Pingora, HTTP responses, the cache or the network: the edge
//! fetches the entitlement document and hands it in (`KeySource::set`), and turns a `Refusal`
//! into its status and challenge. No secret is ever formatted: `Credential`'s `Debug` hides it,
//! and refusals say what was wrong, never with what.

pub mod credential;
pub mod keys;
pub mod scope;
pub mod token;

pub use keys::{Entitlement, KeyTable};
pub use scope::Resource;
pub use token::{Claims, Verifier};

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// A request that may have what it asked for.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who: a token's `sub`, an API key's `subject`.
    pub subject: String,
    /// What per-credential limits count by: one token subject, or one API key (its hash).
    pub limit_key: String,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("subject", &self.subject)
            .finish()
    }
}

/// Why a request may not have what it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No credential: 401 with a challenge.
    #[error("no credential")]
    Missing,
    /// An `Authorization` header or token that cannot be read: 401.
    #[error("malformed credential")]
    Malformed,
    /// A credential that is not (or no longer) valid: 401.
    #[error("invalid credential: {0}")]
    Invalid(Invalid),
    /// Valid, but its scopes do not cover what was asked: 403.
    #[error("credential does not cover this path")]
    OutOfScope,
    /// An API key, before the entitlement document was ever read: 503, try again.
    #[error("entitlements not loaded yet")]
    NotLoaded,
    /// An API key, while the last document read is older than the most it is trusted for
    /// (no newer one could be read): 503. A key revoked since may not be honoured.
    #[error("entitlements too old to trust")]
    Stale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    UnknownKeyId,
    BadSignature,
    Expired,
    /// An API key the entitlement document does not list (never listed, or revoked).
    UnknownKey,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Invalid::UnknownKeyId => "unknown key id",
            Invalid::BadSignature => "bad signature",
            Invalid::Expired => "expired",
            Invalid::UnknownKey => "unknown or revoked API key",
        })
    }
}

/// The entitlement document in force, replaced whole when a new one is read, and trusted for
/// at most `max_age` after it was read: a document that cannot be read again (its source down,
/// a broken new one) fails closed rather than keep a revoked key working for good.
#[derive(Debug)]
pub struct KeySource {
    read: RwLock<Option<(Arc<KeyTable>, Instant)>>,
    max_age: Duration,
}

impl KeySource {
    pub fn new(max_age: Duration) -> KeySource {
        KeySource {
            read: RwLock::new(None),
            max_age,
        }
    }

    /// Puts `table` in force, read now.
    pub fn set(&self, table: KeyTable) {
        *self.read.write().unwrap_or_else(|e| e.into_inner()) =
            Some((Arc::new(table), Instant::now()));
    }

    /// The document in force, unless none was read or it is too old to trust.
    pub fn get(&self) -> Result<Arc<KeyTable>, Refusal> {
        match &*self.read.read().unwrap_or_else(|e| e.into_inner()) {
            None => Err(Refusal::NotLoaded),
            Some((_, read)) if read.elapsed() >= self.max_age => Err(Refusal::Stale),
            Some((table, _)) => Ok(table.clone()),
        }
    }

    /// Why API keys cannot be checked now, if they cannot.
    pub fn unusable(&self) -> Option<Refusal> {
        self.get().err()
    }
}

/// Everything the edge checks credentials against.
#[derive(Debug)]
pub struct Authority {
    tokens: Verifier,
    /// API keys, when configured.
    keys: Option<Arc<KeySource>>,
    /// Tokens whose signature already verified, by the token itself, so a client presenting
    /// the same token again costs a lookup rather than a signature check. Each still expires
    /// at its own `exp`; the configured keys do not change while the process runs.
    verified: moka::sync::Cache<String, Arc<VerifiedToken>>,
}

/// What a verified token grants, worked out once when its signature is checked.
#[derive(Debug)]
struct VerifiedToken {
    grant: Grant,
    scopes: Vec<String>,
    exp: u64,
}

/// Bytes of tokens remembered as verified (token lengths, plus a little per entry).
const VERIFIED_BYTES: u64 = 16 << 20;
/// How long a verified token is remembered, at most.
const VERIFIED_FOR: std::time::Duration = std::time::Duration::from_secs(300);

impl Default for Authority {
    fn default() -> Self {
        Authority::new(Verifier::default(), None)
    }
}

impl Authority {
    pub fn new(tokens: Verifier, keys: Option<Arc<KeySource>>) -> Authority {
        let verified = moka::sync::Cache::builder()
            .max_capacity(VERIFIED_BYTES)
            .weigher(|token: &String, _: &Arc<VerifiedToken>| {
                u32::try_from(token.len())
                    .unwrap_or(u32::MAX)
                    .saturating_add(64)
            })
            .time_to_live(VERIFIED_FOR)
            .build();
        Authority {
            tokens,
            keys,
            verified,
        }
    }

    /// What a token grants: remembered if it verified before and has not expired since, else
    /// verified now (and remembered if it is good).
    fn token(&self, token: &str, now: SystemTime) -> Result<Arc<VerifiedToken>, Refusal> {
        let now_secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some(verified) = self.verified.get(token) {
            if verified.exp.saturating_add(token::LEEWAY_SECS) >= now_secs {
                return Ok(verified);
            }
            self.verified.invalidate(token);
            return Err(Refusal::Invalid(Invalid::Expired));
        }
        let claims = self.tokens.verify(token).map_err(|e| match e {
            token::Rejected::Malformed => Refusal::Malformed,
            token::Rejected::UnknownKeyId => Refusal::Invalid(Invalid::UnknownKeyId),
            token::Rejected::BadSignature => Refusal::Invalid(Invalid::BadSignature),
            token::Rejected::Expired => Refusal::Invalid(Invalid::Expired),
        })?;
        let verified = Arc::new(VerifiedToken {
            scopes: claims.scopes(),
            exp: claims.exp,
            grant: Grant {
                limit_key: format!("t:{}", claims.sub),
                subject: claims.sub,
            },
        });
        self.verified.insert(token.to_owned(), verified.clone());
        Ok(verified)
    }

    /// Whether a request with this `Authorization` value (raw bytes, if any) may have
    /// `resource` (`None`: the path names nothing a scope could allow).
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        resource: Option<&Resource>,
        now: SystemTime,
    ) -> Result<Grant, Refusal> {
        let value = authorization.ok_or(Refusal::Missing)?;
        let credential = credential::parse(value).map_err(|_| Refusal::Malformed)?;
        let in_scope = |scopes: &[String]| resource.is_some_and(|r| r.allowed_by(scopes));
        if token::looks_like(&credential.0) {
            let verified = self.token(&credential.0, now)?;
            if !in_scope(&verified.scopes) {
                return Err(Refusal::OutOfScope);
            }
            return Ok(verified.grant.clone());
        }
        let source = self
            .keys
            .as_ref()
            .ok_or(Refusal::Invalid(Invalid::UnknownKey))?;
        let table = source.get()?;
        let entitlement = table
            .lookup(&credential.0)
            .ok_or(Refusal::Invalid(Invalid::UnknownKey))?;
        if entitlement.expires.is_some_and(|at| at <= now) {
            return Err(Refusal::Invalid(Invalid::Expired));
        }
        if !in_scope(&entitlement.scopes) {
            return Err(Refusal::OutOfScope);
        }
        Ok(Grant {
            subject: entitlement.subject.clone(),
            limit_key: entitlement.limit_key.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use proptest::prelude::*;

    proptest! {
        /// Whatever bytes an `Authorization` header holds, the answer is a refusal (a 4xx at
        /// the edge), never a grant and never a panic.
        #[test]
        fn arbitrary_authorization_is_refused(value in proptest::collection::vec(any::<u8>(), 0..400)) {
            let (_, public) = token::generate_key_pair().unwrap();
            let source = Arc::new(KeySource::new(Duration::from_secs(3600)));
            source.set(KeyTable::default());
            let authority = Authority::new(Verifier::new([("k", public.as_bytes())]).unwrap(), Some(source));
            let r = authority.check(Some(&value), Some(&Resource::Path("/p".into())), SystemTime::now());
            prop_assert!(matches!(r, Err(Refusal::Missing | Refusal::Malformed | Refusal::Invalid(_))), "{r:?}");
        }
    }
    use std::time::UNIX_EPOCH;

    fn now() -> SystemTime {
        SystemTime::now()
    }

    #[test]
    fn tokens_and_keys_end_in_one_answer() {
        let (private, public) = token::generate_key_pair().unwrap();
        let source = Arc::new(KeySource::new(Duration::from_secs(3600)));
        let authority = Authority::new(
            Verifier::new([("k1", public.as_bytes())]).unwrap(),
            Some(source.clone()),
        );
        let exp = now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 60;
        let tok = token::mint(
            "k1",
            private.as_bytes(),
            &Claims {
                sub: "alice".into(),
                exp,
                scope: "path:/private/*".into(),
                iat: None,
            },
        )
        .unwrap();
        let bearer = format!("Bearer {tok}");
        let inside = Resource::Path("/private/a".into());
        let outside = Resource::Path("/other/a".into());
        let check = |auth: Option<&str>, r: &Resource| {
            authority.check(auth.map(str::as_bytes), Some(r), now())
        };
        assert_eq!(check(Some(&bearer), &inside).unwrap().subject, "alice");
        assert_eq!(check(Some(&bearer), &outside), Err(Refusal::OutOfScope));
        assert_eq!(
            authority.check(Some(bearer.as_bytes()), None, now()),
            Err(Refusal::OutOfScope)
        );
        assert_eq!(check(None, &inside), Err(Refusal::Missing));
        assert_eq!(check(Some("Bearer"), &inside), Err(Refusal::Malformed));

        let key = keys::new_key();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("bob:{key}"))
        );
        assert_eq!(check(Some(&basic), &inside), Err(Refusal::NotLoaded));
        let doc = |expires: &str| {
            format!(
                r#"{{"keys": [{{"sha256": "{}", "subject": "bob", "scopes": ["path:/private/*"]{expires}}}]}}"#,
                keys::hash_key(&key)
            )
        };
        source.set(KeyTable::parse(doc("").as_bytes()).unwrap());
        let grant = check(Some(&basic), &inside).unwrap();
        assert_eq!(grant.subject, "bob");
        assert!(!grant.limit_key.contains(&key));
        assert_eq!(check(Some(&basic), &outside), Err(Refusal::OutOfScope));
        source.set(
            KeyTable::parse(doc(r#", "expires": "2000-01-01T00:00:00Z""#).as_bytes()).unwrap(),
        );
        assert_eq!(
            check(Some(&basic), &inside),
            Err(Refusal::Invalid(Invalid::Expired))
        );
        source.set(KeyTable::default());
        assert_eq!(
            check(Some(&basic), &inside),
            Err(Refusal::Invalid(Invalid::UnknownKey)),
            "revoked"
        );
        // The token verified above is remembered, and still expires at its own `exp`.
        let later = now() + Duration::from_secs(3600);
        assert_eq!(
            authority.check(Some(bearer.as_bytes()), Some(&inside), later),
            Err(Refusal::Invalid(Invalid::Expired))
        );
        assert_eq!(
            authority.check(Some(bearer.as_bytes()), Some(&outside), now()),
            Err(Refusal::OutOfScope),
            "scopes are checked on every request, remembered or not"
        );
    }

    /// Regression: the last document read stayed in force for good while no newer one could
    /// be read, so a revoked key kept working as long as the shields were down.
    #[test]
    fn a_document_too_old_to_trust_refuses_every_key() {
        let key = keys::new_key();
        let doc = format!(
            r#"{{"keys": [{{"sha256": "{}", "subject": "bob", "scopes": ["*"]}}]}}"#,
            keys::hash_key(&key)
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("bob:{key}"))
        );
        let check = |source: &Arc<KeySource>| {
            let authority = Authority::new(Verifier::default(), Some(source.clone()));
            authority.check(Some(basic.as_bytes()), Some(&Resource::Any), now())
        };
        let fresh = Arc::new(KeySource::new(Duration::from_secs(3600)));
        assert_eq!(fresh.unusable(), Some(Refusal::NotLoaded));
        fresh.set(KeyTable::parse(doc.as_bytes()).unwrap());
        assert_eq!(check(&fresh).unwrap().subject, "bob");
        assert_eq!(fresh.unusable(), None);
        let old = Arc::new(KeySource::new(Duration::ZERO));
        old.set(KeyTable::parse(doc.as_bytes()).unwrap());
        assert_eq!(check(&old), Err(Refusal::Stale));
        assert_eq!(old.unusable(), Some(Refusal::Stale));
    }
}
