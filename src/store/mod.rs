//! The shared counter and revocation store, behind one small trait so Redis (shared by every
//! instance) and SQLite (one machine, no Redis) are interchangeable.

pub mod redis;
pub mod sqlite;

use async_trait::async_trait;

use crate::config::Config;
use crate::db::{Database, DbError, Value};
use crate::error::ApiError;
use crate::metrics::Totals;
use crate::policy::Policy;
use crate::ratelimit::WindowState;
use redis::{RedisLink, RedisStore};
use sqlite::SqliteStore;

/// One policy applied to one subject (an address or a user) at a cost.
#[derive(Debug, Clone)]
pub struct Limit {
    pub policy: Policy,
    pub subject: String,
    pub cost: u64,
}

impl Limit {
    /// The counter's key prefix; the slot index is appended by the store.
    pub fn key(&self) -> String {
        format!("ae:rl:{}:{}", self.policy.name, self.subject)
    }
}

/// The token half of a check: its digest (never the token), its user, and what the check
/// reads of the user's page cache.
#[derive(Debug, Clone, Copy)]
pub struct TokenRef<'a> {
    pub digest: &'a str,
    pub user_id: i64,
    /// The token's `tokenVersion`, so the check can count a token below its user's floor.
    pub version: i64,
    pub cache: CacheProbe<'a>,
}

/// What a check reads of the page cache besides limits and revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheProbe<'a> {
    None,
    /// A write: the data version it will move on from, so it can hand its page to the cache.
    Version,
    /// A list read the cache may answer: the data version and this page's key.
    Page(&'a str),
}

/// A list page read from the database while the user's data was at `version` (as this
/// request's check read it), to be kept in the cache for `ttl_ms`.
#[derive(Debug, Clone, Copy)]
pub struct PageAt<'a> {
    pub key: &'a str,
    pub version: i64,
    pub body: &'a [u8],
    pub ttl_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub now_ms: i64,
    /// All limits had room, and every one was charged; otherwise none was.
    pub admitted: bool,
    pub windows: Vec<WindowState>,
    pub revoked: bool,
    /// Tokens of this user with a lower `tokenVersion` are invalid.
    pub min_version: i64,
    /// The database schema version the store vouches for (0: none), so instances skip the
    /// per-request check once one of them has verified it.
    pub schema_version: i64,
    /// The version of the user's data the cached pages are tagged with (0: never changed).
    pub data_version: i64,
    /// The requested page's body, when the cache holds it at the current data version.
    pub page: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store cannot be reached or failed; retrying later may work.
    Unavailable(String),
    /// The store can never work as configured (e.g. address not allowed by the manifest).
    Misconfigured(String),
}

impl From<StoreError> for ApiError {
    /// A store that fails is a 503 to retry; its detail is logged, never sent.
    fn from(e: StoreError) -> Self {
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
}

/// The store the configuration names: Redis through `link`, or the embedded one in `db`.
pub fn open<'a>(
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

#[async_trait(?Send)]
pub trait Store {
    /// Charges every limit and reads the token's revocation state, atomically, in one round
    /// trip, and counts the request's verdict for the fleet's metrics (`token_refused`: the
    /// request presented a token that failed verification).
    async fn check(
        &self,
        limits: &[Limit],
        token: Option<TokenRef<'_>>,
        token_refused: bool,
    ) -> Result<Outcome, StoreError>;
    /// The fleet's counters, summed over each of [`metrics::WINDOWS`](crate::metrics::WINDOWS).
    async fn metrics(&self) -> Result<Totals, StoreError>;
    /// Gives back one unit charged in `slot` (a successful login is not an attempt that counts).
    async fn refund(&self, limit: &Limit, slot: i64) -> Result<(), StoreError>;
    /// Forgets a subject's count under a policy (an account's failures after a good login).
    async fn reset(&self, limit: &Limit, slot: i64) -> Result<(), StoreError>;
    /// Revokes one token until `expires_at` (unix seconds).
    async fn revoke(&self, digest: &str, expires_at: i64) -> Result<(), StoreError>;
    /// Invalidates a user's tokens below `version`, for `ttl_secs` (the longest token life).
    async fn raise_min_version(
        &self,
        user_id: i64,
        version: i64,
        ttl_secs: i64,
    ) -> Result<(), StoreError>;
    /// Keeps a page a read filled, tagged with the version it was read at.
    async fn keep_page(&self, page: PageAt<'_>) -> Result<(), StoreError>;
    /// Moves the user's data version on, so no page cached before this write is served again.
    /// A page the write read back after its commit is kept under the new version, but only if
    /// no other write moved the version on since `page.version` (it may lack that write).
    async fn data_changed(&self, user_id: i64, page: Option<PageAt<'_>>) -> Result<(), StoreError>;
    /// Records that the database schema is at `version` (checked by this request).
    async fn note_schema(&self, version: i64) -> Result<(), StoreError>;
    /// Whether the store answers; `Some` names a setting under which it may lose state.
    async fn ping(&self) -> Result<Option<Warning>, StoreError>;
}

/// A store setting under which state may be lost, reported by every health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub text: String,
    /// Whether this probe is the one to log it: load balancers probe every instance every few
    /// seconds, and one line per `WARNING_LOG_INTERVAL_SECS` across the fleet is enough.
    pub log: bool,
}

pub const WARNING_LOG_INTERVAL_SECS: i64 = 300;

pub fn revoked_key(digest: &str) -> String {
    format!("ae:rv:{digest}")
}

pub fn version_key(user_id: i64) -> String {
    format!("ae:tv:{user_id}")
}

pub fn data_version_key(user_id: i64) -> String {
    format!("ae:dv:{user_id}")
}

/// Larger pages are served from the database every time rather than held in Redis.
pub const MAX_PAGE_BYTES: usize = 256 * 1024;

/// `what` names the page (resource, page number, size); never a token or a raw query.
pub fn page_key(user_id: i64, what: &str) -> String {
    format!("ae:pg:{user_id}:{what}")
}

/// Present while Redis holds the revocation state restored from the database; a Redis that
/// restarted empty (or failed over to a replica without it) has lost it.
pub const EPOCH_KEY: &str = "ae:epoch";

/// The database schema version verified by some instance recently.
pub const SCHEMA_KEY: &str = "ae:schema";

/// Present while some instance has logged the store's warning recently.
pub const WARNED_KEY: &str = "ae:warned";

/// The slot keys of a limit's sliding window: the current one and the one before it.
pub fn slot_keys(limit: &Limit, slot: i64) -> [String; 2] {
    let key = limit.key();
    [format!("{key}:{slot}"), format!("{key}:{}", slot - 1)]
}

/// A token's state in the system of record: whether it was revoked, and its user's version floor.
pub fn recorded_state(
    db: &dyn Database,
    token: TokenRef<'_>,
    now_s: i64,
) -> Result<(bool, i64), DbError> {
    let rows = db.execute(
        "SELECT EXISTS(SELECT 1 FROM revoked_tokens WHERE digest = ? AND expires_at > ?), \
                COALESCE((SELECT token_version FROM users WHERE id = ?), 0)",
        &[
            Value::from(token.digest),
            Value::Int(now_s),
            Value::Int(token.user_id),
        ],
    )?;
    let row = rows.rows.first().cloned().unwrap_or_default();
    let int = |i: usize| row.get(i).and_then(Value::as_i64).unwrap_or(0);
    Ok((int(0) == 1, int(1)))
}
