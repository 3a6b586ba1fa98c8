//! The one place where a failure becomes a client response: each kind's status code sits
//! here, and bodies are short fixed texts (details go to the log, never to the client).

use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("bad path: {0}")]
    BadPath(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("no route covers this path")]
    NoRoute,
    #[error("object not found")]
    NotFound,
    #[error("range not satisfiable for an object of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("backend did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("backend failed: {0}")]
    Backend(#[source] object_store::Error),
}

impl OriginError {
    pub fn status(&self) -> StatusCode {
        match self {
            OriginError::BadPath(_) => StatusCode::BAD_REQUEST,
            OriginError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            OriginError::NoRoute | OriginError::NotFound => StatusCode::NOT_FOUND,
            OriginError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            OriginError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            OriginError::Backend(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The body the client sees: the status reason, and for 400 what was wrong with the path.
    pub fn body(&self) -> String {
        match self {
            OriginError::BadPath(why) => format!("bad request: {why}\n"),
            other => format!(
                "{}\n",
                other
                    .status()
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_lowercase()
            ),
        }
    }

    /// Whether the log should call this the server's fault.
    pub fn is_server_error(&self) -> bool {
        self.status().is_server_error()
    }
}

impl From<object_store::Error> for OriginError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => OriginError::NotFound,
            other => OriginError::Backend(other),
        }
    }
}
