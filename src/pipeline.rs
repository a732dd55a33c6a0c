//! The request path: request id, client identity, route, limits + revocation (one store call),
//! authentication, handler, response headers. Every failure becomes an `ApiError` here.

use std::cell::RefCell;

use crate::config::Config;
use crate::cors;
use crate::db::schema;
use crate::db::Database;
use crate::error::ApiError;
use crate::guard;
use crate::host;
use crate::http::{Request, Response};
use crate::identity;
use crate::policy::Policy;
use crate::ratelimit::{self, admits, Quota};
use crate::requestlog::{self, Decision, Entry, Trace};
use crate::routes::resources::{self, Action, Resource};
use crate::routes::{self, Route};
use crate::store::redis::{RedisLink, RedisStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{page_key, CacheProbe, Limit, Outcome, PageAt, Store, StoreError};
use crate::token::{self, Claims, Keys, TokenError};

/// Says whether a list page came from the page cache (`hit`) or the database (`miss`).
pub const CACHE_HEADER: &str = "x-edge-cache";

/// Larger pages are served from the database every time rather than held in Redis.
const MAX_CACHED_PAGE_BYTES: usize = 256 * 1024;

/// What the handlers may use.
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub keys: &'a Keys,
    pub db: &'a dyn Database,
    pub store: &'a dyn Store,
    pub random: &'a dyn Fn(&mut [u8]),
    pub now_ms: i64,
    pub claims: Option<Claims>,
    pub token_digest: Option<String>,
    pub errors: &'a RefCell<Vec<String>>,
}

impl Ctx<'_> {
    /// A failure that does not decide the answer, logged with the request's id.
    pub fn note_error(&self, message: String) {
        self.errors.borrow_mut().push(message);
    }

    pub fn user(&self) -> Result<&Claims, ApiError> {
        self.claims
            .as_ref()
            .ok_or(ApiError::Unauthorized("No authorization token provided"))
    }
}

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

pub fn store_error(e: StoreError) -> ApiError {
    let detail = match e {
        StoreError::Unavailable(detail) => format!("store unavailable: {detail}"),
        StoreError::Misconfigured(detail) => format!("store misconfigured: {detail}"),
    };
    ApiError::Unavailable {
        message: "Service temporarily unavailable, please retry",
        retry_after: crate::error::RETRY_SECS,
        detail,
    }
}

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

/// Serves a request once it is read, in either world: the store the configuration names (Redis
/// through `link`, or the embedded one in `db`), then the pipeline.
pub async fn serve(
    req: &Request,
    config: &Config,
    db: &dyn Database,
    link: &dyn RedisLink,
) -> Response {
    let now_ms = host::now_ms();
    let store = store_for(config, db, link, now_ms);
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

/// The store the configuration names: Redis through `link`, or the embedded one in `db`.
pub fn store_for<'a>(
    config: &Config,
    db: &'a dyn Database,
    link: &'a dyn RedisLink,
    now_ms: i64,
) -> Box<dyn Store + 'a> {
    if config.redis_address.is_empty() {
        Box::new(SqliteStore::new(db, now_ms))
    } else {
        Box::new(RedisStore::new(link, db, config.token_ttl_secs + 60))
    }
}

