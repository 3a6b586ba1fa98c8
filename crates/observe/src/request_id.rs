//! Request ids: made at the edge (or kept from a trusted client header), sent upstream in
//! `X-Request-Id`, returned to the client, and written in every tier's access log.

/// The header that carries the id between tiers and back to the client.
pub const HEADER: &str = "x-request-id";

/// The id to use: the incoming one when it is trusted and well-formed, else a new one.
pub fn pick(incoming: Option<&[u8]>, trusted: bool) -> String {
    match incoming.filter(|_| trusted).and_then(well_formed) {
        Some(id) => id.to_owned(),
        None => generate(),
    }
}

/// 128 random bits in hex.
pub fn generate() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// An id short and plain enough to log and forward as is.
fn well_formed(raw: &[u8]) -> Option<&str> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| std::str::from_utf8(raw).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(pick(Some(b"abc-123"), true), "abc-123");
        assert_ne!(
            pick(Some(b"abc-123"), false),
            "abc-123",
            "untrusted ids are replaced"
        );
        assert_eq!(
            pick(Some(b"bad id\n"), true).len(),
            32,
            "malformed ids are replaced"
        );
        assert_eq!(pick(Some(&[b'a'; 65]), true).len(), 32);
        assert_eq!(pick(None, true).len(), 32);
        assert_ne!(generate(), generate());
    }
}
