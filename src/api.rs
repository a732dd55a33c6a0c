//! The AlcheMix API alone, behind edge-guard (Spin 4.1 middleware). The guard has named the
//! client, charged the limits and checked the token and its revocation, and it settles the
//! answer: the login refund, the RateLimit, CORS and security headers, the request's log line.
//! What is left here is the route's own work, and telling the store the database schema it
//! verified. Nothing reaches this component except through
//! the guard: Spin's composition exports its handler to the guard alone.

use std::cell::RefCell;

use crate::config::Config;
use crate::db::Database;
use crate::error::ApiError;
use crate::guard;
use crate::host;
use crate::http::{Request, Response};
use crate::pipeline::{self, Ctx};
use crate::requestlog;
use crate::routes::{self, Route};
use crate::store::redis::RedisLink;
use crate::store::Store;

/// Answers a request the guard admitted; the store is Redis through `link` (logout records
/// revocations there itself), or the embedded one in `db`.
pub async fn serve(
    req: &Request,
    config: &Config,
    db: &dyn Database,
    link: &dyn RedisLink,
) -> Response {
    let now_ms = host::now_ms();
    let store = pipeline::store_for(config, db, link, now_ms);
    let errors = RefCell::new(Vec::new());
    let vouched = req
        .header(guard::SCHEMA_HEADER)
        .and_then(|v| v.parse::<i64>().ok());
    if let Some(version) = vouched {
        db.vouch_schema(version);
    }
    let route = routes::resolve(&req.method, &req.path);
    let result = match &route {
        Ok(route) => answer(*route, req, config, db, &*store, now_ms, &errors).await,
        Err(e) => Err(e.clone()),
    };
    if let Some(e) = pipeline::record_schema(db, &*store, vouched).await {
        errors.borrow_mut().push(e);
    }
    let mut resp = result.unwrap_or_else(|e| {
        if let Some(detail) = e.log_detail() {
            errors.borrow_mut().push(detail.to_string());
        }
        e.into_response()
    });
    if let Ok(route) = route {
        resp.set_header(guard::ROUTE_HEADER, route.pattern());
    }
    let request_id = req.header(guard::REQUEST_ID_HEADER);
    for detail in errors.into_inner() {
        eprintln!("{}", requestlog::event("error", request_id, &detail));
    }
    if req.method == "HEAD" {
        resp.body.clear();
    }
    resp
}

async fn answer(
    route: Route,
    req: &Request,
    config: &Config,
    db: &dyn Database,
    store: &dyn Store,
    now_ms: i64,
    errors: &RefCell<Vec<String>>,
) -> Result<Response, ApiError> {
    let keys = pipeline::keys(config);
    let (claims, token_digest) = match config.routes.find(&req.method, &req.path) {
        Some(rule) if rule.asks_token() => {
            let (claims, digest) = guard::vouched(req, &keys, now_ms / 1000)?;
            (Some(claims), Some(digest))
        }
        _ => (None, None),
    };
    let cx = Ctx {
        config,
        keys: &keys,
        db,
        store,
        random: &host::random,
        now_ms,
        claims,
        token_digest,
        errors,
    };
    routes::dispatch(route, req, &cx).await
}
