//! The guard and the API in one component (the WASI 0.2 build, and `spin.toml`): request id,
//! client identity, route, the guard's check (limits, revocation and the page cache in one store
//! call), the handler, the response headers. Every failure becomes an `ApiError` here.

use std::cell::RefCell;

use crate::answer::{decided, finish, log, new_request_id, Headers};
use crate::api::{record_schema, Ctx};
use crate::config::Config;
use crate::cors;
use crate::db::Database;
use crate::error::ApiError;
use crate::guard;
use crate::host;
use crate::http::{Request, Response};
use crate::requestlog::{Decision, Trace};
use crate::routes::resources::{self, Action, Resource};
use crate::routes::{self, Route};
use crate::store::redis::RedisLink;
use crate::store::{self, page_key, CacheProbe, PageAt, Store};

/// Says whether a list page came from the page cache (`hit`) or the database (`miss`).
pub const CACHE_HEADER: &str = "x-edge-cache";

/// Larger pages are served from the database every time rather than held in Redis.
const MAX_CACHED_PAGE_BYTES: usize = 256 * 1024;

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
    let asked = guard::ask(req, config, &keys, rule, svc.now_ms, trace);
    let user_id = asked.user_id();
    let page_key = match (route, user_id, config.page_cache_ms) {
        (Route::Api(resource, action), Some(user), Some(_)) => {
            resources::page_name(resource, action, req).map(|name| page_key(user, &name))
        }
        _ => None,
    };
    let cache = match (&page_key, route, config.page_cache_ms) {
        (Some(key), _, _) => CacheProbe::Page(key),
        (None, Route::Api(_, action), Some(_)) if action != Action::List => CacheProbe::Version,
        _ => CacheProbe::None,
    };
    let mut errors = Vec::new();
    let admitted = guard::admit(asked, req, config, svc.store, cache, &mut errors).await;
    for e in errors.drain(..) {
        svc.note_error(e);
    }
    let mut admitted = admitted?;
    if let Some(o) = &admitted.outcome {
        svc.db.vouch_schema(o.schema_version);
    }
    let headers = std::mem::take(&mut admitted.response_headers);
    let cached = admitted.outcome.as_mut().and_then(|o| o.page.take());
    if let Some(body) = cached {
        let mut resp = Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        };
        resp.set_header(CACHE_HEADER, "hit");
        resp.headers.extend(headers);
        return Ok(resp);
    }

    let cx = Ctx {
        config,
        keys: &keys,
        db: svc.db,
        store: svc.store,
        random: svc.random,
        now_ms: svc.now_ms,
        claims: admitted.claims.take(),
        token_digest: admitted.token_digest.take(),
        errors: svc.errors,
    };
    let mut result = routes::dispatch(route, req, &cx).await;
    let outcome = &admitted.outcome;
    if let (Some(key), Some(o), Ok(resp), Some(ttl_ms)) =
        (&page_key, outcome, &mut result, config.page_cache_ms)
    {
        if resp.status == 200 && resp.body.len() <= MAX_CACHED_PAGE_BYTES {
            let page = PageAt {
                key,
                version: o.data_version,
                body: &resp.body,
                ttl_ms,
            };
            if let Err(e) = svc.store.keep_page(page).await {
                svc.note_error(format!("could not cache a page: {e:?}"));
            }
        }
        resp.set_header(CACHE_HEADER, "miss");
    }
    if let (Route::Api(resource, action), Some(user), Some(ttl_ms)) =
        (route, user_id, config.page_cache_ms)
    {
        // Whatever a write answered, it may have changed the user's rows.
        if action != Action::List {
            let written = result.as_ref().is_ok_and(Response::is_success);
            let since = outcome.as_ref().map(|o| o.data_version);
            write_done(svc, user, resource, since.filter(|_| written), ttl_ms).await;
        }
    }
    let vouched = outcome.as_ref().map(|o| o.schema_version);
    if let Some(e) = record_schema(svc.db, svc.store, vouched).await {
        svc.note_error(e);
    }
    let succeeded = result.as_ref().is_ok_and(Response::is_success);
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

/// Retires the user's cached pages after a write, handing the cache the written list's first
/// page (read back on the write's own connection) so the read that usually follows a write is
/// served from the cache. `since`: the data version the write's check read, if it succeeded.
async fn write_done(
    svc: &Services<'_>,
    user: i64,
    resource: Resource,
    since: Option<i64>,
    ttl_ms: u64,
) {
    let read_back = since.and_then(|_| match resources::first_page(resource, svc.db, user) {
        Ok(Some((name, body))) if body.len() <= MAX_CACHED_PAGE_BYTES => {
            Some((page_key(user, &name), body))
        }
        Ok(_) => None,
        Err(e) => {
            svc.note_error(format!("could not read back a written page: {e:?}"));
            None
        }
    });
    let page = since
        .zip(read_back.as_ref())
        .map(|(version, (key, body))| PageAt {
            key,
            version,
            body,
            ttl_ms,
        });
    if let Err(e) = svc.store.data_changed(user, page).await {
        svc.note_error(format!(
            "could not invalidate user {user}'s cached pages: {e:?}"
        ));
    }
}
