//! How a tier knows a request comes from the tier in front of it: that tier presents a secret
//! shared by the two in one header (`HEADER`), and this one compares it in constant time. The
//! edges present one secret to the shield; the shield presents another to origin-adapter. So a
//! client that reaches a shield or origin-adapter directly gets 403, and an edge cannot skip its
//! shield. The secret travels in the clear: the links between tiers are on a private network
//! (what the README says must stay private), and the header never leaves the tiers — each tier
//! drops what it got and sets its own.

use std::path::Path;
use subtle::ConstantTimeEq;

/// The header a tier presents its secret in.
pub const HEADER: &str = "cdn-tier-secret";

/// Where a tier answers the probes of the tier in front, on its traffic listener: 200 to a
/// caller presenting the secret (or to anyone, where none is required), with no access-log line.
/// It says the process is there and reading requests, nothing more.
pub const HEALTH_PATH: &str = "/.well-known/cdn-health";

/// Shortest secret accepted: 16 bytes, so that it cannot be guessed.
const MIN_LEN: usize = 16;

/// A tier secret. Never shown: `Debug` hides it, and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a secret file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("tier secret {path}: {why}")]
pub struct SecretError {
    pub path: String,
    pub why: String,
}

impl Secret {
    /// Reads a secret from a file holding it on one line (surrounding white space ignored).
    pub fn read(path: &Path) -> Result<Secret, SecretError> {
        let fail = |why: String| SecretError {
            path: path.display().to_string(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        Secret::new(text.trim()).map_err(fail)
    }

    pub fn new(secret: &str) -> Result<Secret, String> {
        if secret.len() < MIN_LEN {
            return Err(format!("must be at least {MIN_LEN} characters"));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces".into());
        }
        Ok(Secret(secret.to_owned()))
    }

    /// The value to send in `HEADER`.
    pub fn value(&self) -> &str {
        &self.0
    }

    /// Whether a request's `HEADER` value (if any) is this secret, in time that does not
    /// depend on how much of it matches.
    pub fn admits(&self, presented: Option<&[u8]>) -> bool {
        presented.is_some_and(|p| bool::from(p.ct_eq(self.0.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_secret_itself_is_admitted() {
        let s = Secret::new("0123456789abcdef-tier").unwrap();
        assert!(s.admits(Some(b"0123456789abcdef-tier")));
        assert!(!s.admits(Some(b"0123456789abcdef-tie")));
        assert!(!s.admits(Some(b"0123456789abcdef-tierX")));
        assert!(!s.admits(Some(b"")));
        assert!(!s.admits(None));
        assert!(!format!("{s:?}").contains("0123"));
        assert!(Secret::new("short").is_err());
        assert!(Secret::new("has a space in it, long enough").is_err());
    }

    #[test]
    fn read_from_a_file() {
        let dir = std::env::temp_dir().join(format!("tier-secret-{}", std::process::id()));
        std::fs::write(&dir, "  0123456789abcdef-file\n").unwrap();
        assert_eq!(Secret::read(&dir).unwrap().value(), "0123456789abcdef-file");
        std::fs::remove_file(&dir).unwrap();
        let err = Secret::read(&dir).unwrap_err().to_string();
        assert!(err.starts_with("tier secret "), "{err}");
    }
}
