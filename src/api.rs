//! The AlcheMix API alone, behind edge-guard (Spin 4.1 middleware). The guard has named the
//! client, charged the limits and checked the token and its revocation, and it settles the
//! answer: the login refund, the RateLimit, CORS and security headers, the request's log line.
//! What is left here is the route's own work, and telling the store the database schema it
//! verified. Nothing reaches this component except through the guard: Spin's composition
//! exports its handler to the guard alone.

use std::cell::RefCell;

use crate::chain::{
    DATA_VERSION_HEADER, REQUEST_ID_HEADER, ROUTE_HEADER, SCHEMA_HEADER, USER_HEADER,
};
use crate::config::Config;
use crate::db::schema;
use crate::db::Database;
use crate::error::ApiError;
use crate::host;
use crate::http::{Request, Response};
use crate::requestlog;
use crate::routes::resources::{self, Action, Resource};
use crate::routes::{self, Route};
use crate::store::redis::RedisLink;
use crate::store::{self, page_key, PageAt, Store, MAX_PAGE_BYTES};
use crate::token::{self, Claims, Keys};

/// Answers a request the guard admitted; the store is Redis through `link` (logout records
/// revocations there itself, a write retires the user's cached pages), or the embedded one in
/// `db`.
pub async fn serve(
    req: &Request,
    config: &Config,
    db: &dyn Database,
    link: &dyn RedisLink,
) -> Response {
    let now_ms = host::now_ms();
    let store = store::open(config, db, link, now_ms);
    let errors = RefCell::new(Vec::new());
    let vouched = req
        .header(SCHEMA_HEADER)
        .and_then(|v| v.parse::<i64>().ok());
    if let Some(version) = vouched {
        db.vouch_schema(version);
    }
    let route = routes::resolve(&req.method, &req.path);
    let pattern = route.as_ref().ok().map(|r| r.pattern());
    let result = match route {
        Ok(route) => answer(route, req, config, db, &*store, now_ms, &errors).await,
        Err(e) => Err(e),
    };
    if let Some(e) = record_schema(db, &*store, vouched).await {
        errors.borrow_mut().push(e);
    }
    let mut resp = result.unwrap_or_else(|e| {
        if let Some(detail) = e.log_detail() {
            errors.borrow_mut().push(detail.to_string());
        }
        e.into_response()
    });
    if let Some(pattern) = pattern {
        resp.set_header(ROUTE_HEADER, pattern);
    }
    let request_id = req.header(REQUEST_ID_HEADER);
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
    let keys = config.keys();
    let asks_token = config
        .routes
        .find(&req.method, &req.path)
        .is_some_and(|rule| rule.asks_token());
    let (user, token) = match (asks_token, route) {
        // A logout revokes the token itself: its digest and expiry come from the token, which
        // must be the one the guard vouched for.
        (true, Route::Logout) => {
            let (claims, digest) = vouched(req, keys, now_ms / 1000)?;
            (Some(claims.user_id), Some((claims, digest)))
        }
        (true, _) => (Some(guard_user(req)?), None),
        (false, _) => (None, None),
    };
    let cx = Ctx {
        config,
        keys,
        db,
        store,
        random: &host::random,
        now_ms,
        user,
        token,
        errors,
    };
    let result = routes::dispatch(route, req, &cx).await;
    if let (Route::Api(resource, action), Some(user)) = (route, user) {
        let since = req
            .header(DATA_VERSION_HEADER)
            .and_then(|v| v.parse::<i64>().ok());
        let succeeded = result.as_ref().is_ok_and(Response::is_success);
        let written = (since, succeeded);
        let failed = data_written(config, db, store, user, resource, action, written).await;
        errors.borrow_mut().extend(failed);
    }
    result
}

