//! `GET /health`: 200 when the store and the database answer, 503 "degraded" otherwise.

use serde_json::json;

use crate::http::Response;
use crate::pipeline::Ctx;
use crate::time::iso8601;

pub fn health(cx: &Ctx<'_>) -> Response {
    let redis = if cx.config.redis_address.is_empty() {
        "embedded"
    } else if cx.store.ping().is_ok() {
        "ok"
    } else {
        "down"
    };
    let database = if cx.db.execute("SELECT 1", &[]).is_ok() {
        "ok"
    } else {
        "down"
    };
    let healthy = redis != "down" && database == "ok";
    let mut resp = Response::json(
        if healthy { 200 } else { 503 },
        &json!({
            "status": if healthy { "ok" } else { "degraded" },
            "timestamp": iso8601(cx.now_ms),
            "services": { "redis": redis, "database": database },
        }),
    );
    if !healthy {
        resp.set_header("retry-after", "2");
    }
    resp.set_header("cache-control", "no-store");
    resp
}
