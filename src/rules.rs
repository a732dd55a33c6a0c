//! What each route asks of a request, as data (`guard_routes`): the limits it charges, whether
//! it needs a token, whether its answers are pages the cache keeps. The guard enforces it; the
//! app behind reads the same table (which routes come with a verified user); neither owns it.

use crate::config::RoutePattern;
use crate::pagecache::PageSpec;

/// AlcheMix's routes: logins and signups count per address (and logins per account too),
/// every authenticated route counts per user, and everything under `/api/` per address too.
/// Its list reads are pages the cache keeps (named as the API names the page it reads back
/// after a write).
pub const DEFAULT_ROUTES: &str = "POST /auth/signup = auth; POST /auth/login = auth login; \
     GET /auth/me = user token; POST /auth/logout = user token; \
     POST /auth/logout-all = user token; \
     GET /api/inventory = api user token cache:bottles:page=1:limit=50; \
     GET /api/recipes = api user token cache:recipes:page=1:limit=50; \
     GET /api/favorites = api user token cache:favorites; \
     GET /api/collections = api user token cache:collections; \
     /api/* = api user token";

/// What one route asks: which of the configured policies it charges, and whether it needs a
/// valid, unrevoked token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub(crate) pattern: RoutePattern,
    /// Per address; a success is refunded (a credential-guessing route).
    pub(crate) auth: bool,
    /// Per address and account (the JSON body's `email`); a success clears it.
    pub(crate) login: bool,
    /// Per address.
    pub(crate) api: bool,
    /// Per verified user.
    pub(crate) user: bool,
    pub(crate) token: bool,
    /// Its GET answers are the user's pages, which the page cache may keep.
    cache: Option<PageSpec>,
}

/// The routes in order; the first that matches a request decides, and a request no rule
/// matches passes with no limit and no token asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes(Vec<Rule>);

impl Routes {
    /// `<route> = <word> ...; ...`, a route as in `fail_open_routes` (`POST /auth/login`,
    /// `/api/*`), words among `auth`, `login`, `api`, `user`, `token` and `cache:<page>`
    /// (see [`PageSpec::parse`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (route, words) = entry
                .split_once('=')
                .ok_or_else(|| format!("guard_routes: {entry:?} is not \"<route> = <words>\""))?;
            let pattern = RoutePattern::parse(route).ok_or_else(|| {
                format!(
                    "guard_routes: {:?} is not a route like \"GET /api/*\"",
                    route.trim()
                )
            })?;
            let mut rule = Rule {
                pattern,
                auth: false,
                login: false,
                api: false,
                user: false,
                token: false,
                cache: None,
            };
            for word in words.split_whitespace() {
                if let Some(page) = word.strip_prefix("cache:") {
                    rule.cache = Some(PageSpec::parse(page)?);
                    continue;
                }
                let flag = match word {
                    "auth" => &mut rule.auth,
                    "login" => &mut rule.login,
                    "api" => &mut rule.api,
                    "user" => &mut rule.user,
                    "token" => &mut rule.token,
                    other => {
                        return Err(format!(
                            "guard_routes: {other:?} is not one of auth, login, api, user, token, cache:<page>"
                        ))
                    }
                };
                *flag = true;
            }
            if rule.user && !rule.token {
                return Err(format!(
                    "guard_routes: {:?} counts per user but asks for no token",
                    route.trim()
                ));
            }
            // Pages are the user's, and a cached answer is a GET's.
            if rule.cache.is_some() && !(rule.token && rule.pattern.method() == Some("GET")) {
                return Err(format!(
                    "guard_routes: {:?} keeps pages but is not a GET route that asks for a token",
                    route.trim()
                ));
            }
            rules.push(rule);
        }
        Ok(Self(rules))
    }

    /// The rule of a request. `HEAD` meets the rules of `GET` and trailing slashes are dropped,
    /// as apps answer them alike: a route asked for a token is not open as `HEAD /x` or `/x/`.
    pub fn find(&self, method: &str, path: &str) -> Option<&Rule> {
        let method = if method == "HEAD" { "GET" } else { method };
        let path = match path.trim_end_matches('/') {
            "" => "/",
            trimmed => trimmed,
        };
        self.0.iter().find(|r| r.pattern.matches(method, path))
    }

    /// Whether any route's answers are pages the cache keeps: only then does the app behind
    /// take part in the cache, and need the data version on its writes.
    pub fn keeps_pages(&self) -> bool {
        self.0.iter().any(|r| r.cache.is_some())
    }
}

impl Rule {
    /// Whether the route asks for a valid, unrevoked token.
    pub fn asks_token(&self) -> bool {
        self.token
    }

    /// The pages its answers are, if the cache may keep them.
    pub fn page(&self) -> Option<&PageSpec> {
        self.cache.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_rule_decides() {
        let routes = Routes::parse("POST /auth/login = auth login; /api/* = api user token")
            .expect("parses");
        let login = routes.find("POST", "/auth/login").expect("login rule");
        assert!(login.auth && login.login && !login.token);
        let api = routes.find("GET", "/api/inventory").expect("api rule");
        assert!(api.api && api.user && api.token && !api.auth);
        assert!(routes.find("GET", "/auth/login").is_none());
        assert!(routes
            .find("POST", "/auth/login//")
            .is_some_and(|r| r.login));
        assert!(routes
            .find("HEAD", "/api/inventory")
            .is_some_and(|r| r.token));
        assert!(routes.find("GET", "/elsewhere").is_none());
    }

    #[test]
    fn the_default_routes_parse() {
        let routes = Routes::parse(DEFAULT_ROUTES).expect("parses");
        assert!(routes.find("POST", "/auth/signup").is_some_and(|r| r.auth));
        assert!(routes.find("GET", "/api/recipes").is_some_and(|r| r.token));
        assert!(routes.find("GET", "/health").is_none());
        assert!(routes.keeps_pages());
        assert!(!Routes::parse("/x = api").expect("parses").keeps_pages());
    }

    #[test]
    fn bad_routes_are_named() {
        let err = Routes::parse("/api/* = api tokens").expect_err("unknown word");
        assert!(err.contains("\"tokens\""), "{err}");
        let err = Routes::parse("api = api").expect_err("no leading slash");
        assert!(err.contains("\"api\""), "{err}");
        let err = Routes::parse("/api/*").expect_err("no words");
        assert!(err.contains("<route> = <words>"), "{err}");
        let err = Routes::parse("/api/* = user").expect_err("user without token");
        assert!(err.contains("no token"), "{err}");
        for pageless in [
            "/x = token cache:x",
            "POST /x = token cache:x",
            "GET /x = cache:x",
        ] {
            let err = Routes::parse(pageless).expect_err(pageless);
            assert!(err.contains("keeps pages"), "{err}");
        }
        let err = Routes::parse("GET /x = token cache:x:page").expect_err("no default");
        assert!(err.contains("\"page\""), "{err}");
    }
}
