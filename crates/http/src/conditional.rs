//! Validators and preconditions: ETag / Last-Modified on the way out, If-None-Match /
//! If-Modified-Since (→ 304) and If-Range on the way in (RFC 9110 §13). origin-adapter answers
//! by them, and a proxy tier assembling an object from slices.

use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE};
use http::HeaderMap;
use std::time::SystemTime;

/// An object's validators as sent to clients.
#[derive(Debug, Clone)]
pub struct Validators {
    /// Quoted entity tag (`"…"` or `W/"…"`).
    pub etag: Option<String>,
    pub last_modified: Option<SystemTime>,
}

impl Validators {
    pub fn new(etag: Option<&str>, last_modified: SystemTime) -> Self {
        let etag = etag.filter(|e| !e.is_empty()).map(|e| {
            if e.starts_with('"') || e.starts_with("W/\"") {
                e.to_owned()
            } else {
                format!("\"{e}\"")
            }
        });
        Validators {
            etag,
            last_modified: Some(last_modified),
        }
    }

    /// The validators a response carries (`ETag`, `Last-Modified`), either possibly absent.
    pub fn of_response(headers: &HeaderMap) -> Self {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
        };
        Validators {
            etag: text(http::header::ETAG).map(str::to_owned),
            last_modified: text(http::header::LAST_MODIFIED)
                .and_then(|d| httpdate::parse_http_date(d).ok()),
        }
    }

    /// Whether a GET/HEAD with these request headers gets 304 Not Modified. If-None-Match,
    /// when present, decides alone; If-Modified-Since is compared at one-second precision.
    pub fn not_modified(&self, req: &HeaderMap) -> bool {
        if let Some(inm) = req.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
            let Some(etag) = &self.etag else {
                return inm.trim() == "*";
            };
            return inm
                .split(',')
                .map(str::trim)
                .any(|t| t == "*" || weak_eq(t, etag));
        }
        if let Some(ims) = req.get(IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()) {
            if let (Ok(since), Some(modified)) =
                (httpdate::parse_http_date(ims), self.last_modified)
            {
                return truncate_secs(modified) <= since;
            }
        }
        false
    }

    /// Whether a Range may be honoured: no If-Range, or one that matches strongly.
    pub fn if_range_holds(&self, req: &HeaderMap) -> bool {
        let Some(ir) = req.get(IF_RANGE).and_then(|v| v.to_str().ok()) else {
            return true;
        };
        let ir = ir.trim();
        if ir.starts_with('"') {
            self.etag.as_deref() == Some(ir)
        } else {
            let modified = self.last_modified.map(truncate_secs);
            httpdate::parse_http_date(ir).is_ok_and(|d| modified == Some(d))
        }
    }

    pub fn last_modified_header(&self) -> Option<String> {
        self.last_modified.map(httpdate::fmt_http_date)
    }
}

fn weak_eq(a: &str, b: &str) -> bool {
    a.trim_start_matches("W/") == b.trim_start_matches("W/")
}

fn truncate_secs(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn preconditions() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        let v = Validators::new(Some("abc"), t);
        assert_eq!(v.etag.as_deref(), Some("\"abc\""));
        let date = httpdate::fmt_http_date(t);
        let earlier = httpdate::fmt_http_date(t - Duration::from_secs(10));
        assert!(v.not_modified(&headers(&[("if-none-match", "\"abc\"")])));
        assert!(v.not_modified(&headers(&[("if-none-match", "\"x\", W/\"abc\"")])));
        assert!(v.not_modified(&headers(&[("if-none-match", "*")])));
        assert!(!v.not_modified(&headers(&[
            ("if-none-match", "\"x\""),
            ("if-modified-since", &date)
        ])));
        assert!(v.not_modified(&headers(&[("if-modified-since", &date)])));
        assert!(!v.not_modified(&headers(&[("if-modified-since", &earlier)])));
        assert!(!v.not_modified(&headers(&[("if-modified-since", "garbage")])));
        assert!(v.if_range_holds(&headers(&[])));
        assert!(v.if_range_holds(&headers(&[("if-range", "\"abc\"")])));
        assert!(!v.if_range_holds(&headers(&[("if-range", "\"old\"")])));
        assert!(v.if_range_holds(&headers(&[("if-range", &date)])));

        // Read off a response: without Last-Modified no date matches anything.
        let etag_only = Validators::of_response(&headers(&[("etag", "\"abc\"")]));
        assert!(etag_only.not_modified(&headers(&[("if-none-match", "W/\"abc\"")])));
        assert!(!etag_only.not_modified(&headers(&[("if-modified-since", &date)])));
        assert!(!etag_only.if_range_holds(&headers(&[("if-range", &date)])));
        let both =
            Validators::of_response(&headers(&[("etag", "\"abc\""), ("last-modified", &date)]));
        assert!(both.not_modified(&headers(&[("if-modified-since", &date)])));
    }
}
