//! The Redis store, through Spin's outbound Redis interface (behind [`RedisLink`], one
//! adapter per world). Every check is one EVALSHA of one Lua script: time from Redis `TIME`,
//! all limits decided together, the revocation state read in the same call, every counter key
//! with a TTL.

use async_trait::async_trait;

use super::{
    data_version_key, recorded_state, revoked_key, slot_keys, version_key, CacheProbe, Limit,
    Outcome, PageAt, Store, StoreError, TokenRef, Warning, EPOCH_KEY, SCHEMA_KEY, WARNED_KEY,
    WARNING_LOG_INTERVAL_SECS,
};
use crate::db::{Database, DbError, Value};
use crate::metrics::{Totals, BUCKET_MS, BUCKET_PREFIX, WINDOWS};
use crate::ratelimit::WindowState;

/// KEYS: one counter prefix per limit; with a token its revoked, version and epoch keys, then
/// the user's data version key (cache probe 1 or 2) and the page key (probe 2); last the schema
/// key. ARGV: the number of limits, then limit, window (ms) and cost for each, then 1/0 for the
/// token group, the cache probe (0 none, 1 the data version, 2 the data version and a page),
/// the token's version, 1/0 for a token that failed verification, and each limit's policy name.
/// Returns now_ms, admitted, revoked, min_version, epoch present, schema version, data version,
/// then slot, prev, curr, elapsed_ms for each limit, and last the page body when the cache
/// holds it at the current data version and the request is admitted.
/// Every key is read by one MGET and each charged counter written by one SET with its TTL
/// (the script is atomic, so read-then-set is an increment). The verdict and each policy's hit
/// and band are counted in this minute's metrics bucket (`ae:mx:<minute>`, named here from
/// Redis's clock, so it is not in KEYS), given its TTL when a counter in it is new.
pub const CHECK_SCRIPT: &str = r#"
local n = tonumber(ARGV[1])
local has_token, probe = ARGV[3*n+2] == '1', ARGV[3*n+3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local names, slots, elapsed = {}, {}, {}
for i = 1, n do
  local window = tonumber(ARGV[3*i])
  local slot = math.floor(now / window)
  slots[i], elapsed[i] = slot, now - slot * window
  names[2*i-1], names[2*i] = KEYS[i] .. ':' .. (slot - 1), KEYS[i] .. ':' .. slot
end
for i = n + 1, #KEYS do names[#names+1] = KEYS[i] end
local v = redis.call('MGET', unpack(names))
local res = {now, 1, 0, 0, 1, tonumber(v[#v] or '0'), 0}
local prevs, currs, bands = {}, {}, {}
for i = 1, n do
  local limit, window, cost = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  prevs[i], currs[i] = tonumber(v[2*i-1] or '0'), tonumber(v[2*i] or '0')
  local used = prevs[i] * (window - elapsed[i]) + (currs[i] + cost) * window
  if used > limit * window then
    res[2], bands[i] = 0, 'over_limit'
  elseif 5 * used >= 4 * limit * window then
    bands[i] = 'near_limit'
  end
end
if res[2] == 1 then
  for i = 1, n do
    local window, cost = tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
    if cost > 0 then
      currs[i] = currs[i] + cost
      redis.call('SET', names[2*i], currs[i], 'PX', 2 * window + 1000)
    end
  end
end
local j = 2*n + 1
if has_token then
  res[3] = v[j] and 1 or 0
  res[4] = tonumber(v[j+1] or '0')
  res[5] = v[j+2] and 1 or 0
  j = j + 3
end
local verdict = 'allowed'
if res[2] == 0 then
  verdict = 'limited'
elseif ARGV[3*n+5] == '1' then
  verdict = 'unauthenticated'
elseif has_token and (res[3] == 1 or tonumber(ARGV[3*n+4]) < res[4]) then
  verdict = 'revoked'
end
local mk = 'ae:mx:' .. math.floor(now / 60000)
local fresh = redis.call('HINCRBY', mk, 'd:' .. verdict, 1) == 1
for i = 1, n do
  local p = 'p:' .. ARGV[3*n+5+i] .. ':'
  if redis.call('HINCRBY', mk, p .. 'total_hits', 1) == 1 then fresh = true end
  if bands[i] and redis.call('HINCRBY', mk, p .. bands[i], 1) == 1 then fresh = true end
end
if fresh then redis.call('EXPIRE', mk, 3660) end
local page
if probe ~= '0' then
  local dv = v[j] or '0'
  res[7] = tonumber(dv)
  local p = probe == '2' and v[j+1]
  if p and res[2] == 1 and res[3] == 0 then
    local sep = string.find(p, ':', 1, true)
    if sep and string.sub(p, 1, sep - 1) == dv then page = string.sub(p, sep + 1) end
  end
end
for i = 1, n do
  res[#res+1] = slots[i]; res[#res+1] = prevs[i]; res[#res+1] = currs[i]; res[#res+1] = elapsed[i]
end
if page then res[#res+1] = page end
return res
"#;
pub const CHECK_SHA1: &str = "9eec81ca5974aea007727c8a76681d7655ef046b";

/// KEYS[1]: the metrics bucket prefix; ARGV[1]: the bucket length (ms), then each window's
/// width in buckets, narrowest first. Returns each counter field followed by its sum over each
/// window (the current bucket and the ones before it), by Redis's clock.
pub const METRICS_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = math.floor(now / tonumber(ARGV[1]))
local widths = {}
for w = 2, #ARGV do widths[w-1] = tonumber(ARGV[w]) end
local sums, order = {}, {}
for age = 0, widths[#widths] - 1 do
  local h = redis.call('HGETALL', KEYS[1] .. ':' .. (m - age))
  for i = 1, #h, 2 do
    local s = sums[h[i]]
    if not s then
      s = {}
      for w = 1, #widths do s[w] = 0 end
      sums[h[i]], order[#order+1] = s, h[i]
    end
    for w = 1, #widths do
      if age < widths[w] then s[w] = s[w] + tonumber(h[i+1]) end
    end
  end
end
local res = {}
for _, f in ipairs(order) do
  res[#res+1] = f
  for w = 1, #widths do res[#res+1] = sums[f][w] end
end
return res
"#;
pub const METRICS_SHA1: &str = "f13b05d9226083290c253d1d581d4f9175c0b787";

/// KEYS[1]: a counter slot. Takes one unit back, never below zero, keeping the TTL.
pub const REFUND_SCRIPT: &str = r#"
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"#;
pub const REFUND_SHA1: &str = "a10847ce494cbbb135eb97a3f37569a64775ccbd";

/// KEYS: user version keys; ARGV[1]: TTL in seconds, then the wanted version for each key.
/// Raises each version (never lowers it).
pub const RAISE_SCRIPT: &str = r#"
for i = 1, #KEYS do
  local v = tonumber(redis.call('GET', KEYS[i]) or '0')
  local want = tonumber(ARGV[i+1])
  if want > v then v = want end
  redis.call('SET', KEYS[i], v, 'EX', ARGV[1])
end
return #KEYS
"#;
pub const RAISE_SHA1: &str = "57b5fe54c44e8c2bb5bfbbbd27ee307a22623b3b";

/// KEYS[1]: a user's data version key, and optionally KEYS[2]: a page the write read back
/// after its commit. ARGV[1]: the version's TTL in seconds; with a page, the version the write's
/// check read, the page's TTL in ms and its body. The new version is Redis's clock in ms (or one
/// past the old one, if that is ahead), never a number the key held before it last expired, so
/// a page tagged long ago cannot match again. The page is kept under the new version only if
/// the version is still the one the check read: a write that committed after this one and
/// already moved the version on is missing from the page, so the page is dropped.
pub const BUMP_SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if now <= v then now = v + 1 end
local version = string.format('%d', now)
redis.call('SET', KEYS[1], version, 'EX', ARGV[1])
if KEYS[2] and v == tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], version .. ':' .. ARGV[4], 'PX', ARGV[3])
end
return now
"#;
pub const BUMP_SHA1: &str = "094d17c60c7f7dab72498773fac84b1e7af1572b";

/// KEYS: revoked keys; ARGV: the unix second each expires at.
pub const REVOKE_SCRIPT: &str = r#"
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], '1', 'EXAT', ARGV[i])
end
return #KEYS
"#;
pub const REVOKE_SHA1: &str = "6547b9445e2cf8684c6a111c28a5b8fb0f987fe1";

/// How long a data version outlives the user's last write; far above the longest page TTL,
/// so every page tagged before the key expired has expired first.
const DATA_VERSION_TTL_SECS: i64 = 86_400;

/// How long Redis vouches for the database schema before an instance checks it again.
const SCHEMA_TTL_SECS: i64 = 3600;

/// Rows restored per script call after Redis lost its data.
const RESTORE_CHUNK: usize = 256;

/// A command argument, as Spin's Redis interface takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisParameter {
    Int64(i64),
    Binary(Vec<u8>),
}

/// A reply value, flattened as Spin's Redis interface returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisResult {
    Nil,
    Status(String),
    Int64(i64),
    Binary(Vec<u8>),
}

/// Why a command failed, in the terms of Spin's Redis errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisError {
    /// Refused by `allowed_outbound_hosts`, or not a Redis URL.
    InvalidAddress,
    TooManyConnections,
    TypeError,
    Other(String),
}

/// Spin's Redis interface as the store uses it: one command at a time on a connection the
/// adapter opens to the configured address (per request in WASI 0.2, kept for the instance's
/// life in WASI 0.3).
#[async_trait(?Send)]
pub trait RedisLink {
    async fn execute(
        &self,
        command: &str,
        params: &[RedisParameter],
    ) -> Result<Vec<RedisResult>, RedisError>;
}

/// Whether a failed command leaves its connection usable: Redis answered with an error of its
/// own (Spin reports those as `other` with Redis's text, which starts with an upper-case code
/// such as `NOSCRIPT` or `WRONGTYPE`). Anything else may be a broken connection.
pub fn server_replied(e: &RedisError) -> bool {
    match e {
        RedisError::Other(message) => {
            let code = message.split_whitespace().next().unwrap_or_default();
            code.len() >= 3 && code.bytes().all(|b| b.is_ascii_uppercase())
        }
        RedisError::TypeError => true,
        RedisError::InvalidAddress | RedisError::TooManyConnections => false,
    }
}

pub struct RedisStore<'a> {
    link: &'a dyn RedisLink,
    /// The system of record, replayed into Redis when Redis has lost the revocation state.
    db: &'a dyn Database,
    /// How long a user's version floor must outlive the tokens below it.
    version_ttl_secs: i64,
}

impl<'a> RedisStore<'a> {
    pub fn new(link: &'a dyn RedisLink, db: &'a dyn Database, version_ttl_secs: i64) -> Self {
        Self {
            link,
            db,
            version_ttl_secs,
        }
    }

    /// Replays every live revocation and version floor from the database, then marks Redis as
    /// restored. Idempotent, so instances that notice the loss together may all run it.
    async fn restore(&self, now_s: i64) -> Result<(), StoreError> {
        let db_err = |e: DbError| StoreError::Unavailable(format!("restore: {e}"));
        let revoked = self
            .db
            .execute(
                "SELECT digest, expires_at FROM revoked_tokens WHERE expires_at > ?",
                &[Value::Int(now_s)],
            )
            .map_err(db_err)?;
        for chunk in revoked.rows.chunks(RESTORE_CHUNK) {
            let keys: Vec<String> = chunk
                .iter()
                .map(|r| revoked_key(r[0].as_str().unwrap_or_default()))
                .collect();
            let args: Vec<i64> = chunk
                .iter()
                .map(|r| r[1].as_i64().unwrap_or(now_s))
                .collect();
            self.eval(REVOKE_SCRIPT, REVOKE_SHA1, &keys, &args).await?;
        }
        let versions = self
            .db
            .execute(
                "SELECT id, token_version FROM users WHERE token_version > 0",
                &[],
            )
            .map_err(db_err)?;
        for chunk in versions.rows.chunks(RESTORE_CHUNK) {
            let keys: Vec<String> = chunk
                .iter()
                .map(|r| version_key(r[0].as_i64().unwrap_or_default()))
                .collect();
            let mut args = vec![self.version_ttl_secs];
            args.extend(chunk.iter().map(|r| r[1].as_i64().unwrap_or_default()));
            self.eval(RAISE_SCRIPT, RAISE_SHA1, &keys, &args).await?;
        }
        self.command(
            "SET",
            &[
                RedisParameter::Binary(EPOCH_KEY.as_bytes().to_vec()),
                RedisParameter::Int64(now_s),
            ],
        )
        .await?;
        let message = format!(
            "redis had lost its revocation state; restored {} revocations and {} version floors",
            revoked.rows.len(),
            versions.rows.len()
        );
        eprintln!("{}", crate::requestlog::event("warn", None, &message));
        Ok(())
    }

    async fn command(
        &self,
        command: &str,
        params: &[RedisParameter],
    ) -> Result<Vec<RedisResult>, StoreError> {
        self.link
            .execute(command, params)
            .await
            .map_err(store_error)
    }

    async fn eval(
        &self,
        script: &str,
        sha1: &str,
        keys: &[String],
        args: &[i64],
    ) -> Result<Vec<RedisResult>, StoreError> {
        let args = args.iter().map(|a| RedisParameter::Int64(*a)).collect();
        self.eval_with(script, sha1, keys, args).await
    }

    async fn eval_with(
        &self,
        script: &str,
        sha1: &str,
        keys: &[String],
        args: Vec<RedisParameter>,
    ) -> Result<Vec<RedisResult>, StoreError> {
        let mut params = Vec::with_capacity(2 + keys.len() + args.len());
        params.push(RedisParameter::Binary(sha1.as_bytes().to_vec()));
        params.push(RedisParameter::Int64(keys.len() as i64));
        params.extend(
            keys.iter()
                .map(|k| RedisParameter::Binary(k.as_bytes().to_vec())),
        );
        params.extend(args);
        match self.link.execute("EVALSHA", &params).await {
            Err(RedisError::Other(msg)) if msg.to_ascii_uppercase().contains("NOSCRIPT") => {
                params[0] = RedisParameter::Binary(script.as_bytes().to_vec());
                self.command("EVAL", &params).await
            }
            other => other.map_err(store_error),
        }
    }
}

fn store_error(e: RedisError) -> StoreError {
    match e {
        RedisError::InvalidAddress => StoreError::Misconfigured(
            "redis_address is not allowed by allowed_outbound_hosts in spin.toml \
             (or is not a redis:// URL)"
                .into(),
        ),
        other => StoreError::Unavailable(describe(&other)),
    }
}

fn describe(e: &RedisError) -> String {
    match e {
        RedisError::InvalidAddress => "invalid address".into(),
        RedisError::TooManyConnections => "too many connections".into(),
        RedisError::TypeError => "type error".into(),
        RedisError::Other(m) => m.clone(),
    }
}

fn ints(results: &[RedisResult]) -> Result<Vec<i64>, StoreError> {
    results
        .iter()
        .map(|r| match r {
            RedisResult::Int64(i) => Ok(*i),
            other => Err(StoreError::Unavailable(format!(
                "unexpected script reply {other:?}"
            ))),
        })
        .collect()
}

#[async_trait(?Send)]
impl Store for RedisStore<'_> {
    async fn check(
        &self,
        limits: &[Limit],
        token: Option<TokenRef<'_>>,
        token_refused: bool,
    ) -> Result<Outcome, StoreError> {
        let mut keys: Vec<String> = limits.iter().map(Limit::key).collect();
        let probe = token.map_or(CacheProbe::None, |t| t.cache);
        if let Some(t) = token {
            keys.push(revoked_key(t.digest));
            keys.push(version_key(t.user_id));
            keys.push(EPOCH_KEY.to_string());
            if probe != CacheProbe::None {
                keys.push(data_version_key(t.user_id));
            }
            if let CacheProbe::Page(page) = probe {
                keys.push(page.to_string());
            }
        }
        keys.push(SCHEMA_KEY.to_string());
        let mut args = vec![limits.len() as i64];
        for l in limits {
            args.push(i64::from(l.policy.limit));
            args.push(l.policy.window_ms as i64);
            args.push(l.cost as i64);
        }
        args.push(i64::from(token.is_some()));
        args.push(match probe {
            CacheProbe::None => 0,
            CacheProbe::Version => 1,
            CacheProbe::Page(_) => 2,
        });
        args.push(token.map_or(0, |t| t.version));
        args.push(i64::from(token_refused));
        let mut args: Vec<RedisParameter> = args.into_iter().map(RedisParameter::Int64).collect();
        args.extend(
            limits
                .iter()
                .map(|l| RedisParameter::Binary(l.policy.name.as_bytes().to_vec())),
        );
        let mut results = self
            .eval_with(CHECK_SCRIPT, CHECK_SHA1, &keys, args)
            .await?;
        let fields = 7 + 4 * limits.len();
        let body = match results.len() {
            n if n == fields + 1 => match results.pop() {
                Some(RedisResult::Binary(body)) => Some(body),
                other => {
                    return Err(StoreError::Unavailable(format!(
                        "unexpected script reply {other:?}"
                    )))
                }
            },
            n if n == fields => None,
            _ => return Err(StoreError::Unavailable("short script reply".into())),
        };
        let reply = ints(&results)?;
        let windows = reply[7..]
            .chunks_exact(4)
            .map(|c| WindowState {
                slot: c[0],
                prev: c[1].max(0) as u64,
                curr: c[2].max(0) as u64,
                elapsed_ms: c[3].max(0) as u64,
            })
            .collect();
        let mut outcome = Outcome {
            now_ms: reply[0],
            admitted: reply[1] == 1,
            revoked: reply[2] == 1,
            min_version: reply[3],
            schema_version: reply[5],
            data_version: reply[6],
            windows,
            page: body,
        };
        if let (Some(t), 0) = (token, reply[4]) {
            outcome.page = None;
            // A miss from a Redis that lost its data proves nothing: restore, then answer
            // this request from the record.
            let now_s = outcome.now_ms / 1000;
            self.restore(now_s).await?;
            let (revoked, min_version) = recorded_state(self.db, t, now_s)
                .map_err(|e| StoreError::Unavailable(format!("restore: {e}")))?;
            outcome.revoked |= revoked;
            outcome.min_version = outcome.min_version.max(min_version);
        }
        Ok(outcome)
    }

    async fn metrics(&self) -> Result<Totals, StoreError> {
        let mut args = vec![BUCKET_MS];
        args.extend(WINDOWS.iter().map(|(_, buckets)| *buckets));
        let reply = self
            .eval(
                METRICS_SCRIPT,
                METRICS_SHA1,
                &[BUCKET_PREFIX.to_string()],
                &args,
            )
            .await?;
        let mut totals = Totals::new();
        for row in reply.chunks(1 + WINDOWS.len()) {
            let [RedisResult::Binary(field), sums @ ..] = row else {
                return Err(StoreError::Unavailable(format!(
                    "unexpected metrics reply {row:?}"
                )));
            };
            let sums = ints(sums)?;
            let mut counts = [0; WINDOWS.len()];
            for (c, s) in counts.iter_mut().zip(sums) {
                *c = s.max(0) as u64;
            }
            totals.insert(String::from_utf8_lossy(field).into_owned(), counts);
        }
        Ok(totals)
    }

    async fn refund(&self, limit: &Limit, slot: i64) -> Result<(), StoreError> {
        let key = format!("{}:{slot}", limit.key());
        self.eval(REFUND_SCRIPT, REFUND_SHA1, &[key], &[])
            .await
            .map(drop)
    }

    async fn reset(&self, limit: &Limit, slot: i64) -> Result<(), StoreError> {
        let params: Vec<RedisParameter> = slot_keys(limit, slot)
            .into_iter()
            .map(|k| RedisParameter::Binary(k.into_bytes()))
            .collect();
        self.command("DEL", &params).await.map(drop)
    }

    async fn revoke(&self, digest: &str, expires_at: i64) -> Result<(), StoreError> {
        self.eval(
            REVOKE_SCRIPT,
            REVOKE_SHA1,
            &[revoked_key(digest)],
            &[expires_at],
        )
        .await
        .map(drop)
    }

    async fn raise_min_version(
        &self,
        user_id: i64,
        version: i64,
        ttl_secs: i64,
    ) -> Result<(), StoreError> {
        self.eval(
            RAISE_SCRIPT,
            RAISE_SHA1,
            &[version_key(user_id)],
            &[ttl_secs, version],
        )
        .await
        .map(drop)
    }

    async fn keep_page(&self, page: PageAt<'_>) -> Result<(), StoreError> {
        let mut value = format!("{}:", page.version).into_bytes();
        value.extend_from_slice(page.body);
        let params = [
            RedisParameter::Binary(page.key.as_bytes().to_vec()),
            RedisParameter::Binary(value),
            RedisParameter::Binary(b"PX".to_vec()),
            RedisParameter::Int64(page.ttl_ms as i64),
        ];
        self.command("SET", &params).await.map(drop)
    }

    async fn data_changed(&self, user_id: i64, page: Option<PageAt<'_>>) -> Result<(), StoreError> {
        let mut keys = vec![data_version_key(user_id)];
        let mut args = vec![RedisParameter::Int64(DATA_VERSION_TTL_SECS)];
        if let Some(r) = page {
            keys.push(r.key.to_string());
            args.push(RedisParameter::Int64(r.version));
            args.push(RedisParameter::Int64(r.ttl_ms as i64));
            args.push(RedisParameter::Binary(r.body.to_vec()));
        }
        self.eval_with(BUMP_SCRIPT, BUMP_SHA1, &keys, args)
            .await
            .map(drop)
    }

    async fn note_schema(&self, version: i64) -> Result<(), StoreError> {
        let params = [
            RedisParameter::Binary(SCHEMA_KEY.as_bytes().to_vec()),
            RedisParameter::Int64(version),
            RedisParameter::Binary(b"EX".to_vec()),
            RedisParameter::Int64(SCHEMA_TTL_SECS),
        ];
        self.command("SET", &params).await.map(drop)
    }

    async fn ping(&self) -> Result<Option<Warning>, StoreError> {
        let info = self
            .link
            .execute("INFO", &[RedisParameter::Binary(b"memory".to_vec())])
            .await;
        match info {
            Ok(reply) => {
                let warning = reply.iter().find_map(|r| match r {
                    RedisResult::Binary(text) => eviction_warning(&String::from_utf8_lossy(text)),
                    _ => None,
                });
                match warning {
                    Some(text) => Ok(Some(Warning {
                        text,
                        log: first_to_warn(self.link).await,
                    })),
                    None => Ok(None),
                }
            }
            // Some hosted Redis services refuse INFO; the setting is then unknown.
            Err(_) => self.command("PING", &[]).await.map(|_| None),
        }
    }
}

