//! One JSON line per request on stderr (Spin keeps a component's output): what was asked, what
//! the edge decided, how long it took. The client appears only as a keyed hash of its subject
//! (the same on every instance, no use without the key), never as an address or a token.

use hmac::{Hmac, Mac};
use serde::Serialize;

use crate::error::ApiError;
use crate::time::iso8601;

/// What the edge decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Limited(&'static str),
    Revoked,
    Unauthenticated,
    /// The store or the database was down: refused with a 503, or served open.
    Degraded,
    Error,
}

impl Decision {
    /// The decision behind an answer: the error it came from, if any, and its status.
    pub fn of(status: u16, error: Option<&ApiError>, served_open: bool) -> Self {
        match error {
            Some(ApiError::TooManyRequests { policy, .. }) => Self::Limited(policy),
            Some(ApiError::Unauthorized(message))
                if message.contains("revoked") || message.contains("invalidated") =>
            {
                Self::Revoked
            }
            Some(ApiError::Unauthorized(_)) => Self::Unauthenticated,
            Some(ApiError::Unavailable { .. }) => Self::Degraded,
            _ if served_open || status == 503 => Self::Degraded,
            _ if status >= 500 => Self::Error,
            _ => Self::Allowed,
        }
    }

    fn text(self) -> String {
        match self {
            Self::Allowed => "allowed".into(),
            Self::Limited(policy) => format!("limited:{policy}"),
            Self::Revoked => "revoked".into(),
            Self::Unauthenticated => "unauthenticated".into(),
            Self::Degraded => "degraded".into(),
            Self::Error => "error".into(),
        }
    }
}

/// What the pipeline learns of a request for its line; it lives as long as the request.
#[derive(Debug, Default)]
pub struct Trace {
    /// The route's pattern (`/api/inventory/:id`), never the raw path.
    pub route: Option<String>,
    pub user_id: Option<i64>,
    /// The client's subject, as the limits named it; hashed before it is written.
    pub client: Option<String>,
}

/// The first 16 hex digits of HMAC-SHA256(key, subject).
pub fn client_hash(key: &[u8], subject: &str) -> String {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(subject.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    level: &'static str,
    request_id: &'a str,
    method: &'a str,
    route: &'a str,
    status: u16,
    duration_ms: i64,
    decision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<i64>,
}

pub struct Entry<'a> {
    pub now_ms: i64,
    pub request_id: &'a str,
    pub method: &'a str,
    pub status: u16,
    pub duration_ms: i64,
    pub decision: Decision,
    pub client: Option<&'a str>,
    pub trace: &'a Trace,
}

/// The line, as JSON.
pub fn line(e: &Entry<'_>) -> String {
    let method: String = e.method.chars().take(16).collect();
    serde_json::to_string(&Line {
        time: iso8601(e.now_ms),
        level: "info",
        request_id: e.request_id,
        method: &method,
        route: e.trace.route.as_deref().unwrap_or("unmatched"),
        status: e.status,
        duration_ms: e.duration_ms,
        decision: e.decision.text(),
        client: e.client,
        user_id: e.trace.user_id,
    })
    .unwrap_or_default()
}

/// An event's own line (`level` error or warn), with the request it belongs to if any.
pub fn event(level: &str, request_id: Option<&str>, message: &str) -> String {
    serde_json::json!({
        "time": iso8601(crate::host::now_ms()),
        "level": level,
        "request_id": request_id,
        "message": message,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let limited = ApiError::TooManyRequests {
            message: "x".into(),
            retry_after: 1,
            policy: "auth",
            limit: 5,
            window_secs: 900,
        };
        assert_eq!(
            Decision::of(429, Some(&limited), false).text(),
            "limited:auth"
        );
        let revoked = ApiError::Unauthorized("Token has been revoked. Please login again.");
        assert_eq!(Decision::of(401, Some(&revoked), false), Decision::Revoked);
        let missing = ApiError::Unauthorized("No authorization token provided");
        assert_eq!(
            Decision::of(401, Some(&missing), false),
            Decision::Unauthenticated
        );
        assert_eq!(Decision::of(200, None, true), Decision::Degraded);
        assert_eq!(Decision::of(503, None, false), Decision::Degraded);
        let internal = ApiError::Internal("boom".into());
        assert_eq!(Decision::of(500, Some(&internal), false), Decision::Error);
        assert_eq!(
            Decision::of(400, Some(&ApiError::bad_request("x")), false),
            Decision::Allowed
        );
    }

    #[test]
    fn a_line_names_no_address_and_no_raw_path() {
        let trace = Trace {
            route: Some("/api/inventory/:id".into()),
            user_id: Some(7),
            client: None,
        };
        let client = client_hash(b"key", "203.0.113.9");
        assert_eq!(client.len(), 16);
        assert_ne!(client, client_hash(b"other key", "203.0.113.9"));
        let text = line(&Entry {
            now_ms: 0,
            request_id: "id",
            method: "PUT",
            status: 200,
            duration_ms: 3,
            decision: Decision::Allowed,
            client: Some(&client),
            trace: &trace,
        });
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["route"], "/api/inventory/:id");
        assert_eq!(v["user_id"], 7);
        assert_eq!(v["decision"], "allowed");
        assert!(!text.contains("203.0.113.9"));
    }
}