/// After a request that may have written `resource` (whatever it answered: a refused write
/// may still have changed rows), moves the user's data version on so no page cached before it
/// is served again, and hands the cache the list's first page, read back on the write's own
/// connection, so the read that usually follows a write needs no database. `written`: the
/// data version the guard's check read (if it read one), and whether the write succeeded; only
/// a successful write hands a page. What failed is returned for the log; the answer stands
/// either way.
pub async fn data_written(
    config: &Config,
    db: &dyn Database,
    store: &dyn Store,
    user: i64,
    resource: Resource,
    action: Action,
    (since, succeeded): (Option<i64>, bool),
) -> Vec<String> {
    let since = since.filter(|_| succeeded);
    let mut failed = Vec::new();
    let Some(ttl_ms) = config.page_cache_ms.filter(|_| action != Action::List) else {
        return failed;
    };
    let read_back = since.and_then(|_| match resources::first_page(resource, db, user) {
        Ok(Some((name, body))) if body.len() <= MAX_PAGE_BYTES => {
            Some((page_key(user, &name), body))
        }
        Ok(_) => None,
        Err(e) => {
            failed.push(format!("could not read back a written page: {e:?}"));
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
    if let Err(e) = store.data_changed(user, page).await {
        failed.push(format!(
            "could not invalidate user {user}'s cached pages: {e:?}"
        ));
    }
    failed
}

/// The user the guard in front verified the token of (and checked its revocation), on a route
/// that asks for a token. The API takes the guard's word: the chain is the only way in, and a
/// request that did not come through the guard carries no `x-edge-user-id` (the guard removes
/// any a client sends).
pub fn guard_user(req: &Request) -> Result<i64, ApiError> {
    req.header(USER_HEADER)
        .and_then(|user| user.parse().ok())
        .ok_or(ApiError::Unauthorized("The request did not pass the guard"))
}

/// The claims and digest of the token a request carries, verified again here (no store call:
/// the guard checked its revocation), for a route that acts on the token itself; it must be
/// the token of the user the guard vouched for.
pub fn vouched(req: &Request, keys: &Keys, now: i64) -> Result<(Claims, String), ApiError> {
    let (claims, digest) = token::authenticate(req, keys, now)?;
    if guard_user(req)? == claims.user_id {
        Ok((claims, digest))
    } else {
        Err(ApiError::Unauthorized("The request did not pass the guard"))
    }
}

/// What the handlers may use.
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub keys: &'a Keys,
    pub db: &'a dyn Database,
    pub store: &'a dyn Store,
    pub random: &'a dyn Fn(&mut [u8]),
    pub now_ms: i64,
    /// The user whose token the guard verified, on a route that asks for one.
    pub user: Option<i64>,
    /// That token's claims and digest, where the route acts on the token itself (a logout).
    pub token: Option<(Claims, String)>,
    pub errors: &'a RefCell<Vec<String>>,
}

impl Ctx<'_> {
    /// A failure that does not decide the answer, logged with the request's id.
    pub fn note_error(&self, message: String) {
        self.errors.borrow_mut().push(message);
    }

    pub fn user(&self) -> Result<i64, ApiError> {
        self.user
            .ok_or(ApiError::Unauthorized("No authorization token provided"))
    }

    /// The request's token: its claims and digest.
    pub fn token(&self) -> Result<(&Claims, &str), ApiError> {
        self.token
            .as_ref()
            .map(|(claims, digest)| (claims, digest.as_str()))
            .ok_or(ApiError::Unauthorized("No authorization token provided"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_takes_only_the_user_and_token_the_guard_vouched_for() {
        let keys = Keys::new(b"test-secret-test-secret-test-secret-0123");
        let now = 1_900_000_000;
        let token = keys.sign(&token::tests::claims(now));
        let request = |user: Option<&str>| {
            let mut headers = vec![("authorization".to_string(), format!("Bearer {token}"))];
            headers.extend(user.map(|u| (USER_HEADER.to_string(), u.to_string())));
            Request::new("GET".into(), "/api/inventory", headers, Vec::new())
        };
        let (claims, _) = vouched(&request(Some("7")), &keys, now).expect("vouched for");
        assert_eq!(claims.user_id, 7);
        assert_eq!(guard_user(&request(Some("7"))), Ok(7));
        assert_eq!(
            guard_user(&request(None)),
            Err(ApiError::Unauthorized("The request did not pass the guard"))
        );
        // Not through the guard, or another user's word: refused.
        for user in [None, Some("8")] {
            assert_eq!(
                vouched(&request(user), &keys, now).map(|_| ()),
                Err(ApiError::Unauthorized("The request did not pass the guard"))
            );
        }
        // The guard's word does not make a bad token good.
        let forged = Request::new(
            "GET".into(),
            "/api/inventory",
            vec![
                ("authorization".into(), "Bearer not-a-token".into()),
                (USER_HEADER.into(), "7".into()),
            ],
            Vec::new(),
        );
        assert!(vouched(&forged, &keys, now).is_err());
    }
}
