//! The guard and the API in one component (the WASI 0.2 build, and `spin.toml`): request id,
//! client identity, route, the guard's check (limits, revocation and the page cache in one store
//! call), the handler, the response headers. Every failure becomes an `ApiError` here.

use std::cell::RefCell;

use crate::answer::{decided, finish, log, new_request_id, Headers};
use crate::api::{data_written, record_schema, Ctx};
use crate::config::Config;
use crate::cors;
use crate::db::Database;
use crate::error::ApiError;
use crate::guard;
use crate::host;
use crate::http::{Request, Response};
use crate::pagecache;
use crate::requestlog::{Decision, Trace};
use crate::routes::{self, Route};
use crate::store::redis::RedisLink;
use crate::store::{self, Store};

pub struct Services<'a> {
    pub db: &'a dyn Database,
    pub store: &'a dyn Store,
    pub random: &'a dyn Fn(&mut [u8]),
    pub now_ms: i64,
    /// Failures that did not decide the answer (a page not cached, a refund lost), logged
    /// with the request's id once it is answered.
    pub errors: &'a RefCell<Vec<String>>,
}

impl Services<'_> {
    pub fn note_error(&self, message: String) {
        self.errors.borrow_mut().push(message);
    }
}

/// Serves a request once it is read, in either world: the store the configuration names (Redis
/// through `link`, or the embedded one in `db`), then the pipeline.
pub async fn serve(
    req: &Request,
    config: &Config,
    db: &dyn Database,
    link: &dyn RedisLink,
) -> Response {
    let now_ms = host::now_ms();
    let store = store::open(config, db, link, now_ms);
    let errors = RefCell::new(Vec::new());
    let services = Services {
        db,
        store: &*store,
        random: &host::random,
        now_ms,
        errors: &errors,
    };
    handle(req, config, &services).await
}

/// Serves one request; never panics on input, always answers JSON.
pub async fn handle(req: &Request, config: &Config, svc: &Services<'_>) -> Response {
    let origin = req.header("origin");
    let mut trace = Trace::default();
    let (mut resp, decision) = if req.method == "OPTIONS" {
        // Preflights are answered here: no token, no limiter, no store.
        trace.route = Some("preflight".into());
        let resp = cors::preflight(origin, &config.cors_origins);
        (resp, Decision::Allowed)
    } else {
        let result = run(req, config, svc, &mut trace).await;
        decided(result, |detail| svc.note_error(detail))
    };
    finish(
        &mut resp,
        Some(req),
        &config.cors_origins,
        new_request_id(svc.random),
    );
    let errors: Vec<String> = svc.errors.borrow_mut().drain(..).collect();
    log(req, &resp, config, decision, trace, &errors, svc.now_ms);
    if req.method == "HEAD" {
        resp.body.clear();
    }
    resp
}

async fn run(
    req: &Request,
    config: &Config,
    svc: &Services<'_>,
    trace: &mut Trace,
) -> Result<Response, (ApiError, Headers)> {
    let route = routes::resolve(&req.method, &req.path).map_err(|e| (e, Vec::new()))?;
    trace.route = Some(route.pattern());
    let rule = config.routes.find(&req.method, &req.path);
    let keys = config.keys();
    let asked = guard::ask(req, config, keys, rule, svc.now_ms, trace);
    let user_id = asked.user_id();
    let page = pagecache::page_for(rule.and_then(|r| r.page()), req, config, user_id);
    let probe = pagecache::probe(page.as_deref(), req, config, user_id);
    let mut errors = Vec::new();
    let admitted = guard::admit(asked, req, config, svc.store, probe, &mut errors).await;
    for e in errors.drain(..) {
        svc.note_error(e);
    }
    let mut admitted = admitted?;
    if let Some(o) = &admitted.outcome {
        svc.db.vouch_schema(o.schema_version);
    }
    let headers = std::mem::take(&mut admitted.response_headers);
    if let Some(mut resp) = pagecache::hit(admitted.outcome.as_mut()) {
        resp.headers.extend(headers);
        return Ok(resp);
    }

    let token = admitted.claims.take().zip(admitted.token_digest.take());
    let cx = Ctx {
        config,
        keys,
        db: svc.db,
        store: svc.store,
        random: svc.random,
        now_ms: svc.now_ms,
        user: token.as_ref().map(|(claims, _)| claims.user_id),
        token,
        errors: svc.errors,
    };
    let mut result = routes::dispatch(route, req, &cx).await;
    let outcome = admitted.outcome.as_ref();
    if let Ok(resp) = &mut result {
        let kept = pagecache::keep(page.as_deref(), outcome, resp, config, svc.store).await;
        errors.extend(kept);
    }
    let succeeded = result.as_ref().is_ok_and(Response::is_success);
    if let (Route::Api(resource, action), Some(user)) = (route, user_id) {
        let since = outcome.map(|o| o.data_version);
        let written = (since, succeeded);
        errors
            .extend(data_written(config, svc.db, svc.store, user, resource, action, written).await);
    }
    let vouched = outcome.map(|o| o.schema_version);
    if let Some(e) = record_schema(svc.db, svc.store, vouched).await {
        errors.push(e);
    }
    guard::refund(&admitted, succeeded, svc.store, &mut errors).await;
    for e in errors {
        svc.note_error(e);
    }
    match result {
        Ok(mut resp) => {
            resp.headers.extend(headers);
            Ok(resp)
        }
        Err(e) => Err((e, headers)),
    }
}

#[cfg(test)]
mod tests {
    use crate::http::Request;
    use crate::routes::resources::{self, Action};
    use crate::rules::{Routes, DEFAULT_ROUTES};

    /// The guard's default rules name each list's first page as the API names the page it
    /// reads back after a write, or no write would ever hand the next read its page.
    #[test]
    fn the_guard_names_the_pages_the_api_reads_back() {
        let routes = Routes::parse(DEFAULT_ROUTES).expect("parses");
        for path in [
            "/api/inventory",
            "/api/recipes",
            "/api/favorites",
            "/api/collections",
        ] {
            let (resource, action) = resources::resolve("GET", path).unwrap().unwrap();
            assert_eq!(action, Action::List);
            let req = Request::new("GET".into(), path, Vec::new(), Vec::new());
            let spec = routes.find("GET", path).and_then(|r| r.page());
            let named = spec.and_then(|s| s.page_name(&req));
            assert_eq!(named, Some(resources::first_page_name(resource)), "{path}");
        }
    }
}