/// The answer to a request that could not be read (a body too large or broken).
pub fn unreadable(e: ApiError) -> Response {
    let mut resp = e.into_response();
    finish(&mut resp, None, &[], new_request_id(&host::random));
    resp
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
        .unwrap_or_else(|| client_subject(req, config));
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

async fn run(
    req: &Request,
    config: &Config,
    svc: &Services<'_>,
    trace: &mut Trace,
) -> Result<Response, (ApiError, Headers)> {
    let route = routes::resolve(&req.method, &req.path).map_err(|e| (e, Vec::new()))?;
    trace.route = Some(route.pattern());
    let rule = config.routes.find(&req.method, &req.path);
    let keys = keys(config);
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

/// Tells the store the schema this request verified, when the version it vouched for
/// (`vouched`, read by the request's check) is older; what failed is returned for the log.
pub async fn record_schema(
    db: &dyn Database,
    store: &dyn Store,
    vouched: Option<i64>,
) -> Option<String> {
    let latest = schema::latest(db.dialect());
    if !db.verified_schema() || vouched.is_none_or(|v| v >= latest) {
        return None;
    }
    let e = store.note_schema(latest).await.err()?;
    Some(format!("could not record the schema version: {e:?}"))
}

/// The keys tokens are verified with: the secret, and the one before a rotation.
pub fn keys(config: &Config) -> Keys {
    let keys = Keys::new(config.jwt_secret.expose().as_bytes());
    match &config.jwt_previous_secret {
        Some(previous) => keys.accepting_previous(previous.expose().as_bytes()),
        None => keys,
    }
}

/// A verified token's standing in the store: revoked, or below its user's version floor.
pub fn token_standing(claims: &Claims, o: &Outcome) -> Result<(), ApiError> {
    if o.revoked {
        return Err(ApiError::Unauthorized(
            "Token has been revoked. Please login again.",
        ));
    }
    if claims.token_version < o.min_version {
        return Err(ApiError::Unauthorized(
            "Token has been invalidated. Please login again.",
        ));
    }
    Ok(())
}

pub fn push(limits: &mut Vec<Limit>, policy: &Option<Policy>, subject: &str) {
    if let Some(policy) = policy {
        limits.push(Limit {
            policy: policy.clone(),
            subject: subject.to_string(),
            cost: 1,
        });
    }
}

pub fn client_subject(req: &Request, config: &Config) -> String {
    let peer = req
        .header("spin-client-addr")
        .and_then(identity::parse_peer);
    match peer {
        Some(peer) => {
            let ip =
                identity::client_ip(peer, req.header("x-forwarded-for"), &config.trusted_proxies);
            identity::subject(ip, config.ipv6_subnet)
        }
        // Spin always sets the header; without it every such client shares one budget.
        None => "unknown".into(),
    }
}

pub fn authenticate(req: &Request, keys: &Keys, now: i64) -> Result<(Claims, String), ApiError> {
    let token = token::bearer(req.header("authorization")).map_err(|e| match e {
        TokenError::Missing => ApiError::Unauthorized("No authorization token provided"),
        TokenError::Invalid => ApiError::Unauthorized("Invalid or expired token"),
    })?;
    let claims = keys
        .verify(token, now)
        .map_err(|_| ApiError::Unauthorized("Invalid or expired token"))?;
    Ok((claims, token::digest(token)))
}

/// A successful login or signup gives back its own per-IP unit (only failures stay counted,
/// and earlier failures from the address still count), and clears the account's failures.
/// Returns what failed, for the log: the answer stands either way.
pub async fn refund_login(limits: &[Limit], o: &Outcome, store: &dyn Store) -> Vec<String> {
    let mut failures = Vec::new();
    for (limit, window) in limits.iter().zip(&o.windows) {
        let result = match limit.policy.name {
            "auth" => store.refund(limit, window.slot).await,
            "login" => store.reset(limit, window.slot).await,
            _ => Ok(()),
        };
        if let Err(e) = result {
            failures.push(format!("settling a successful login failed: {e:?}"));
        }
    }
    failures
}

fn quotas<'a>(limits: &'a [Limit], o: &Outcome) -> Vec<(&'a Policy, Quota)> {
    limits
        .iter()
        .zip(&o.windows)
        .map(|(l, w)| (&l.policy, ratelimit::quota(&l.policy, w, o.admitted)))
        .collect()
}

pub fn limit_headers(limits: &[Limit], o: &Outcome) -> Headers {
    let items = quotas(limits, o);
    let Some((tightest, q)) = items.iter().min_by_key(|(_, q)| q.remaining) else {
        return Headers::new();
    };
    let policies: Vec<&Policy> = items.iter().map(|(p, _)| *p).collect();
    let reset_at = o.now_ms / 1000 + q.reset_secs as i64;
    vec![
        (
            "ratelimit-policy".into(),
            ratelimit::policy_header(&policies),
        ),
        ("ratelimit".into(), ratelimit::ratelimit_header(&items)),
        ("x-ratelimit-limit".into(), tightest.limit.to_string()),
        ("x-ratelimit-remaining".into(), q.remaining.to_string()),
        ("x-ratelimit-reset".into(), reset_at.to_string()),
    ]
}

pub fn too_many(limits: &[Limit], o: &Outcome) -> ApiError {
    let denied: Vec<(&Policy, Quota)> = limits
        .iter()
        .zip(&o.windows)
        .filter(|(l, w)| {
            !admits(
                l.policy.limit,
                l.policy.window_ms,
                w.prev,
                w.curr,
                w.elapsed_ms,
                l.cost,
            )
        })
        .map(|(l, w)| (&l.policy, ratelimit::quota(&l.policy, w, false)))
        .collect();
    // The policy a client waits longest for is the one it is told about.
    let Some((policy, quota)) = denied.iter().max_by_key(|(_, q)| q.reset_secs) else {
        return ApiError::Internal("a refusal without a refusing policy".into());
    };
    let retry_after = quota.reset_secs;
    let message = if denied.iter().any(|(p, _)| p.name == "auth") {
        format!(
            "Too many authentication attempts. Please try again in {} minute(s).",
            retry_after.div_ceil(60)
        )
    } else {
        format!("Rate limit exceeded. Try again in {retry_after} second(s).")
    };
    ApiError::TooManyRequests {
        message,
        retry_after,
        policy: policy.name,
        limit: policy.limit,
        window_secs: policy.window_secs(),
    }
}

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
