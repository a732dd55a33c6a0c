//! `GET /health`: 200 when the store and the database answer, 503 "degraded" otherwise;
//! `warnings` names a store setting that can lose revocations (logged once every few minutes
//! across the fleet).

use serde_json::json;

use crate::api::Ctx;
use crate::http::Response;
use crate::time::iso8601;

pub async fn health(cx: &Ctx<'_>) -> Response {
    let (redis, warning) = if cx.config.redis_address.is_empty() {
        ("embedded", None)
    } else {
        match cx.store.ping().await {
            Ok(warning) => ("ok", warning),
            Err(_) => ("down", None),
        }
    };
    let database = if cx.db.execute("SELECT 1", &[]).is_ok() {
        "ok"
    } else {
        "down"
    };
    let healthy = redis != "down" && database == "ok";
    let mut body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "timestamp": iso8601(cx.now_ms),
        "services": { "redis": redis, "database": database },
    });
    // Serving still works, so the status stays ok. Every probe reports the warning; the log
    // repeats it only every few minutes, until the setting is fixed.
    if let Some(warning) = warning {
        if warning.log {
            eprintln!("{}", crate::requestlog::event("warn", None, &warning.text));
        }
        body["warnings"] = json!([warning.text]);
    }
    let mut resp = Response::json(if healthy { 200 } else { 503 }, &body);
    if !healthy {
        resp.set_header("retry-after", "2");
    }
    resp.set_header("cache-control", "no-store");
    resp
}
