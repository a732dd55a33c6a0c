//! Configuration from Spin variables, parsed and validated once per request at the edge of the
//! pipeline; nothing below this module reads a variable.

use crate::db::Target;
use crate::identity::Cidr;
use crate::policy::{parse_duration_ms, Policy};
use crate::rules::{Routes, DEFAULT_ROUTES};
use crate::token::Keys;

pub const MIN_SECRET_BYTES: usize = 32;

/// Separates the values in the `settings` component variable (ASCII unit separator).
pub const SETTINGS_SEPARATOR: char = '\u{1f}';

/// Every application variable the edge reads, with its default (`None`: required), in the
/// order the manifest's `settings` template lists them.
pub const VARIABLES: &[(&str, Option<&str>)] = &[
    ("jwt_secret", None),
    ("redis_address", Some("redis://127.0.0.1:6379")),
    ("auth_rate_limit", Some("5/15m")),
    ("login_rate_limit", Some("5/15m")),
    ("api_rate_limit", Some("100/15m")),
    ("user_rate_limit", Some("100/15m")),
    ("token_ttl", Some("7d")),
    ("fail_open_routes", Some("")),
    ("trusted_proxies", Some("")),
    ("ipv6_subnet", Some("64")),
    ("cors_origins", Some("")),
    ("page_cache", Some("30s")),
    ("redis_username", Some("")),
    ("redis_password", Some("")),
    ("jwt_previous_secret", Some("")),
    ("redis_database", Some("0")),
    ("database_address", Some("")),
    ("database_name", Some("alchemix")),
    ("database_user", Some("alchemix")),
    ("database_password", Some("")),
    ("database_tls", Some("prefer")),
    ("metrics_token", Some("")),
    ("guard_routes", Some("")),
];

/// The longest a cached page may live; data version keys outlive it by far (store/redis.rs).
pub const MAX_PAGE_CACHE_MS: u64 = 3_600_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub jwt_secret: Secret,
    /// The keys made from the secrets, once per configuration rather than per request.
    keys: Keys,
    /// The secret before a rotation, while its tokens may still be in use.
    pub jwt_previous_secret: Option<Secret>,
    /// The URL the store connects to, with the credentials from `redis_username` and
    /// `redis_password` and the number from `redis_database` in it. Empty: no Redis; counters
    /// and revocations use the embedded store.
    pub redis_address: Secret,
    pub auth_limit: Option<Policy>,
    /// Failed logins per account and address; a successful login clears it.
    pub login_limit: Option<Policy>,
    pub api_limit: Option<Policy>,
    pub user_limit: Option<Policy>,
    pub token_ttl_secs: i64,
    /// Routes served without limits or revocation checks while the store is down.
    pub fail_open: Vec<RoutePattern>,
    pub trusted_proxies: Vec<Cidr>,
    pub ipv6_subnet: u8,
    pub cors_origins: Vec<String>,
    /// How long a list page stays in Redis for repeat reads; `None` ("off", or no Redis):
    /// every read goes to the database.
    pub page_cache_ms: Option<u64>,
    /// Where the API's data lives: the embedded SQLite database, or PostgreSQL.
    pub database: Target,
    /// The bearer token `GET /metrics` asks for; `None`: the endpoint does not exist.
    pub metrics_token: Option<Secret>,
    /// What each route asks of a request (limits, a token); empty `guard_routes`: AlcheMix's.
    pub routes: Routes,
}

/// A value no log may show, not even through `{:?}`: its `Debug` says only whether it is set.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<empty>"
        } else {
            "<secret>"
        })
    }
}

/// `METHOD /path`, `/path` or `/prefix/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    method: Option<String>,
    path: String,
    prefix: bool,
}

impl RoutePattern {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (method, path) = match text.split_once(' ') {
            Some((m, p)) => (Some(m.trim().to_ascii_uppercase()), p.trim()),
            None => (None, text),
        };
        if !path.starts_with('/') {
            return None;
        }
        let (path, prefix) = match path.strip_suffix('*') {
            Some(p) => (p.to_string(), true),
            None => (path.to_string(), false),
        };
        Some(Self {
            method,
            path,
            prefix,
        })
    }

    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && if self.prefix {
                path.starts_with(&self.path)
            } else {
                path == self.path
            }
    }
}

