//! CORS with an allow-list of origins. Allowed origins get the headers on every response,
//! 429 and 503 included, so a browser can read why it was refused.

use crate::error::ApiError;
use crate::http::Response;

const METHODS: &str = "GET, POST, PUT, DELETE, OPTIONS";
const HEADERS: &str = "Content-Type, Authorization, X-Request-ID";

fn allowed<'a>(origin: &str, origins: &'a [String]) -> Option<&'a str> {
    origins
        .iter()
        .find(|o| o.as_str() == origin || o.as_str() == "*")
        .map(|o| o.as_str())
}

pub fn allow(resp: &mut Response, origin: &str, origins: &[String]) {
    if let Some(rule) = allowed(origin, origins) {
        resp.set_header("access-control-allow-origin", origin);
        // A wildcard rule admits any origin, but then never with credentials.
        if rule != "*" {
            resp.set_header("access-control-allow-credentials", "true");
        }
        resp.set_header(
            "access-control-expose-headers",
            "RateLimit, RateLimit-Policy, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, X-Request-ID",
        );
    }
    resp.set_header("vary", "Origin");
}

/// The answer to `OPTIONS`: 204 for an allowed origin, 403 JSON otherwise.
pub fn preflight(origin: Option<&str>, origins: &[String]) -> Response {
    match origin {
        Some(o) if allowed(o, origins).is_some() => {
            let mut resp = Response {
                status: 204,
                headers: Vec::new(),
                body: Vec::new(),
            };
            resp.set_header("access-control-allow-methods", METHODS);
            resp.set_header("access-control-allow-headers", HEADERS);
            resp.set_header("access-control-max-age", "600");
            resp
        }
        Some(_) => ApiError::Forbidden("Origin not allowed").into_response(),
        None => {
            let mut resp = Response {
                status: 204,
                headers: Vec::new(),
                body: Vec::new(),
            };
            resp.set_header("allow", METHODS);
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let origins = vec!["https://app.example".to_string()];
        let mut r = Response::message("x");
        allow(&mut r, "https://app.example", &origins);
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        let mut r = Response::message("x");
        allow(&mut r, "https://evil.example", &origins);
        assert_eq!(r.header("access-control-allow-origin"), None);
        assert_eq!(preflight(Some("https://app.example"), &origins).status, 204);
        assert_eq!(
            preflight(Some("https://evil.example"), &origins).status,
            403
        );
    }
}
