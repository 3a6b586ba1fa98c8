//! Content digests: OCI's `sha256:<hex>`, npm's `dist.integrity` (`sha512-<base64>`), and
//! `Repr-Digest` (RFC 9530), the header through which a tier tells the next what a body must
//! hash to. [`Check`] hashes a body as it streams by.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest as _, Sha256, Sha512};
use std::fmt;

/// `Repr-Digest`: the digest of the representation a response carries (RFC 9530).
pub const REPR_DIGEST: &str = "repr-digest";

/// An OCI content digest. Only `sha256` is accepted: it is what registry:2 stores under.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    hex: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a sha256 digest (sha256: and 64 lower-case hex digits)")]
pub struct BadDigest;

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, BadDigest> {
        let hex = text.strip_prefix("sha256:").ok_or(BadDigest)?;
        let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(BadDigest);
        }
        Ok(Digest {
            hex: hex.to_owned(),
        })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            hex: hex(&Sha256::digest(bytes)),
        }
    }

    /// The 64 hex digits, without `sha256:`.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// What a body named by this digest must hash to.
    pub fn expected(&self) -> Expected {
        let mut bytes = [0u8; 32];
        for (i, pair) in self.hex.as_bytes().chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).expect("hex is ascii");
            bytes[i] = u8::from_str_radix(text, 16).expect("checked hex");
        }
        Expected::Sha256(bytes)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What a body must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Sha256([u8; 32]),
    Sha512([u8; 64]),
}

impl Expected {
    /// From npm's `dist.integrity` (Subresource Integrity: `sha512-<base64>`, possibly several
    /// separated by spaces): the strongest of sha512 and sha256; `None` if neither is there
    /// (sha1 alone is not trusted).
    pub fn from_integrity(sri: &str) -> Option<Expected> {
        strongest(sri.split_ascii_whitespace().filter_map(|item| {
            let (algo, rest) = item.split_once('-')?;
            // Options after `?` (SRI) are ignored.
            let b64 = rest.split('?').next().unwrap_or_default();
            let algo = match algo {
                "sha512" => Algorithm::Sha512,
                "sha256" => Algorithm::Sha256,
                _ => return None,
            };
            Some((algo, b64))
        }))
    }

    /// From a `Repr-Digest` field value (`sha-256=:<base64>:`, `sha-512=:<base64>:`, as a
    /// list): the strongest it names that this understands.
    pub fn from_repr_digest(value: &str) -> Option<Expected> {
        strongest(value.split(',').filter_map(|member| {
            let (algo, rest) = member.trim().split_once('=')?;
            let b64 = rest.strip_prefix(':')?.strip_suffix(':')?;
            let algo = match algo.trim() {
                "sha-512" => Algorithm::Sha512,
                "sha-256" => Algorithm::Sha256,
                _ => return None,
            };
            Some((algo, b64))
        }))
    }

    /// As a `Repr-Digest` field value.
    pub fn repr_digest(&self) -> String {
        match self {
            Expected::Sha256(b) => format!("sha-256=:{}:", STANDARD.encode(b)),
            Expected::Sha512(b) => format!("sha-512=:{}:", STANDARD.encode(b)),
        }
    }

    /// As npm's `dist.integrity` writes it.
    pub fn integrity(&self) -> String {
        match self {
            Expected::Sha256(b) => format!("sha256-{}", STANDARD.encode(b)),
            Expected::Sha512(b) => format!("sha512-{}", STANDARD.encode(b)),
        }
    }

    /// Starts checking a body against this.
    pub fn check(&self) -> Check {
        let state = match self {
            Expected::Sha256(_) => State::Sha256(Sha256::new()),
            Expected::Sha512(_) => State::Sha512(Sha512::new()),
        };
        Check {
            expected: self.clone(),
            state,
        }
    }

    /// Whether `bytes` hash to this.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        let mut check = self.check();
        check.update(bytes);
        check.finish()
    }
}

/// A body being hashed as it passes, to compare with what was expected at its end.
pub struct Check {
    expected: Expected,
    state: State,
}

enum State {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl Check {
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.state {
            State::Sha256(h) => h.update(bytes),
            State::Sha512(h) => h.update(bytes),
        }
    }

    /// Whether everything passed to `update` hashes to what was expected.
    pub fn finish(self) -> bool {
        match (self.state, &self.expected) {
            (State::Sha256(h), Expected::Sha256(want)) => h.finalize().as_slice() == want,
            (State::Sha512(h), Expected::Sha512(want)) => h.finalize().as_slice() == want,
            _ => false,
        }
    }
}

/// The sha512 of `bytes` as npm writes `dist.integrity`, and the sha1 hex of `dist.shasum`.
pub fn npm_integrity(bytes: &[u8]) -> String {
    Expected::Sha512(Sha512::digest(bytes).into()).integrity()
}

/// The hashes both notations name, whatever each calls them.
#[derive(Clone, Copy)]
enum Algorithm {
    Sha256,
    Sha512,
}

/// The strongest well-formed hash among `(algorithm, base64)` members: the first sha512 of the
/// right length, else the last such sha256.
fn strongest<'a>(members: impl Iterator<Item = (Algorithm, &'a str)>) -> Option<Expected> {
    let mut best = None;
    for (algo, b64) in members {
        let Ok(bytes) = STANDARD.decode(b64) else {
            continue;
        };
        match algo {
            Algorithm::Sha512 => {
                if let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) {
                    return Some(Expected::Sha512(bytes));
                }
            }
            Algorithm::Sha256 => {
                if let Ok(bytes) = <[u8; 32]>::try_from(bytes.as_slice()) {
                    best = Some(Expected::Sha256(bytes));
                }
            }
        }
    }
    best
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_strictly() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(&d.to_string()), Ok(d.clone()));
        for bad in [
            "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
            "sha512:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "sha256:2cf24d",
            "sha256:../../etc/passwd",
            "",
        ] {
            assert_eq!(Digest::parse(bad), Err(BadDigest), "{bad}");
        }
        assert!(d.expected().matches(b"hello"));
        assert!(!d.expected().matches(b"hellO"));
    }

    #[test]
    fn integrity_and_repr_digest_round_trip() {
        let sri = npm_integrity(b"tarball");
        assert!(sri.starts_with("sha512-"));
        let e = Expected::from_integrity(&format!("sha1-AAAA {sri}")).unwrap();
        assert!(e.matches(b"tarball"));
        assert_eq!(
            Expected::from_repr_digest(&e.repr_digest()),
            Some(e.clone())
        );
        assert_eq!(e.integrity(), sri);
        assert_eq!(Expected::from_integrity("sha1-AAAA"), None);
        assert_eq!(Expected::from_repr_digest("sha-256=:short:"), None);
        let mut check = e.check();
        check.update(b"tar");
        check.update(b"ball");
        assert!(check.finish());
    }
}
