//! A trivial Spin app (WASI 0.3) that is not AlcheMix, for the guard to stand in front of
//! (`examples/guard-in-front`): it answers every request with the identity the guard handed it,
//! and any other `x-edge-` header it received, so a test can see what reached the app.

#![cfg(target_arch = "wasm32")]

use spin_sdk::http::{HeaderValue, Request, Response};
use spin_sdk::http_service;

#[http_service]
async fn handle(req: Request) -> Response<String> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let edge: Vec<String> = req
        .headers()
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("x-edge-"))
        .collect();
    let body = serde_json::json!({
        "hello": "world",
        "path": req.uri().path(),
        "user": header("x-edge-user-id"),
        "client": header("x-edge-client"),
        "edgeHeaders": edge,
    });
    let mut resp = Response::new(body.to_string());
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}
