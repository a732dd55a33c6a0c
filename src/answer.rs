//! What every answer gets, whichever component gives it: the request id, the security and CORS
//! headers, the refusal mapped to its JSON error, and the request's log line.

use crate::config::Config;
use crate::cors;
use crate::error::ApiError;
use crate::host;
use crate::http::{Request, Response};
use crate::identity;
use crate::requestlog::{self, Decision, Entry, Trace};
use crate::token;

/// The answer while the configuration does not load: a 500, the problem logged by name.
pub fn misconfigured(req: &Request, problem: &str) -> Response {
    let mut resp = ApiError::Misconfigured.into_response();
    finish(&mut resp, Some(req), &[], new_request_id(&host::random));
    let message = format!("alchemix-edge: refusing to serve: {problem}");
    eprintln!(
        "{}",
        requestlog::event("error", resp.header("x-request-id"), &message)
    );
    resp
}

/// The answer to a request that could not be read (a body too large or broken).
pub fn unreadable(e: ApiError) -> Response {
    let mut resp = e.into_response();
    finish(&mut resp, None, &[], new_request_id(&host::random));
    resp
}

/// The request's line, after a line for each failure that did not decide its answer.
pub fn log(
    req: &Request,
    resp: &Response,
    config: &Config,
    decision: Decision,
    mut trace: Trace,
    errors: &[String],
    started_ms: i64,
) {
    let request_id = resp.header("x-request-id").unwrap_or_default();
    let now_ms = host::now_ms();
    for detail in errors {
        eprintln!("{}", requestlog::event("error", Some(request_id), detail));
    }
    // The limits already named the client; only unlimited routes and refusals before the
    // route was known still need it worked out.
    let subject = trace
        .client
        .take()
        .unwrap_or_else(|| identity::client_subject(req, config));
    let client = requestlog::client_hash(config.jwt_secret.expose().as_bytes(), &subject);
    eprintln!(
        "{}",
        requestlog::line(&Entry {
            now_ms,
            request_id,
            method: &req.method,
            status: resp.status,
            duration_ms: now_ms.saturating_sub(started_ms).max(0),
            decision,
            client: Some(&client),
            trace: &trace,
        })
    );
}

/// The answer and the decision behind it, from what the request path came to: a response, or
/// a refusal with the headers gathered before it (its detail, if any, goes to `note`).
pub fn decided(
    result: Result<Response, (ApiError, Headers)>,
    note: impl FnOnce(String),
) -> (Response, Decision) {
    match result {
        Ok(resp) => {
            let open = resp.header(DEGRADED_HEADER).is_some();
            let decision = Decision::of(resp.status, None, open);
            (resp, decision)
        }
        Err((e, headers)) => {
            let decision = Decision::of(e.status(), Some(&e), false);
            if let Some(detail) = e.log_detail() {
                note(detail.to_string());
            }
            let mut resp = e.into_response();
            resp.headers.extend(headers);
            (resp, decision)
        }
    }
}

/// Marks a response served without limits or revocation checks while the store was down.
pub const DEGRADED_HEADER: &str = "x-edge-degraded";

/// Says whether a list page came from the page cache (`hit`) or the app (`miss`).
pub const CACHE_HEADER: &str = "x-edge-cache";

/// What every response carries, including those refused before the pipeline runs.
pub fn finish(
    resp: &mut Response,
    req: Option<&Request>,
    cors_origins: &[String],
    request_id: String,
) {
    resp.set_header("x-request-id", request_id);
    if let Some(client_id) = req
        .and_then(|r| r.header("x-request-id"))
        .filter(|v| is_uuid(v))
    {
        resp.set_header("x-client-request-id", client_id);
    }
    if let Some(origin) = req.and_then(|r| r.header("origin")) {
        cors::allow(resp, origin, cors_origins);
    }
    security_headers(resp);
}

pub type Headers = Vec<(String, String)>;

/// A request's id (a v4 UUID), for its response and every line logged of it.
pub fn new_request_id(random: &dyn Fn(&mut [u8])) -> String {
    let mut b = [0u8; 16];
    random(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = token::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn is_uuid(v: &str) -> bool {
    v.len() == 36
        && v.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn security_headers(resp: &mut Response) {
    resp.set_header(
        "strict-transport-security",
        "max-age=31536000; includeSubDomains; preload",
    );
    resp.set_header("x-content-type-options", "nosniff");
    resp.set_header("x-frame-options", "DENY");
    resp.set_header("referrer-policy", "no-referrer");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_v4_uuids() {
        let id = new_request_id(&|b: &mut [u8]| b.fill(0xab));
        assert!(is_uuid(&id), "{id}");
        assert_eq!(&id[14..15], "4");
        assert!(!is_uuid("not-a-uuid"));
    }
}
