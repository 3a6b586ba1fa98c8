//! Slices: an object on a route with `slice` set is fetched and cached as pieces of that many
//! bytes, each its own cache entry, so a range fetches only the pieces it covers and each
//! piece is revalidated on its own.
//!
//! The tier a client asks assembles the answer from slices it asks of itself; each slice
//! request carries [`HEADER`] (`<index>/<size>`) and goes through the tier like any request:
//! looked up under the object's key plus the slice, collapsed, filled. Upstream it is a GET
//! with `Range` for exactly the slice's bytes and the same header, so the shield caches the
//! same slices and origin-adapter sends only those bytes. A slice's answer is stored as a 200
//! of the slice's bytes that names the whole object's length in [`TOTAL`].

/// On a request: which slice of the target is asked for, `<index>/<size>`.
pub const HEADER: &str = "cdn-slice";
/// On a slice's answer: the length of the whole object.
pub const TOTAL: &str = "cdn-slice-total";

/// Slice `index` of `size` bytes: bytes `index × size` up to the next slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub index: u64,
    pub size: u64,
}

impl Slice {
    /// Reads a [`HEADER`] value; `None` unless it is two decimal numbers, a size above zero,
    /// and a first byte that fits in 64 bits.
    pub fn parse(value: &[u8]) -> Option<Slice> {
        let text = std::str::from_utf8(value).ok()?;
        let (index, size) = text.split_once('/')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(index) || !digits(size) {
            return None;
        }
        let slice = Slice {
            index: index.parse().ok()?,
            size: size.parse().ok()?,
        };
        (slice.size > 0 && slice.index.checked_mul(slice.size).is_some()).then_some(slice)
    }

    /// The [`HEADER`] value.
    pub fn value(&self) -> String {
        format!("{}/{}", self.index, self.size)
    }

    /// The slice holding byte `at` of an object cut in slices of `size`.
    pub fn holding(at: u64, size: u64) -> Slice {
        Slice {
            index: at / size,
            size,
        }
    }

    pub fn first_byte(&self) -> u64 {
        self.index * self.size
    }

    /// The `Range` that asks the upstream for this slice's bytes.
    pub fn range(&self) -> String {
        let first = self.first_byte();
        format!("bytes={first}-{}", first.saturating_add(self.size - 1))
    }

    /// What sets this slice's cache key apart from the object's (`#` is never in a canonical
    /// target, which encodes it).
    pub fn key_suffix(&self) -> String {
        format!("#slice={}/{}", self.size, self.index)
    }
}

/// `Content-Range: bytes <first>-<last>/<total>` → (first, last, total).
pub fn content_range(value: &[u8]) -> Option<(u64, u64, u64)> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (span, total) = text.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let (first, last, total) = (first.parse().ok()?, last.parse().ok()?, total.parse().ok()?);
    (first <= last && last < total).then_some((first, last, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_read_back_and_name_their_bytes() {
        let s = Slice::parse(b"3/1048576").unwrap();
        assert_eq!(
            s,
            Slice {
                index: 3,
                size: 1 << 20
            }
        );
        assert_eq!(Slice::parse(s.value().as_bytes()), Some(s));
        assert_eq!(s.range(), "bytes=3145728-4194303");
        assert_eq!(s.key_suffix(), "#slice=1048576/3");
        assert_eq!(Slice::holding(3 << 20, 1 << 20), s);
        assert_eq!(Slice::holding((4 << 20) - 1, 1 << 20), s);
        for bad in [
            "",
            "1",
            "1/0",
            "-1/5",
            "1/+5",
            "a/b",
            "1/5/6",
            "18446744073709551615/2",
        ] {
            assert_eq!(Slice::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range(b"bytes 0-9/100"), Some((0, 9, 100)));
        assert_eq!(content_range(b"bytes 90-99/100"), Some((90, 99, 100)));
        assert_eq!(content_range(b"bytes 9-0/100"), None);
        assert_eq!(content_range(b"bytes 0-100/100"), None);
        assert_eq!(content_range(b"bytes */100"), None);
        assert_eq!(content_range(b"items 0-1/2"), None);
    }
}
