//! The route table: what each path is, whether it needs a token, which limits apply.

pub mod auth;
pub mod health;
pub mod import;
pub mod metrics;
pub mod resources;

use crate::api::Ctx;
use crate::error::ApiError;
use crate::http::{Request, Response};
use resources::{Action, Resource};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Health,
    Signup,
    Login,
    Me,
    Logout,
    LogoutAll,
    OpenApi,
    Metrics,
    Api(Resource, Action),
}

impl Route {
    pub fn needs_token(self) -> bool {
        matches!(
            self,
            Self::Me | Self::Logout | Self::LogoutAll | Self::Api(..)
        )
    }

    /// Credential-guessing routes: the auth limit applies, and successes are refunded.
    pub fn is_login(self) -> bool {
        matches!(self, Self::Signup | Self::Login)
    }

    /// The route's pattern, for logs: ids as `:id`, never the raw path.
    pub fn pattern(self) -> String {
        let base = |r: Resource| match r {
            Resource::Inventory => "/api/inventory",
            Resource::Recipes => "/api/recipes",
            Resource::Favorites => "/api/favorites",
            Resource::Collections => "/api/collections",
        };
        match self {
            Self::Health => "/health".into(),
            Self::Signup => "/auth/signup".into(),
            Self::Login => "/auth/login".into(),
            Self::Me => "/auth/me".into(),
            Self::Logout => "/auth/logout".into(),
            Self::LogoutAll => "/auth/logout-all".into(),
            Self::OpenApi => "/openapi.json".into(),
            Self::Metrics => "/metrics".into(),
            Self::Api(r, Action::List | Action::Create) => base(r).into(),
            Self::Api(r, Action::Update(_) | Action::Delete(_)) => format!("{}/:id", base(r)),
            Self::Api(r, Action::Import) => format!("{}/import", base(r)),
            Self::Api(r, Action::DeleteAll) => format!("{}/all", base(r)),
        }
    }

    /// Routes that read Redis and SQLite themselves rather than through the limiter.
    pub fn is_unlimited(self) -> bool {
        matches!(self, Self::Health | Self::OpenApi | Self::Metrics)
    }
}

/// Matches a method and path; unknown paths are 404, known paths with another method 405.
pub fn resolve(method: &str, path: &str) -> Result<Route, ApiError> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    if let Some(api) = resources::resolve(method, path) {
        return api.map(|(resource, action)| Route::Api(resource, action));
    }
    // Each path answers one method here (GET also answers HEAD).
    let (allowed, route) = match path {
        "/health" => ("GET", Route::Health),
        "/openapi.json" => ("GET", Route::OpenApi),
        "/metrics" => ("GET", Route::Metrics),
        "/auth/signup" => ("POST", Route::Signup),
        "/auth/login" => ("POST", Route::Login),
        "/auth/me" => ("GET", Route::Me),
        "/auth/logout" => ("POST", Route::Logout),
        "/auth/logout-all" => ("POST", Route::LogoutAll),
        _ => return Err(not_found(method, path)),
    };
    match (allowed, method) {
        (m, _) if m == method => Ok(route),
        ("GET", "HEAD") => Ok(route),
        ("GET", _) => Err(ApiError::MethodNotAllowed("GET, HEAD")),
        _ => Err(ApiError::MethodNotAllowed("POST")),
    }
}

pub(crate) fn not_found(method: &str, path: &str) -> ApiError {
    let shown: String = path.chars().take(200).collect();
    let method: String = method.chars().take(16).collect();
    ApiError::NotFound(format!("Route {method} {shown} not found"))
}

pub async fn dispatch(route: Route, req: &Request, cx: &Ctx<'_>) -> Result<Response, ApiError> {
    match route {
        Route::Health => Ok(health::health(cx).await),
        Route::Signup => auth::signup(req, cx).await,
        Route::Login => auth::login(req, cx),
        Route::Me => auth::me(cx),
        Route::Logout => auth::logout(cx).await,
        Route::LogoutAll => auth::logout_all(cx).await,
        Route::OpenApi => Ok(openapi()),
        Route::Metrics => metrics::metrics(req, cx).await,
        Route::Api(resource, action) => resources::dispatch(resource, action, req, cx),
    }
}

/// The OpenAPI description (`openapi.yaml`, converted to JSON at build time).
fn openapi() -> Response {
    let mut resp = Response {
        status: 200,
        headers: Vec::new(),
        body: include_str!(concat!(env!("OUT_DIR"), "/openapi.json"))
            .as_bytes()
            .to_vec(),
    };
    resp.set_header("content-type", "application/json");
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution() {
        assert_eq!(resolve("GET", "/health"), Ok(Route::Health));
        assert_eq!(resolve("POST", "/auth/login/"), Ok(Route::Login));
        assert_eq!(
            resolve("GET", "/auth/login"),
            Err(ApiError::MethodNotAllowed("POST"))
        );
        assert!(matches!(
            resolve("GET", "/nope"),
            Err(ApiError::NotFound(_))
        ));
    }
}