impl RoutePattern {
    /// The method it matches, if it names one.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The path it matches (`/api/*`), without its method: a log line's route.
    pub fn path_text(&self) -> String {
        let wildcard = if self.prefix { "*" } else { "" };
        format!("{}{wildcard}", self.path)
    }
}

impl std::fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(method) = &self.method {
            write!(f, "{method} ")?;
        }
        f.write_str(&self.path_text())
    }
}

/// The URL to open: `redis_address` names only where Redis is, because it is also the
/// manifest's `allowed_outbound_hosts` entry, which must be `scheme://host[:port]` (Spin refuses
/// a path, and a rule with credentials in it never matches); the credentials and the database
/// number are added here (Spin checks only the scheme, host and port of the URL it opens).
/// Errors never quote the password.
fn redis_url(
    address: &str,
    username: &str,
    password: &str,
    database: &str,
) -> Result<String, String> {
    let address = address.trim();
    if address.is_empty() {
        return Ok(String::new());
    }
    let database = match database.trim() {
        "" | "0" => String::new(),
        n => format!(
            "/{}",
            n.parse::<u32>().map_err(|_| format!(
                "redis_database: {n:?} is not a database number (0, 1, 2, ...)"
            ))?
        ),
    };
    if address.contains('@') {
        return Err(
            "redis_address must not carry credentials: set redis_username and \
             redis_password instead (an allowed_outbound_hosts entry with them never matches)"
                .into(),
        );
    }
    let shape_error = || {
        format!(
            "redis_address: {address:?} is not a URL like redis://host:6379 or \
             rediss://host:6380 (TLS needs its port; no path, which allowed_outbound_hosts \
             refuses: set redis_database for a database number)"
        )
    };
    let (scheme, rest) = address.split_once("://").ok_or_else(shape_error)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    // Spin knows redis's default port but not rediss's.
    let port_ok = scheme == "redis" || has_port;
    // A query or fragment is no allow-list entry either, and `#insecure` would switch off
    // certificate checks in Spin's Redis client.
    if !matches!(scheme, "redis" | "rediss")
        || authority.is_empty()
        || authority.contains(['/', '?', '#'])
        || !port_ok
    {
        return Err(shape_error());
    }
    if password.is_empty() {
        if !username.is_empty() {
            return Err("redis_username is set without redis_password".into());
        }
        return Ok(format!("{scheme}://{authority}{database}"));
    }
    Ok(format!(
        "{scheme}://{}:{}@{authority}{database}",
        percent_encode(username),
        percent_encode(password)
    ))
}

/// The PostgreSQL connection string, or `None` for the embedded database. `database_address`
/// names only where PostgreSQL is (`postgres://host[:port]`), because it is also the manifest's
/// `allowed_outbound_hosts` entry; the database name and credentials are added here,
/// percent-encoded. Errors never quote the password.
fn postgres_url(
    address: &str,
    name: &str,
    user: &str,
    password: &str,
    tls: &str,
) -> Result<Option<String>, String> {
    let address = address.trim();
    if address.is_empty() {
        return Ok(None);
    }
    let shape_error = || {
        format!(
            "database_address: {address:?} is not an address like postgres://host:5432 (no \
             credentials, database or options: those are database_user, database_password and \
             database_name)"
        )
    };
    let authority = address
        .strip_prefix("postgres://")
        .ok_or_else(shape_error)?;
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(shape_error());
    }
    if name.trim().is_empty() {
        return Err("database_name is empty: name the PostgreSQL database to use".into());
    }
    if user.trim().is_empty() {
        return Err("database_user is empty: name the PostgreSQL role to connect as".into());
    }
    let credentials = if password.is_empty() {
        percent_encode(user.trim())
    } else {
        format!(
            "{}:{}",
            percent_encode(user.trim()),
            percent_encode(password)
        )
    };
    // Spin verifies the server's certificate whenever TLS is on; `prefer` uses TLS when the
    // server offers it, so a server with a certificate Spin cannot verify needs `disable`.
    let tls = match tls.trim() {
        mode @ ("disable" | "prefer" | "require") => mode,
        other => {
            return Err(format!(
                "database_tls: {other:?} is not disable, prefer or require"
            ))
        }
    };
    Ok(Some(format!(
        "postgres://{credentials}@{authority}/{}?sslmode={tls}",
        percent_encode(name.trim())
    )))
}