/// Claims the fleet's next warning line. When the claim itself fails the line is logged
/// anyway: a repeated warning is better than a lost one.
async fn first_to_warn(link: &dyn RedisLink) -> bool {
    let params = [
        RedisParameter::Binary(WARNED_KEY.as_bytes().to_vec()),
        RedisParameter::Int64(1),
        RedisParameter::Binary(b"NX".to_vec()),
        RedisParameter::Binary(b"EX".to_vec()),
        RedisParameter::Int64(WARNING_LOG_INTERVAL_SECS),
    ];
    !matches!(
        link.execute("SET", &params).await.as_deref(),
        Ok([RedisResult::Nil])
    )
}

/// Every key the edge writes has a TTL, so any eviction policy, the volatile ones included,
/// may drop a revocation under memory pressure, and that token would be accepted again.
fn eviction_warning(info_memory: &str) -> Option<String> {
    let field = |name: &str| {
        info_memory.lines().find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(str::trim)
        })
    };
    let limited = field("maxmemory").is_some_and(|bytes| bytes != "0");
    let policy = field("maxmemory_policy")?;
    (limited && policy != "noeviction").then(|| {
        format!(
            "redis may evict keys (maxmemory_policy {policy}): an evicted revocation lets a \
             revoked token in again; set maxmemory-policy noeviction"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::BUCKET_TTL_SECS;
    use sha1::{Digest, Sha1};

    fn sha1_hex(s: &str) -> String {
        crate::token::hex(&Sha1::digest(s.as_bytes()))
    }

    #[test]
    fn only_an_unlimited_or_noeviction_redis_keeps_every_key() {
        let info = |max: &str, policy: &str| {
            format!("# Memory\r\nused_memory:1000\r\nmaxmemory:{max}\r\nmaxmemory_human:x\r\nmaxmemory_policy:{policy}\r\n")
        };
        assert_eq!(eviction_warning(&info("0", "allkeys-lru")), None);
        assert_eq!(eviction_warning(&info("104857600", "noeviction")), None);
        for policy in ["allkeys-lru", "volatile-ttl"] {
            let w = eviction_warning(&info("104857600", policy)).unwrap();
            assert!(w.contains(policy) && w.contains("noeviction"), "{w}");
        }
        assert_eq!(eviction_warning("# Memory\r\n"), None);
    }

    #[test]
    fn script_digests_match_their_scripts() {
        assert_eq!(sha1_hex(CHECK_SCRIPT), CHECK_SHA1);
        assert_eq!(sha1_hex(REFUND_SCRIPT), REFUND_SHA1);
        assert_eq!(sha1_hex(RAISE_SCRIPT), RAISE_SHA1);
        assert_eq!(sha1_hex(REVOKE_SCRIPT), REVOKE_SHA1);
        assert_eq!(sha1_hex(BUMP_SCRIPT), BUMP_SHA1);
        assert_eq!(sha1_hex(METRICS_SCRIPT), METRICS_SHA1);
    }

    #[test]
    fn the_check_script_counts_in_the_buckets_the_metrics_script_reads() {
        assert!(CHECK_SCRIPT.contains(&format!(
            "'{BUCKET_PREFIX}:' .. math.floor(now / {BUCKET_MS})"
        )));
        assert!(CHECK_SCRIPT.contains(&format!("redis.call('EXPIRE', mk, {BUCKET_TTL_SECS})")));
    }
}
