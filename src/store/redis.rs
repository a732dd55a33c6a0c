//! The Redis store, through Spin's outbound Redis interface. Every check is one EVALSHA of one
//! Lua script: time from Redis `TIME`, all limits decided together, the revocation state read
//! in the same call, every counter key with a TTL.

use std::cell::OnceCell;

use spin_sdk::redis::{Connection, Error as RedisError, RedisParameter, RedisResult};

use super::{revoked_key, version_key, Limit, Outcome, Store, StoreError, TokenRef};
use crate::ratelimit::WindowState;

/// KEYS: one counter prefix per limit, then (optionally) the revoked key and the version key.
/// ARGV: the number of limits, then limit, window (ms) and cost for each.
/// Returns a flat integer list: now_ms, admitted, revoked, min_version, then
/// slot, prev, curr, elapsed_ms for each limit.
pub const CHECK_SCRIPT: &str = r#"
local n = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local res = {now, 1, 0, 0}
local slots, prevs, currs, elapsed = {}, {}, {}, {}
for i = 1, n do
  local limit, window, cost = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
  local slot = math.floor(now / window)
  local e = now - slot * window
  local p = tonumber(redis.call('GET', KEYS[i] .. ':' .. (slot - 1)) or '0')
  local c = tonumber(redis.call('GET', KEYS[i] .. ':' .. slot) or '0')
  slots[i], prevs[i], currs[i], elapsed[i] = slot, p, c, e
  if p * (window - e) + (c + cost) * window > limit * window then res[2] = 0 end
end
if res[2] == 1 then
  for i = 1, n do
    local window, cost = tonumber(ARGV[3*i]), tonumber(ARGV[3*i+1])
    if cost > 0 then
      local k = KEYS[i] .. ':' .. slots[i]
      currs[i] = redis.call('INCRBY', k, cost)
      redis.call('PEXPIRE', k, 2 * window + 1000)
    end
  end
end
if #KEYS > n then
  res[3] = redis.call('EXISTS', KEYS[n+1])
  res[4] = tonumber(redis.call('GET', KEYS[n+2]) or '0')
