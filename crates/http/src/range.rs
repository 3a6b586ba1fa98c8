//! One byte range per request (RFC 9110 §14). Several ranges, or a Range this server does
//! not understand, are ignored and the whole object is sent, as the RFC allows. origin-adapter
//! answers ranges by it, and a proxy tier assembling an object from slices.

use std::ops::Range;

#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// Send the whole object.
    Full,
    /// Send these bytes (end exclusive) as 206.
    Bytes(Range<u64>),
    /// 416: no byte of the object is in the range.
    Unsatisfiable,
}

/// The two sides of one `bytes=first-last` range (either may be empty), trimmed; `None` for
/// another unit, several ranges, or no `-`.
fn spec(value: &str) -> Option<(&str, &str)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.trim().split_once('-')?;
    Some((first.trim(), last.trim()))
}

fn number(s: &str) -> Option<u64> {
    s.parse::<u64>()
        .ok()
        .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
}

/// The first byte a Range value names without knowing the object's length (`bytes=A-` or
/// `bytes=A-B`; not a range from the end).
pub fn first_byte(value: &str) -> Option<u64> {
    spec(value).and_then(|(first, _)| number(first))
}

/// Interprets a Range header value against an object of `size` bytes.
pub fn parse(value: &str, size: u64) -> RangeRequest {
    let Some((first, last)) = spec(value) else {
        return RangeRequest::Full;
    };
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match number(last) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if size == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Bytes(size.saturating_sub(n)..size),
            None => RangeRequest::Full,
        },
        // bytes=A- or bytes=A-B
        (false, _) => {
            let Some(start) = number(first) else {
                return RangeRequest::Full;
            };
            let end = if last.is_empty() {
                size
            } else {
                match number(last) {
                    Some(l) if l >= start => l.saturating_add(1).min(size),
                    _ => return RangeRequest::Full,
                }
            };
            if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Bytes(start..end)
            }
        }
        (true, true) => RangeRequest::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn ranges() {
        let table: &[(&str, u64, RangeRequest)] = &[
            ("bytes=0-9", 100, Bytes(0..10)),
            ("bytes=90-", 100, Bytes(90..100)),
            ("bytes=90-500", 100, Bytes(90..100)),
            ("bytes=-10", 100, Bytes(90..100)),
            ("bytes=-500", 100, Bytes(0..100)),
            ("bytes=100-", 100, Unsatisfiable),
            ("bytes=-0", 100, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-5", 0, Unsatisfiable),
            ("bytes=5-1", 100, Full),
            ("bytes=0-1,5-6", 100, Full),
            ("items=0-1", 100, Full),
            ("bytes=a-b", 100, Full),
            ("bytes=+1-2", 100, Full),
        ];
        for (value, size, expected) in table {
            assert_eq!(&parse(value, *size), expected, "{value} of {size}");
        }
    }

    #[test]
    fn first_bytes_named() {
        assert_eq!(first_byte("bytes=100-199"), Some(100));
        assert_eq!(first_byte("bytes=100-"), Some(100));
        assert_eq!(first_byte("bytes=-100"), None);
        assert_eq!(first_byte("bytes=0-1,5-6"), None);
        assert_eq!(first_byte("items=1-2"), None);
    }
}
