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

/// Interprets a Range header value against an object of `size` bytes.
pub fn parse(value: &str, size: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| {
        s.parse::<u64>()
            .ok()
            .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
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
}