end
for i = 1, n do
  res[#res+1] = slots[i]; res[#res+1] = prevs[i]; res[#res+1] = currs[i]; res[#res+1] = elapsed[i]
end
return res
"#;
pub const CHECK_SHA1: &str = "3f097ed813f81c9e88edaf0ba19fddc42a704d37";

/// KEYS[1]: a counter slot. Takes one unit back, never below zero, keeping the TTL.
pub const REFUND_SCRIPT: &str = r#"
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"#;
pub const REFUND_SHA1: &str = "a10847ce494cbbb135eb97a3f37569a64775ccbd";

/// KEYS[1]: a user's version key. Raises it to ARGV[1] (never lowers it) with TTL ARGV[2] s.
pub const RAISE_SCRIPT: &str = r#"
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
local want = tonumber(ARGV[1])
if want > v then v = want end
redis.call('SET', KEYS[1], v, 'EX', ARGV[2])
return v
"#;
pub const RAISE_SHA1: &str = "c537c0e2a906c22dd79ffcd62d1c9e8ffae30e85";

pub struct RedisStore {
    address: String,
    /// Spin gives each `open` a new connection; one per request is the least a request pays.
    conn: OnceCell<Connection>,
}

impl RedisStore {
    pub fn new(address: &str) -> Self {
        Self {
            address: address.to_string(),
            conn: OnceCell::new(),
        }
    }

    fn conn(&self) -> Result<&Connection, StoreError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        let conn = Connection::open(&self.address).map_err(|e| match e {
            RedisError::InvalidAddress => StoreError::Misconfigured(
                "redis_address is not allowed by allowed_outbound_hosts in spin.toml \
                 (or is not a redis:// URL)"
                    .into(),
            ),
            other => StoreError::Unavailable(describe(&other)),
        })?;
        Ok(self.conn.get_or_init(|| conn))
    }

    fn eval(
        &self,
        script: &str,
        sha1: &str,
        keys: &[String],
        args: &[i64],
    ) -> Result<Vec<RedisResult>, StoreError> {
        let conn = self.conn()?;
        let mut params = Vec::with_capacity(2 + keys.len() + args.len());
        params.push(RedisParameter::Binary(sha1.as_bytes().to_vec()));
        params.push(RedisParameter::Int64(keys.len() as i64));
        params.extend(
            keys.iter()
                .map(|k| RedisParameter::Binary(k.as_bytes().to_vec())),
        );
        params.extend(args.iter().map(|a| RedisParameter::Int64(*a)));
        match conn.execute("EVALSHA", &params) {
            Err(RedisError::Other(msg)) if msg.to_ascii_uppercase().contains("NOSCRIPT") => {
                params[0] = RedisParameter::Binary(script.as_bytes().to_vec());
                conn.execute("EVAL", &params)
                    .map_err(|e| StoreError::Unavailable(describe(&e)))
            }
            other => other.map_err(|e| StoreError::Unavailable(describe(&e))),
        }
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

impl Store for RedisStore {
    fn check(&self, limits: &[Limit], token: Option<TokenRef<'_>>) -> Result<Outcome, StoreError> {
        let mut keys: Vec<String> = limits.iter().map(Limit::key).collect();
        if let Some(t) = token {
            keys.push(revoked_key(t.digest));
            keys.push(version_key(t.user_id));
        }
        let mut args = vec![limits.len() as i64];
        for l in limits {
            args.push(i64::from(l.policy.limit));
            args.push(l.policy.window_ms as i64);
            args.push(l.cost as i64);
        }
        let reply = ints(&self.eval(CHECK_SCRIPT, CHECK_SHA1, &keys, &args)?)?;
        if reply.len() != 4 + 4 * limits.len() {
            return Err(StoreError::Unavailable("short script reply".into()));
        }
        let windows = reply[4..]
            .chunks_exact(4)
            .map(|c| WindowState {
                slot: c[0],
                prev: c[1].max(0) as u64,
                curr: c[2].max(0) as u64,
                elapsed_ms: c[3].max(0) as u64,
            })
            .collect();
        Ok(Outcome {
            now_ms: reply[0],
            admitted: reply[1] == 1,
            revoked: reply[2] == 1,
            min_version: reply[3],
            windows,
        })
    }

    fn refund(&self, limit: &Limit, slot: i64) -> Result<(), StoreError> {
        let key = format!("{}:{slot}", limit.key());
        self.eval(REFUND_SCRIPT, REFUND_SHA1, &[key], &[]).map(drop)
    }

    fn revoke(&self, digest: &str, expires_at: i64) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let params = [
            RedisParameter::Binary(revoked_key(digest).into_bytes()),
            RedisParameter::Binary(b"1".to_vec()),
            RedisParameter::Binary(b"EXAT".to_vec()),
            RedisParameter::Int64(expires_at),
        ];
        conn.execute("SET", &params)
            .map(drop)
            .map_err(|e| StoreError::Unavailable(describe(&e)))
    }

    fn raise_min_version(
        &self,
        user_id: i64,
        version: i64,
        ttl_secs: i64,
    ) -> Result<(), StoreError> {
        self.eval(
            RAISE_SCRIPT,
            RAISE_SHA1,
            &[version_key(user_id)],
            &[version, ttl_secs],
        )
        .map(drop)
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.conn()?
            .execute("PING", &[])
            .map(drop)
            .map_err(|e| StoreError::Unavailable(describe(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};

    fn sha1_hex(s: &str) -> String {
        crate::token::hex(&Sha1::digest(s.as_bytes()))
    }

    #[test]
    fn script_digests_match_their_scripts() {
        assert_eq!(sha1_hex(CHECK_SCRIPT), CHECK_SHA1);
        assert_eq!(sha1_hex(REFUND_SCRIPT), REFUND_SHA1);
        assert_eq!(sha1_hex(RAISE_SCRIPT), RAISE_SHA1);
    }
}
