//! The one error type of the edge, and the one place it becomes an HTTP response.

use serde_json::{json, Value};

use crate::http::Response;

#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    BadRequest {
        message: String,
        details: Option<Value>,
    },
    Unauthorized(&'static str),
    Forbidden(&'static str),
    NotFound(String),
    /// The methods the path does answer, for the `Allow` header (RFC 9110).
    MethodNotAllowed(&'static str),
    PayloadTooLarge,
    TooManyRequests {
        message: String,
        retry_after: u64,
        /// The policy that refused, with its limit and window, so a client can tell them apart.
        policy: &'static str,
        limit: u32,
        window_secs: u64,
    },
    /// A dependency is down; clients should retry, and must not drop their tokens.
    Unavailable {
        message: &'static str,
        retry_after: u64,
        /// What was down and why, for the log line; never sent.
        detail: String,
    },
    /// The operator's configuration is unusable; the log line says why.
    Misconfigured,
    /// Something unexpected; the message is logged, never sent.
    Internal(String),
    /// The app behind the guard gave no answer; what went wrong is logged, never sent.
    BadGateway(String),
}

/// Seconds a client is told to wait when the store or the database is unreachable.
pub const RETRY_SECS: u64 = 2;

/// A database that cannot be reached is a 503 the client retries (never a 500, never a 401
/// that would make it drop its token); anything else is unexpected.
impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        if e.kind == crate::db::DbErrorKind::Unavailable {
            Self::Unavailable {
                message: "Service temporarily unavailable, please retry",
                retry_after: RETRY_SECS,
                detail: format!("database unavailable: {e}"),
            }
        } else {
            Self::Internal(format!("database: {e}"))
        }
    }
}

impl ApiError {
    /// What the log should say of this error beyond its status (never sent to the client).
    pub fn log_detail(&self) -> Option<&str> {
        match self {
            Self::Internal(detail) | Self::BadGateway(detail) => Some(detail),
            Self::Unavailable { detail, .. } if !detail.is_empty() => Some(detail),
            _ => None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            details: None,
        }
    }

    pub fn validation(message: impl Into<String>, details: Vec<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            details: Some(json!(details)),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest { .. } => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::PayloadTooLarge => 413,
            Self::TooManyRequests { .. } => 429,
            Self::Misconfigured | Self::Internal(_) => 500,
            Self::BadGateway(_) => 502,
            Self::Unavailable { .. } => 503,
        }
    }

    pub fn into_response(self) -> Response {
        let status = self.status();
        let allow = match &self {
            Self::MethodNotAllowed(methods) => Some(*methods),
            _ => None,
        };
        let (message, details, retry_after) = match self {
            Self::BadRequest { message, details } => (message, details, None),
            Self::Unauthorized(m) | Self::Forbidden(m) => (m.to_string(), None, None),
            Self::NotFound(m) => (m, None, None),
            Self::MethodNotAllowed(_) => ("Method not allowed".into(), None, None),
            Self::PayloadTooLarge => ("Request body too large (limit 10 MB)".into(), None, None),
            Self::TooManyRequests {
                message,
                retry_after,
                policy,
                limit,
                window_secs,
            } => (
                message,
                Some(json!({
                    "policy": policy,
                    "limit": limit,
                    "window": window_secs,
                    "retryAfter": retry_after,
                })),
                Some(retry_after),
            ),
            Self::Unavailable {
                message,
                retry_after,
                ..
            } => (message.to_string(), None, Some(retry_after)),
            Self::Misconfigured => ("Server misconfigured".into(), None, None),
            // The pipeline logs the detail, with the request's id.
            Self::Internal(_) => ("Internal server error".into(), None, None),
            Self::BadGateway(_) => ("The service behind the edge failed".into(), None, None),
        };
        let mut body = json!({ "success": false, "error": message });
        if let Some(details) = details {
            body["details"] = details;
        }
        let mut resp = Response::json(status, &body);
        if let Some(secs) = retry_after {
            resp.set_header("retry-after", secs.to_string());
        }
        if let Some(methods) = allow {
            resp.set_header("allow", methods);
        }
        if status == 429 || status == 503 {
            resp.set_header("cache-control", "no-store");
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_and_headers() {
        let r = ApiError::validation("Validation failed", vec!["name: Required".into()])
            .into_response();
        assert_eq!(r.status, 400);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v,
            json!({"success": false, "error": "Validation failed", "details": ["name: Required"]})
        );

        let r = ApiError::Unavailable {
            message: "down",
            retry_after: 2,
            detail: "redis: connection refused".into(),
        }
        .into_response();
        assert_eq!((r.status, r.header("retry-after")), (503, Some("2")));

        let r = ApiError::MethodNotAllowed("GET, HEAD").into_response();
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));

        let r = ApiError::Internal("secret detail".into()).into_response();
        assert!(!String::from_utf8(r.body).unwrap().contains("secret"));

        let r = ApiError::BadGateway("the app trapped at 0x1234".into()).into_response();
        assert_eq!(r.status, 502);
        assert!(!String::from_utf8(r.body).unwrap().contains("0x1234"));
    }
}