/// Everything but RFC 3986's unreserved characters, so any password survives the URL.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits the `settings` component variable (every application variable joined by
/// [`SETTINGS_SEPARATOR`], so one host call per request reads them all) into a lookup.
pub fn settings_lookup(settings: &str) -> Result<Vec<(&'static str, &str)>, String> {
    let values: Vec<&str> = settings.split(SETTINGS_SEPARATOR).collect();
    if values.len() != VARIABLES.len() {
        return Err(format!(
            "the settings variable in spin.toml has {} values, expected {} ({})",
            values.len(),
            VARIABLES.len(),
            VARIABLES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(VARIABLES
        .iter()
        .zip(values)
        .map(|((name, _), value)| (*name, value))
        .collect())
}

impl Config {
    /// Reads and checks every variable; the error is a log line for the operator.
    /// Values are borrowed: every request parses the configuration anew (a fresh instance), so
    /// it copies only what it keeps.
    pub fn load<'a>(get: &dyn Fn(&str) -> Option<&'a str>) -> Result<Self, String> {
        let var = |name: &str| -> Result<&'a str, String> {
            match get(name) {
                Some(v) => Ok(v),
                None => VARIABLES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .and_then(|(_, d)| *d)
                    .ok_or_else(|| format!("variable {name} is required but has no value")),
            }
        };
        let jwt_secret = var("jwt_secret")?;
        if jwt_secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "jwt_secret is {} bytes; at least {MIN_SECRET_BYTES} are required \
                 (set SPIN_VARIABLE_JWT_SECRET to a long random value)",
                jwt_secret.len()
            ));
        }
        let metrics_token = match var("metrics_token")? {
            "" => None,
            t if t.len() < MIN_SECRET_BYTES => {
                return Err(format!(
                    "metrics_token is {} bytes; at least {MIN_SECRET_BYTES} are required \
                     (or leave it empty to turn /metrics off)",
                    t.len()
                ))
            }
            t => Some(Secret(t.to_string())),
        };
        let previous = var("jwt_previous_secret")?;
        let jwt_previous_secret = match previous.len() {
            0 => None,
            n if n < MIN_SECRET_BYTES => {
                return Err(format!(
                    "jwt_previous_secret is {n} bytes; at least {MIN_SECRET_BYTES} are required \
                     (or leave it empty)"
                ))
            }
            _ => Some(Secret(previous.to_string())),
        };
        let policy = |name: &'static str, var_name: &str| -> Result<Option<Policy>, String> {
            Policy::parse(name, var(var_name)?).map_err(|e| e.to_string())
        };
        let token_ttl = var("token_ttl")?;
        let token_ttl_ms = parse_duration_ms(token_ttl.trim())
            .ok_or_else(|| format!("token_ttl: {token_ttl:?} is not a duration like \"7d\""))?;
        let list = |name: &str| -> Result<Vec<String>, String> {
            Ok(var(name)?
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect())
        };
        let fail_open = list("fail_open_routes")?
            .iter()
            .map(|p| {
                RoutePattern::parse(p).ok_or_else(|| {
                    format!("fail_open_routes: {p:?} is not a route like \"GET /api/*\"")
                })
            })
            .collect::<Result<_, _>>()?;
        let trusted_proxies = list("trusted_proxies")?
            .iter()
            .map(|c| {
                Cidr::parse(c)
                    .ok_or_else(|| format!("trusted_proxies: {c:?} is not an address or CIDR"))
            })
            .collect::<Result<_, _>>()?;
        let subnet = var("ipv6_subnet")?;
        let ipv6_subnet = subnet
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=128).contains(p))
            .ok_or_else(|| format!("ipv6_subnet: {subnet:?} is not a prefix length 1-128"))?;
        let redis_address = redis_url(
            var("redis_address")?,
            var("redis_username")?,
            var("redis_password")?,
            var("redis_database")?,
        )?;
        let database = match postgres_url(
            var("database_address")?,
            var("database_name")?,
            var("database_user")?,
            var("database_password")?,
            var("database_tls")?,
        )? {
            None => Target::Embedded,
            Some(_) if redis_address.is_empty() => {
                return Err("database_address is set but redis_address is empty: with \
                            PostgreSQL, limit counters and revocations are kept in Redis \
                            (set redis_address)"
                    .into())
            }
            Some(url) => Target::Postgres(Secret(url)),
        };
        let page_cache = var("page_cache")?;
        let page_cache_ms = match page_cache.trim() {
            // The embedded store is the database itself: nothing to save by caching in it.
            _ if redis_address.is_empty() => None,
            "off" => None,
            text => Some(
                parse_duration_ms(text)
                    .filter(|ms| *ms <= MAX_PAGE_CACHE_MS)
                    .ok_or_else(|| {
                        format!(
                            "page_cache: {page_cache:?} is not \"off\" or a duration from 1s to 1h"
                        )
                    })?,
            ),
        };
        let keys = Keys::new(jwt_secret.as_bytes());
        let keys = match &jwt_previous_secret {
            Some(previous) => keys.accepting_previous(previous.expose().as_bytes()),
            None => keys,
        };
        Ok(Self {
            jwt_secret: Secret(jwt_secret.to_string()),
            keys,
            jwt_previous_secret,
            redis_address: Secret(redis_address),
            auth_limit: policy("auth", "auth_rate_limit")?,
            login_limit: policy("login", "login_rate_limit")?,
            api_limit: policy("api", "api_rate_limit")?,
            user_limit: policy("user", "user_rate_limit")?,
            token_ttl_secs: (token_ttl_ms / 1000) as i64,
            fail_open,
            trusted_proxies,
            ipv6_subnet,
            cors_origins: list("cors_origins")?,
            page_cache_ms,
            database,
            metrics_token,
            routes: Routes::parse(match var("guard_routes")?.trim() {
                "" => DEFAULT_ROUTES,
                text => text,
            })?,
        })
    }

    /// The keys tokens are verified with: the secret, and the one before a rotation.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The policies in force (those not turned `off`).
    pub fn policies(&self) -> Vec<&Policy> {
        [
            &self.auth_limit,
            &self.login_limit,
            &self.api_limit,
            &self.user_limit,
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    pub fn fails_open(&self, method: &str, path: &str) -> bool {
        self.fail_open.iter().any(|p| p.matches(method, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_is_named_by_address_with_the_credentials_added() {
        let secret = ("jwt_secret", "0123456789abcdef0123456789abcdef");
        let c = load(&[secret]).unwrap();
        assert_eq!(c.database, Target::Embedded);
        let c = load(&[
            secret,
            ("database_address", "postgres://db.internal:5433"),
            ("database_name", "cellar"),
            ("database_user", "edge"),
            ("database_password", "p@ss:w/rd"),
        ])
        .unwrap();
        match &c.database {
            Target::Postgres(url) => assert_eq!(
                url.expose(),
                "postgres://edge:p%40ss%3Aw%2Frd@db.internal:5433/cellar?sslmode=prefer"
            ),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{c:?}").contains("p@ss"));
        for bad in [
            "db.internal:5432",
            "postgresql://db:5432",
            "postgres://u:p@db:5432",
            "postgres://db:5432/cellar",
        ] {
            let e = load(&[
                secret,
                ("database_address", bad),
                ("database_password", "hunter2"),
            ])
            .unwrap_err();
            assert!(e.contains("database_address"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        let e = load(&[
            secret,
            ("redis_address", ""),
            ("database_address", "postgres://db:5432"),
        ])
        .unwrap_err();
        assert!(e.contains("redis_address"), "{e}");
    }

    fn load(vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&|name| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        })
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_metrics_token_is_long_or_absent() {
        let c = load(&[("jwt_secret", SECRET)]).unwrap();
        assert!(c.metrics_token.is_none());
        let e = load(&[("jwt_secret", SECRET), ("metrics_token", "short-token")]).unwrap_err();
        assert!(
            e.contains("metrics_token") && !e.contains("short-token"),
            "{e}"
        );
        let c = load(&[("jwt_secret", SECRET), ("metrics_token", SECRET)]).unwrap();
        assert!(!format!("{c:?}").contains(SECRET));
    }

    #[test]
    fn defaults_follow_the_seed() {
        let c = load(&[("jwt_secret", SECRET)]).unwrap();
        assert_eq!(c.auth_limit.unwrap().limit, 5);
        assert_eq!(c.api_limit.unwrap().window_ms, 900_000);
        assert_eq!(c.token_ttl_secs, 7 * 86_400);
        assert_eq!(c.redis_address.expose(), "redis://127.0.0.1:6379");
        assert!(c.fail_open.is_empty());
    }

    #[test]
    fn short_or_missing_secret_is_refused() {
        assert!(load(&[]).unwrap_err().contains("jwt_secret"));
        assert!(load(&[("jwt_secret", "short")]).unwrap_err().contains("32"));
    }

    #[test]
    fn debug_output_hides_every_secret() {
        let c = load(&[
            ("jwt_secret", SECRET),
            ("jwt_previous_secret", "fedcba9876543210fedcba9876543210"),
            ("redis_password", "hunter2-hunter2"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        for secret in [SECRET, "fedcba98", "hunter2", "127.0.0.1"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("<secret>") && shown.contains("page_cache_ms"),
            "{shown}"
        );
    }

    #[test]
    fn a_previous_secret_is_optional_but_never_short() {
        let c = load(&[("jwt_secret", SECRET)]).unwrap();
        assert_eq!(c.jwt_previous_secret, None);
        let old = "fedcba9876543210fedcba9876543210";
        let c = load(&[("jwt_secret", SECRET), ("jwt_previous_secret", old)]).unwrap();
        assert_eq!(
            c.jwt_previous_secret.as_ref().map(Secret::expose),
            Some(old)
        );
        let e = load(&[
            ("jwt_secret", SECRET),
            ("jwt_previous_secret", "old-and-short"),
        ])
        .unwrap_err();
        assert!(
            e.contains("jwt_previous_secret") && !e.contains("old-and-short"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let e = load(&[("jwt_secret", SECRET), ("auth_rate_limit", "lots")]).unwrap_err();
        assert!(e.contains("auth"), "{e}");
        let e = load(&[("jwt_secret", SECRET), ("trusted_proxies", "10.0.0.0/99")]).unwrap_err();
        assert!(e.contains("trusted_proxies"), "{e}");
        let e = load(&[("jwt_secret", SECRET), ("fail_open_routes", "api")]).unwrap_err();
        assert!(e.contains("fail_open_routes"), "{e}");
        let e = load(&[("jwt_secret", SECRET), ("page_cache", "2h")]).unwrap_err();
        assert!(e.contains("page_cache"), "{e}");
    }

    #[test]
    fn page_cache_is_a_short_duration_or_off() {
        let c = load(&[("jwt_secret", SECRET)]).unwrap();
        assert_eq!(c.page_cache_ms, Some(30_000));
        let c = load(&[("jwt_secret", SECRET), ("page_cache", "off")]).unwrap();
        assert_eq!(c.page_cache_ms, None);
        let c = load(&[("jwt_secret", SECRET), ("page_cache", "1h")]).unwrap();
        assert_eq!(c.page_cache_ms, Some(MAX_PAGE_CACHE_MS));
        let c = load(&[("jwt_secret", SECRET), ("redis_address", "")]).unwrap();
        assert_eq!(c.page_cache_ms, None);
    }

    #[test]
    fn redis_credentials_join_the_address_only_in_the_url() {
        let url = |a: &str, u: &str, p: &str| {
            load(&[
                ("jwt_secret", SECRET),
                ("redis_address", a),
                ("redis_username", u),
                ("redis_password", p),
            ])
            .map(|c| c.redis_address.expose().to_string())
        };
        assert_eq!(url("redis://h:6380/", "", "").unwrap(), "redis://h:6380");
        assert_eq!(
            url("rediss://h:6380", "", "pw").unwrap(),
            "rediss://:pw@h:6380"
        );
        assert_eq!(
            url("redis://[::1]:6379", "edge", "p@ss:w/rd%").unwrap(),
            "redis://edge:p%40ss%3Aw%2Frd%25@[::1]:6379"
        );
        assert_eq!(url(" ", "", "ignored").unwrap(), "");
        for bad in [
            "localhost:6379",
            "http://h:80",
            "redis://",
            "redis://h:6379/0",
            "rediss://h",
            "rediss://h:6380#insecure",
            "redis://h:6379?db=1",
        ] {
            let e = url(bad, "", "").unwrap_err();
            assert!(e.contains("redis_address"), "{bad}: {e}");
        }
        let e = url("redis://:hunter2@h:6379", "", "").unwrap_err();
        assert!(
            e.contains("redis_password") && !e.contains("hunter2"),
            "{e}"
        );
        let e = url("redis://h", "edge", "").unwrap_err();
        assert!(e.contains("redis_password"), "{e}");
    }

    #[test]
    fn a_database_number_is_the_path_of_the_url_opened_not_of_the_address() {
        let url = |db: &str, p: &str| {
            load(&[
                ("jwt_secret", SECRET),
                ("redis_address", "redis://h:6379"),
                ("redis_password", p),
                ("redis_database", db),
            ])
            .map(|c| c.redis_address.expose().to_string())
        };
        assert_eq!(url("0", "").unwrap(), "redis://h:6379");
        assert_eq!(url(" 3 ", "").unwrap(), "redis://h:6379/3");
        assert_eq!(url("15", "pw").unwrap(), "redis://:pw@h:6379/15");
        for bad in ["-1", "one", "1/2", "99999999999"] {
            let e = url(bad, "").unwrap_err();
            assert!(e.contains("redis_database"), "{bad}: {e}");
        }
        let e = load(&[
            ("jwt_secret", SECRET),
            ("redis_address", "redis://h:6379/2"),
        ])
        .unwrap_err();
        assert!(e.contains("redis_database"), "{e}");
    }

    #[test]
    fn the_manifest_template_lists_every_variable_in_order() {
        let manifest = include_str!("../spin-wasip2.toml");
        let line = manifest
            .lines()
            .find(|l| l.starts_with("settings = "))
            .expect("a settings component variable in spin-wasip2.toml");
        let expected: Vec<String> = VARIABLES
            .iter()
            .map(|(n, _)| format!("{{{{ {n} }}}}"))
            .collect();
        assert_eq!(line, format!("settings = \"{}\"", expected.join("\\u001f")));
        // The WASI 0.3 manifest passes each variable on by itself, under its own name.
        let p3 = include_str!("../spin.toml");
        for (name, _) in VARIABLES {
            let line = format!("{name} = \"{{{{ {name} }}}}\"");
            assert!(p3.lines().any(|l| l == line), "spin.toml lacks {line}");
        }
        for (name, default) in VARIABLES {
            let decl = manifest
                .lines()
                .find(|l| l.starts_with(&format!("{name} = {{")))
                .unwrap_or_else(|| panic!("[variables] declares {name}"));
            match default {
                Some(d) => assert!(decl.contains(&format!("default = \"{d}\"")), "{decl}"),
                None => assert!(decl.contains("required = true"), "{decl}"),
            }
        }
    }

    #[test]
    fn settings_split_into_variables() {
        let joined: Vec<String> = VARIABLES.iter().map(|(n, _)| format!("v-{n}")).collect();
        let settings = joined.join("\u{1f}");
        let lookup = settings_lookup(&settings).unwrap();
        assert_eq!(lookup[0], ("jwt_secret", "v-jwt_secret"));
        assert!(settings_lookup("only-one")
            .unwrap_err()
            .contains("expected"));
    }

    #[test]
    fn route_patterns() {
        let p = RoutePattern::parse("GET /api/*").unwrap();
        assert!(p.matches("GET", "/api/inventory"));
        assert!(!p.matches("POST", "/api/inventory"));
        let p = RoutePattern::parse("/auth/me").unwrap();
        assert!(p.matches("POST", "/auth/me"));
        assert!(!p.matches("GET", "/auth/me/x"));
    }
}
