//! The one place a failure becomes a client response: each kind's status code, its body (a short
//! fixed text: details go to the log, never to the client) and the headers it needs sit here.
//! Every tier answers its own errors through this type.

/// What caused a failure below the tier, kept for the log.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a tier answers a request with an error of its own instead of the object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The request cannot be served as sent: a path that could escape the tree or name two
    /// objects. The reason is told to the client.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request target is longer than a tier passes on.
    #[error("request target too long")]
    UriTooLong,
    /// The HTTP layer could not read the request.
    #[error("request could not be read")]
    Unreadable,
    /// A GET or HEAD that carries a body (`cdn_http::framing`): refused, and the connection
    /// closed, since whatever follows the head cannot be told apart from the next request.
    #[error("a GET or HEAD request carries a body")]
    BodyOnRead,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("no route covers this path")]
    NoRoute,
    #[error("object not found")]
    NotFound,
    /// The route needs credentials the request does not carry, or carries bad ones;
    /// `challenge` is the `WWW-Authenticate` value that says how to authenticate.
    #[error("credentials required")]
    Unauthorized { challenge: String },
    /// The request's credentials are good but do not cover what it asks for, or it came from
    /// outside the tiers this one answers. `challenge`, if any, goes in `WWW-Authenticate`.
    #[error("forbidden")]
    Forbidden { challenge: Option<String> },
    /// Over a rate limit: may try again in `retry_after` seconds.
    #[error("rate limited")]
    TooManyRequests { retry_after: u64 },
    /// This tier cannot answer yet (what it needs is still loading): try again in
    /// `retry_after` seconds.
    #[error("not ready")]
    Unavailable { retry_after: u64 },
    #[error("range not satisfiable for an object of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// The upstream (the next tier, or the origin's storage) did not answer in time.
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    /// The upstream could not be reached or failed.
    #[error("upstream failed: {0}")]
    Upstream(#[source] Cause),
    /// The upstream answered this server error and no stored copy could stand in: passed on.
    #[error("upstream answered {0}")]
    UpstreamStatus(u16),
    /// This tier failed on its own.
    #[error("internal error: {0}")]
    Internal(#[source] Cause),
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) | HttpError::Unreadable | HttpError::BodyOnRead => 400,
            HttpError::UriTooLong => 414,
            HttpError::Unauthorized { .. } => 401,
            HttpError::Forbidden { .. } => 403,
            HttpError::TooManyRequests { .. } => 429,
            HttpError::Unavailable { .. } => 503,
            HttpError::NoRoute | HttpError::NotFound => 404,
            HttpError::MethodNotAllowed => 405,
            HttpError::RangeNotSatisfiable { .. } => 416,
            HttpError::Internal(_) => 500,
            HttpError::Upstream(_) => 502,
            HttpError::UpstreamStatus(code @ 500..=599) => *code,
            HttpError::UpstreamStatus(_) => 502,
            HttpError::UpstreamTimeout => 504,
        }
    }

    /// The body the client sees. Only a bad request says what was wrong with it; no other
    /// failure's detail leaves the tier.
    pub fn body(&self) -> String {
        let text = match self {
            HttpError::BadRequest(why) => return format!("bad request: {why}\n"),
            HttpError::UriTooLong => "request target too long",
            HttpError::Unreadable => "bad request",
            HttpError::BodyOnRead => "bad request: a GET or HEAD request carries no body",
            HttpError::MethodNotAllowed => "method not allowed",
            HttpError::NoRoute | HttpError::NotFound => "not found",
            HttpError::Unauthorized { .. } => "valid credentials are required for this path",
            HttpError::Forbidden { .. } => "forbidden",
            HttpError::TooManyRequests { .. } => "too many requests",
            HttpError::Unavailable { .. } => "not ready, try again",
            HttpError::RangeNotSatisfiable { .. } => "range not satisfiable",
            HttpError::UpstreamTimeout | HttpError::UpstreamStatus(504) => "upstream timed out",
            HttpError::Upstream(_) | HttpError::UpstreamStatus(_) => "upstream unavailable",
            HttpError::Internal(_) => "internal error",
        };
        format!("{text}\n")
    }

    /// The headers of the error response, but its length: a plain-text body no cache may store,
    /// and what the status needs beside it (RFC 9110: `Allow` with a 405, `Content-Range` with a
    /// 416, `WWW-Authenticate` with a 401, `Retry-After` with a 429 or 503).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("content-type", "text/plain; charset=utf-8".to_owned()),
            ("cache-control", "no-store".to_owned()),
        ];
        match self {
            HttpError::MethodNotAllowed => headers.push(("allow", "GET, HEAD".to_owned())),
            HttpError::BodyOnRead => headers.push(("connection", "close".to_owned())),
            HttpError::Unauthorized { challenge } => {
                headers.push(("www-authenticate", challenge.clone()))
            }
            HttpError::Forbidden {
                challenge: Some(challenge),
            } => headers.push(("www-authenticate", challenge.clone())),
            HttpError::TooManyRequests { retry_after } | HttpError::Unavailable { retry_after } => {
                headers.push(("retry-after", retry_after.to_string()))
            }
            HttpError::RangeNotSatisfiable { size } => {
                headers.push(("content-range", format!("bytes */{size}")))
            }
            _ => {}
        }
        headers
    }

    /// Whether the connection must close after this answer: the rest of the request was not
    /// read, so nothing after it can be taken for a request.
    pub fn closes_connection(&self) -> bool {
        matches!(self, HttpError::BodyOnRead)
    }

    /// Whether this is the server side's fault (worth a warning in the log).
    pub fn is_server_error(&self) -> bool {
        self.status() >= 500
    }

    /// An upstream failure with a cause known only as text.
    pub fn upstream(cause: impl Into<String>) -> HttpError {
        HttpError::Upstream(cause.into().into())
    }

    /// An internal failure with a cause known only as text.
    pub fn internal(cause: impl Into<String>) -> HttpError {
        HttpError::Internal(cause.into().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_body_and_headers_go_together() {
        let cases: [(HttpError, u16, &str); 16] = [
            (HttpError::Unreadable, 400, "bad request\n"),
            (
                HttpError::BodyOnRead,
                400,
                "bad request: a GET or HEAD request carries no body\n",
            ),
            (
                HttpError::UpstreamStatus(503),
                503,
                "upstream unavailable\n",
            ),
            (
                HttpError::UpstreamStatus(200),
                502,
                "upstream unavailable\n",
            ),
            (
                HttpError::BadRequest("dot segment in path"),
                400,
                "bad request: dot segment in path\n",
            ),
            (
                HttpError::Unauthorized {
                    challenge: "Bearer realm=\"cdn\"".into(),
                },
                401,
                "valid credentials are required for this path\n",
            ),
            (HttpError::Forbidden { challenge: None }, 403, "forbidden\n"),
            (
                HttpError::TooManyRequests { retry_after: 2 },
                429,
                "too many requests\n",
            ),
            (
                HttpError::Unavailable { retry_after: 1 },
                503,
                "not ready, try again\n",
            ),
            (HttpError::NoRoute, 404, "not found\n"),
            (HttpError::NotFound, 404, "not found\n"),
            (HttpError::MethodNotAllowed, 405, "method not allowed\n"),
            (
                HttpError::RangeNotSatisfiable { size: 10 },
                416,
                "range not satisfiable\n",
            ),
            (HttpError::internal("disk"), 500, "internal error\n"),
            (
                HttpError::upstream("refused"),
                502,
                "upstream unavailable\n",
            ),
            (HttpError::UpstreamTimeout, 504, "upstream timed out\n"),
        ];
        for (e, status, body) in cases {
            assert_eq!((e.status(), e.body().as_str()), (status, body), "{e}");
        }
        let extra = |e: HttpError| e.headers().split_off(2);
        assert_eq!(
            extra(HttpError::RangeNotSatisfiable { size: 10 }),
            [("content-range", "bytes */10".to_owned())]
        );
        assert_eq!(
            extra(HttpError::MethodNotAllowed),
            [("allow", "GET, HEAD".to_owned())]
        );
        assert!(extra(HttpError::NotFound).is_empty());
        assert_eq!(
            extra(HttpError::BodyOnRead),
            [("connection", "close".to_owned())]
        );
        assert!(HttpError::BodyOnRead.closes_connection());
        assert!(!HttpError::BadRequest("dot segment in path").closes_connection());
        assert_eq!(
            extra(HttpError::Unauthorized {
                challenge: "Basic realm=\"cdn\"".into()
            }),
            [("www-authenticate", "Basic realm=\"cdn\"".to_owned())]
        );
        assert_eq!(
            extra(HttpError::TooManyRequests { retry_after: 3 }),
            [("retry-after", "3".to_owned())]
        );
        assert!(HttpError::NotFound
            .headers()
            .contains(&("cache-control", "no-store".to_owned())));
    }

    #[test]
    fn no_cause_reaches_the_body() {
        let e = HttpError::upstream("connect to 10.0.0.7:9000 refused");
        assert!(
            e.to_string().contains("10.0.0.7"),
            "the log keeps the cause"
        );
        assert!(!e.body().contains("10.0.0.7"), "the client never sees it");
    }
}
