//! The credential a request carries, as package clients send it: `Authorization: Bearer T`
//! (npm's `_authToken`, `skopeo --registry-token`) or `Authorization: Basic base64(user:T)`
//! (docker and skopeo `--creds`, where the password is the credential and the user name is not
//! looked at). Nothing else is read; a header that is neither is malformed.

use base64::Engine;

/// The secret a request presents: a signed token or an API key, told apart by `token::looks_like`.
#[derive(PartialEq, Eq)]
pub struct Credential(pub String);

impl std::fmt::Debug for Credential {
    /// Never shows the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}

/// Why an `Authorization` header was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("authorization scheme is neither Bearer nor Basic")]
    Scheme,
    #[error("authorization value is not valid")]
    Value,
}

/// Longest `Authorization` value read; a longer one is malformed without being decoded.
const MAX_LEN: usize = 8 * 1024;

/// Reads an `Authorization` header's value (its raw bytes, as they came).
pub fn parse(value: &[u8]) -> Result<Credential, Malformed> {
    if value.len() > MAX_LEN {
        return Err(Malformed::Value);
    }
    let text = std::str::from_utf8(value).map_err(|_| Malformed::Value)?;
    let text = text.trim_matches([' ', '\t']);
    let (scheme, rest) = text.split_once([' ', '\t']).ok_or(Malformed::Scheme)?;
    let rest = rest.trim_start_matches([' ', '\t']);
    if scheme.eq_ignore_ascii_case("bearer") {
        return token68(rest).map(|t| Credential(t.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token68(rest)?)
            .map_err(|_| Malformed::Value)?;
        let decoded = String::from_utf8(decoded).map_err(|_| Malformed::Value)?;
        let (_user, password) = decoded.split_once(':').ok_or(Malformed::Value)?;
        if password.is_empty() || password.chars().any(char::is_control) {
            return Err(Malformed::Value);
        }
        return Ok(Credential(password.to_owned()));
    }
    Err(Malformed::Scheme)
}

/// A `token68` (RFC 9110 §11.2): the only form either scheme takes here.
fn token68(s: &str) -> Result<&str, Malformed> {
    let body = s.trim_end_matches('=');
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if ok {
        Ok(s)
    } else {
        Err(Malformed::Value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn basic(user_pass: &str) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(user_pass);
        format!("Basic {b64}").into_bytes()
    }

    #[test]
    fn bearer_and_basic_as_clients_send_them() {
        assert_eq!(
            parse(b"Bearer abc.def-ghi"),
            Ok(Credential("abc.def-ghi".into()))
        );
        assert_eq!(parse(b"bearer  tok=="), Ok(Credential("tok==".into())));
        assert_eq!(
            parse(&basic("ci:cdnk_secret")),
            Ok(Credential("cdnk_secret".into()))
        );
        // The password may hold a colon; the user name may be empty.
        assert_eq!(parse(&basic(":a:b")), Ok(Credential("a:b".into())));
    }

    #[test]
    fn anything_else_is_malformed() {
        assert_eq!(parse(b"Bearer"), Err(Malformed::Scheme));
        assert_eq!(parse(b"Digest x=1"), Err(Malformed::Scheme));
        assert_eq!(parse(b"Bearer a b"), Err(Malformed::Value));
        assert_eq!(parse(b"Bearer \xff"), Err(Malformed::Value));
        assert_eq!(parse(b"Basic !!!"), Err(Malformed::Value));
        assert_eq!(parse(&basic("no-colon")), Err(Malformed::Value));
        assert_eq!(parse(&basic("user:")), Err(Malformed::Value));
        assert_eq!(parse(&basic("user:a\nb")), Err(Malformed::Value));
        assert_eq!(parse(&vec![b'a'; MAX_LEN + 1]), Err(Malformed::Value));
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let c = parse(b"Bearer hunter2").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&value);
        }

        #[test]
        fn arbitrary_schemes_never_panic(scheme in "(Bearer|Basic|bearer|BASIC) ?", rest in ".{0,200}") {
            let _ = parse(format!("{scheme}{rest}").as_bytes());
        }
    }
}
