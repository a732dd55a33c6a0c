//! `GET /metrics`: the fleet's decision counters and the limits in force, as Prometheus text.
//! It exists only when `metrics_token` is set, and answers only that bearer token.

use subtle::ConstantTimeEq;

use crate::api::Ctx;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::metrics;
use crate::token;

pub async fn metrics(req: &Request, cx: &Ctx<'_>) -> Result<Response, ApiError> {
    let Some(expected) = &cx.config.metrics_token else {
        return Err(super::not_found(&req.method, &req.path));
    };
    let presented = token::bearer(req.header("authorization")).unwrap_or_default();
    if !bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes())) {
        return Err(ApiError::Unauthorized("A valid metrics token is required"));
    }
    let totals = cx.store.metrics().await.map_err(ApiError::from)?;
    let mut resp = Response {
        status: 200,
        headers: Vec::new(),
        body: metrics::render(&totals, &cx.config.policies()).into_bytes(),
    };
    resp.set_header("content-type", "text/plain; version=0.0.4; charset=utf-8");
    resp.set_header("cache-control", "no-store");
    Ok(resp)
}
