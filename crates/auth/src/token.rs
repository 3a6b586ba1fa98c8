//! Signed tokens: JWTs signed with Ed25519 (`alg: EdDSA`), verified at the edge with no lookup.
//! The header's `kid` picks the public key, so during a rotation the old and the new key are
//! both configured and tokens of either verify. Claims: `sub` (who), `exp` (until when, required),
//! `scope` (what: space-separated scopes, see `scope`). Any other algorithm is refused, so a
//! token cannot choose how it is checked.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub(crate) const LEEWAY_SECS: u64 = 30;

/// A token's claims as the edge uses them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

impl Claims {
    pub fn scopes(&self) -> Vec<String> {
        self.scope.split_whitespace().map(str::to_owned).collect()
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("token is malformed")]
    Malformed,
    #[error("token names no configured key id")]
    UnknownKeyId,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
}

/// A key that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// Whether a credential is shaped as a signed token (three base64url parts), not an API key.
pub fn looks_like(credential: &str) -> bool {
    credential.split('.').count() == 3 && credential.starts_with("eyJ")
}

/// Public keys by key id.
#[derive(Clone)]
pub struct Verifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl Default for Verifier {
    /// A verifier with no keys: every token names an unknown key id.
    fn default() -> Self {
        Verifier::with_keys(HashMap::new())
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Verifier").field("key_ids", &ids).finish()
    }
}

impl Verifier {
    /// A verifier for `keys`: (key id, Ed25519 public key in PEM, SubjectPublicKeyInfo).
    pub fn new<'a>(
        keys: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Verifier, KeyError> {
        let mut map = HashMap::new();
        for (id, pem) in keys {
            let key = DecodingKey::from_ed_pem(pem).map_err(|e| {
                KeyError(format!(
                    "key {id:?} is not an Ed25519 public key in PEM: {e}"
                ))
            })?;
            map.insert(id.to_owned(), key);
        }
        Ok(Verifier::with_keys(map))
    }

    fn with_keys(keys: HashMap<String, DecodingKey>) -> Verifier {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        Verifier { keys, validation }
    }

    /// The token's claims if it is signed by a configured key and current.
    pub fn verify(&self, token: &str) -> Result<Claims, Rejected> {
        if self.keys.is_empty() {
            return Err(Rejected::UnknownKeyId);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejected::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(Rejected::Malformed);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(Rejected::UnknownKeyId)?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => Rejected::Expired,
                ErrorKind::InvalidSignature => Rejected::BadSignature,
                _ => Rejected::Malformed,
            })
    }
}

/// Signs `claims` with the Ed25519 private key `pem` (PKCS#8), naming `key_id`.
pub fn mint(key_id: &str, pem: &[u8], claims: &Claims) -> Result<String, KeyError> {
    let key = EncodingKey::from_ed_pem(pem)
        .map_err(|e| KeyError(format!("not an Ed25519 private key in PEM (PKCS#8): {e}")))?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key_id.to_owned());
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| KeyError(e.to_string()))
}

/// A new Ed25519 key pair: (private key, PKCS#8 PEM; public key, SubjectPublicKeyInfo PEM).
pub fn generate_key_pair() -> Result<(String, String), KeyError> {
    use ring::signature::KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| KeyError("cannot generate a key".into()))?;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| KeyError("cannot read the generated key".into()))?;
    // SubjectPublicKeyInfo for Ed25519 (RFC 8410): a fixed prefix, then the 32-byte key.
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(pair.public_key().as_ref());
    let private = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
    let public = pem::encode(&pem::Pem::new("PUBLIC KEY", spki));
    Ok((private, public))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "ci".into(),
            exp,
            scope: "npm:@acme/* path:/private/*".into(),
            iat: None,
        }
    }

    #[test]
    fn each_outcome() {
        let (old_private, old_public) = generate_key_pair().unwrap();
        let (new_private, new_public) = generate_key_pair().unwrap();
        let (stray_private, _) = generate_key_pair().unwrap();
        let both = Verifier::new([
            ("old", old_public.as_bytes()),
            ("new", new_public.as_bytes()),
        ])
        .unwrap();
        let good = mint("old", old_private.as_bytes(), &claims(now() + 60)).unwrap();
        assert!(looks_like(&good));
        let verified = both.verify(&good).unwrap();
        assert_eq!(verified.sub, "ci");
        assert_eq!(verified.scopes(), ["npm:@acme/*", "path:/private/*"]);
        let rotated = mint("new", new_private.as_bytes(), &claims(now() + 60)).unwrap();
        assert!(
            both.verify(&rotated).is_ok(),
            "both ids verify during the overlap"
        );

        let only_new = Verifier::new([("new", new_public.as_bytes())]).unwrap();
        assert_eq!(only_new.verify(&good), Err(Rejected::UnknownKeyId));
        let forged = mint("new", stray_private.as_bytes(), &claims(now() + 60)).unwrap();
        assert_eq!(both.verify(&forged), Err(Rejected::BadSignature));
        let expired = mint("old", old_private.as_bytes(), &claims(now() - 120)).unwrap();
        assert_eq!(both.verify(&expired), Err(Rejected::Expired));
        assert_eq!(both.verify("eyJ.a.b"), Err(Rejected::Malformed));
        assert_eq!(
            Verifier::default().verify(&good),
            Err(Rejected::UnknownKeyId)
        );

        // `alg: none` with the signature cut off, and HMAC keyed with the public key.
        let none = format!(
            "{}.{}.",
            base64_url(br#"{"alg":"none","kid":"old"}"#),
            good.split('.').nth(1).unwrap()
        );
        assert_eq!(both.verify(&none), Err(Rejected::Malformed));
        let hs = jsonwebtoken::encode(
            &Header {
                kid: Some("old".into()),
                ..Header::new(Algorithm::HS256)
            },
            &claims(now() + 60),
            &EncodingKey::from_secret(old_public.as_bytes()),
        )
        .unwrap();
        assert_eq!(both.verify(&hs), Err(Rejected::Malformed));
    }

    #[test]
    fn bad_key_files_are_refused() {
        assert!(Verifier::new([("k", b"not pem".as_slice())]).is_err());
        assert!(mint("k", b"not pem", &claims(1)).is_err());
    }

    fn base64_url(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    proptest! {
        #[test]
        fn arbitrary_tokens_never_panic(token in ".{0,400}") {
            let (_, public) = generate_key_pair().unwrap();
            let v = Verifier::new([("k", public.as_bytes())]).unwrap();
            prop_assert!(v.verify(&token).is_err());
        }

        #[test]
        fn arbitrary_token_shaped_input_never_panics(
            header in "[A-Za-z0-9_-]{0,60}", body in "[A-Za-z0-9_-]{0,120}", sig in "[A-Za-z0-9_-]{0,90}"
        ) {
            let (_, public) = generate_key_pair().unwrap();
            let v = Verifier::new([("k", public.as_bytes())]).unwrap();
            let token = format!("eyJ{header}.{body}.{sig}");
            prop_assert!(v.verify(&token).is_err());
        }
    }
}
