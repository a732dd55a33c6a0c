//! Plain request/response values, so routing and handlers run (and test) without Spin.

use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;

/// Requests above this are refused with 413, as AlcheMix's body parser did.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// A body over the limit but under this is read to its end and dropped before the 413, so a
/// client that sends its whole body before reading (Python's http.client, many SDKs) reads
/// the answer instead of a reset connection; past it, the connection is given up at once.
pub const MAX_DRAINED_BYTES: u64 = 16 * 1024 * 1024;

/// Collects a request body as it streams in, within [`MAX_BODY_BYTES`].
pub struct BodyReader {
    body: Vec<u8>,
    seen: u64,
}

impl BodyReader {
    /// Refuses at once a body declared past what is drained.
    pub fn new(headers: &[(String, String)]) -> Result<Self, ApiError> {
        let declared = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_DRAINED_BYTES) {
            return Err(ApiError::PayloadTooLarge);
        }
        Ok(Self {
            body: Vec::new(),
            seen: 0,
        })
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        self.seen = self.seen.saturating_add(chunk.len() as u64);
        if self.seen > MAX_DRAINED_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        if self.seen <= MAX_BODY_BYTES as u64 {
            self.body.extend_from_slice(chunk);
        }
        Ok(())
    }

    pub fn finish(self) -> Result<Vec<u8>, ApiError> {
        if self.seen > MAX_BODY_BYTES as u64 {
            return Err(ApiError::PayloadTooLarge);
        }
        Ok(self.body)
    }
}

/// Whether a request has no body to read: a GET or HEAD that declares neither a length nor
/// chunks (an HTTP/1.1 request without either has none, RFC 9112 6.3; a GET's body has no
/// meaning to the edge). Not asking for it spares the host and the component a stream and a
/// trailers future on every read.
pub fn bodiless(method: &str, headers: &[(String, String)]) -> bool {
    matches!(method, "GET" | "HEAD")
        && !headers
            .iter()
            .any(|(k, _)| k == "content-length" || k == "transfer-encoding")
}

/// Header names lower-cased in place, values kept as UTF-8 without a copy when they are.
pub fn header_entry(mut name: String, value: Vec<u8>) -> (String, String) {
    name.make_ascii_lowercase();
    let value = String::from_utf8(value)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    (name, value)
}

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// A request from its method, its target (`path?query`), headers and body.
    pub fn new(
        method: String,
        target: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Self {
            method,
            path: path.to_string(),
            query: query.to_string(),
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's raw value (no percent-decoding: the edge's parameters are numbers).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        }
    }

    /// `{ "success": true, "data": ... }`
    pub fn data(status: u16, data: Value) -> Self {
        Self::json(
            status,
            &serde_json::json!({ "success": true, "data": data }),
        )
    }

    /// `{ "success": true, "message": ... }`
    pub fn message(text: &str) -> Self {
        Self::json(
            200,
            &serde_json::json!({ "success": true, "message": text }),
        )
    }

    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((name.to_string(), value.into()));
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Parses a JSON object body; anything else is the caller's 400.
pub fn json_object(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_get_or_head_that_declares_no_body_is_bodiless() {
        let header = |name: &str| vec![(name.to_string(), "5".to_string())];
        assert!(bodiless("GET", &[]));
        assert!(bodiless("HEAD", &header("accept")));
        assert!(!bodiless("GET", &header("content-length")));
        assert!(!bodiless("GET", &header("transfer-encoding")));
        assert!(!bodiless("POST", &[]));
        assert!(!bodiless("DELETE", &[]));
    }
}
