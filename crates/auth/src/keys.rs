//! API keys, checked against the entitlement document: a JSON file kept in the origin bucket
//! that maps the SHA-256 of each key to who holds it, what it may fetch and until when. Keys are
//! random and long, so a plain SHA-256 is enough to keep them out of the document: the document
//! never holds a key, only its hash. A key is looked up by its hash, so no comparison ever
//! touches a secret.
//!
//! ```json
//! { "keys": [ { "sha256": "<64 hex digits>", "subject": "ci",
//!               "scopes": ["npm:@acme/*"], "expires": "2027-01-01T00:00:00Z" } ] }
//! ```
//! `expires` is optional (RFC 3339). Removing an entry revokes the key.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::SystemTime;

/// The prefix of keys `new_key` makes, so a leaked one can be recognised by scanners.
pub const KEY_PREFIX: &str = "cdnk_";

/// What one key is entitled to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    pub subject: String,
    pub scopes: Vec<String>,
    pub expires: Option<SystemTime>,
    /// What per-key limits count by: a name for the key that is not the key (`k:` and the
    /// first half of its hash, in hex).
    pub limit_key: String,
}

/// The entitlement document, indexed by key hash.
#[derive(Debug, Clone, Default)]
pub struct KeyTable {
    by_hash: HashMap<[u8; 32], Entitlement>,
}

/// Why a document could not be read; the previous one stays in force.
#[derive(Debug, thiserror::Error)]
#[error("entitlement document: {0}")]
pub struct DocumentError(String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    keys: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    sha256: String,
    subject: String,
    #[serde(default)]
    scopes: Vec<String>,
    expires: Option<String>,
}

impl KeyTable {
    /// Reads a document (JSON, as above).
    pub fn parse(json: &[u8]) -> Result<KeyTable, DocumentError> {
        let doc: Document =
            serde_json::from_slice(json).map_err(|e| DocumentError(e.to_string()))?;
        let mut by_hash = HashMap::with_capacity(doc.keys.len());
        for (i, entry) in doc.keys.into_iter().enumerate() {
            let hash = parse_hex32(&entry.sha256)
                .ok_or_else(|| DocumentError(format!("keys[{i}].sha256: not 64 hex digits")))?;
            let expires = entry
                .expires
                .map(|t| {
                    humantime::parse_rfc3339_weak(&t)
                        .map_err(|e| DocumentError(format!("keys[{i}].expires: {e}")))
                })
                .transpose()?;
            by_hash.insert(
                hash,
                Entitlement {
                    subject: entry.subject,
                    scopes: entry.scopes,
                    expires,
                    limit_key: format!("k:{}", hex(&hash[..16])),
                },
            );
        }
        Ok(KeyTable { by_hash })
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The entitlement of `key`, if the document lists it.
    pub fn lookup(&self, key: &str) -> Option<&Entitlement> {
        self.by_hash.get(&digest(key))
    }
}

/// The hash under which a key is listed, as the document writes it (lower-case hex).
pub fn hash_key(key: &str) -> String {
    hex(&digest(key))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random API key (32 random bytes, base64url, after `KEY_PREFIX`).
pub fn new_key() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source");
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let hex = |c: u8| (c as char).to_digit(16);
        out[i] = u8::try_from(hex(pair[0])? * 16 + hex(pair[1])?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_their_hash_only() {
        let key = new_key();
        assert!(key.starts_with(KEY_PREFIX) && key.len() > 40);
        assert_ne!(new_key(), key);
        let doc = format!(
            r#"{{"keys": [{{"sha256": "{}", "subject": "ci", "scopes": ["npm:@acme/*"],
                "expires": "2099-01-01T00:00:00Z"}},
               {{"sha256": "{}", "subject": "old"}}]}}"#,
            hash_key(&key),
            hash_key("other").to_uppercase()
        );
        assert!(!doc.contains(&key));
        let table = KeyTable::parse(doc.as_bytes()).unwrap();
        assert_eq!(table.len(), 2);
        let e = table.lookup(&key).unwrap();
        assert_eq!(e.subject, "ci");
        assert_eq!(e.scopes, ["npm:@acme/*"]);
        assert!(e.expires.unwrap() > SystemTime::now());
        assert_eq!(table.lookup("other").unwrap().subject, "old");
        assert!(table.lookup("cdnk_unknown").is_none());
    }

    #[test]
    fn bad_documents_say_where() {
        let err = |doc: &str| KeyTable::parse(doc.as_bytes()).unwrap_err().to_string();
        assert!(err(r#"{"keys": [{"sha256": "abc", "subject": "x"}]}"#).contains("keys[0].sha256"));
        let bad_date = format!(
            r#"{{"keys": [{{"sha256": "{}", "subject": "x", "expires": "soon"}}]}}"#,
            hash_key("k")
        );
        assert!(err(&bad_date).contains("keys[0].expires"));
        assert!(err("not json").starts_with("entitlement document"));
        assert!(err(r#"{"keys": [], "extra": 1}"#).contains("extra"));
    }
}
