//! The embedded store: counters and revocations in SQLite through Spin, for one machine
//! without Redis. Each check is one `BEGIN IMMEDIATE` transaction, so concurrent requests
//! (and several processes on one state dir) decide in turn, never past the limit.

use async_trait::async_trait;

use super::{
    recorded_state, slot_keys, Limit, Outcome, PageAt, Store, StoreError, TokenRef, Warning,
};
use crate::db::{Database, DbError, Value};
use crate::metrics::{self, Totals, Verdict, BUCKET_MS, BUCKET_TTL_SECS, WINDOWS};
use crate::ratelimit::{band, Band, WindowState};

pub struct SqliteStore<'a> {
    db: &'a dyn Database,
    now_ms: i64,
}

impl<'a> SqliteStore<'a> {
    pub fn new(db: &'a dyn Database, now_ms: i64) -> Self {
        Self { db, now_ms }
    }

    fn exec(&self, sql: &str, params: &[Value]) -> Result<crate::db::Rows, StoreError> {
        self.db.execute(sql, params).map_err(unavailable)
    }

    /// Adds one to each counter field in a metrics bucket, in one statement.
    fn count(&self, bucket: i64, fields: &[String]) -> Result<(), StoreError> {
        let rows = vec!["(?, ?, 1)"; fields.len()].join(", ");
        let params: Vec<Value> = fields
            .iter()
            .flat_map(|f| [Value::Int(bucket), Value::from(f.as_str())])
            .collect();
        self.exec(
            &format!(
                "INSERT INTO edge_metrics (bucket, name, count) VALUES {rows} \
                 ON CONFLICT(bucket, name) DO UPDATE SET count = count + 1"
            ),
            &params,
        )
        .map(drop)
    }

    fn counter(&self, key: &str) -> Result<u64, StoreError> {
        let rows = self.exec(
            "SELECT count FROM edge_counters WHERE key = ? AND expires_at > ?",
            &[Value::from(key), Value::Int(self.now_ms)],
        )?;
        Ok(rows.first_i64().unwrap_or(0).max(0) as u64)
    }

    fn decide(
        &self,
        limits: &[Limit],
        token: Option<TokenRef<'_>>,
        token_refused: bool,
    ) -> Result<Outcome, StoreError> {
        let now = self.now_ms;
        let mut windows = Vec::with_capacity(limits.len());
        let mut fields = Vec::with_capacity(1 + 2 * limits.len());
        let mut admitted = true;
        for limit in limits {
            let window = limit.policy.window_ms as i64;
            let slot = now.div_euclid(window);
            let [curr_key, prev_key] = slot_keys(limit, slot);
            let state = WindowState {
                slot,
                prev: self.counter(&prev_key)?,
                curr: self.counter(&curr_key)?,
                elapsed_ms: (now - slot * window) as u64,
            };
            let band = band(
                limit.policy.limit,
                limit.policy.window_ms,
                state.prev,
                state.curr,
                state.elapsed_ms,
                limit.cost,
            );
            admitted &= band != Band::Over;
            fields.extend(metrics::policy_fields(limit.policy.name, band));
            windows.push(state);
        }
        if admitted {
            for (limit, state) in limits.iter().zip(windows.iter_mut()) {
                if limit.cost == 0 {
                    continue;
                }
                let [key, _] = slot_keys(limit, state.slot);
                let expires = now + 2 * limit.policy.window_ms as i64 + 1000;
                let rows = self.exec(
                    "INSERT INTO edge_counters (key, count, expires_at) VALUES (?, ?, ?) \
                     ON CONFLICT(key) DO UPDATE SET \
                       count = CASE WHEN expires_at > ? THEN count ELSE 0 END + excluded.count, \
                       expires_at = excluded.expires_at \
                     RETURNING count",
                    &[
                        Value::from(key.as_str()),
                        Value::Int(limit.cost as i64),
                        Value::Int(expires),
                        Value::Int(now),
                    ],
                )?;
                state.curr = rows.first_i64().unwrap_or(0).max(0) as u64;
            }
        }
        let (revoked, min_version) = match token {
            Some(t) => recorded_state(self.db, t, now / 1000).map_err(unavailable)?,
            None => (false, 0),
        };
        let below_floor = token.is_some_and(|t| t.version < min_version);
        fields.push(Verdict::of(admitted, token_refused, revoked || below_floor).field());
        self.count(now.div_euclid(BUCKET_MS), &fields)?;
        Ok(Outcome {
            now_ms: now,
            admitted,
            windows,
            revoked,
            min_version,
            schema_version: 0,
            data_version: 0,
            page: None,
        })
    }
}

fn unavailable(e: DbError) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {e}"))
}

#[async_trait(?Send)]
impl Store for SqliteStore<'_> {
    async fn check(
        &self,
        limits: &[Limit],
        token: Option<TokenRef<'_>>,
        token_refused: bool,
    ) -> Result<Outcome, StoreError> {
        self.exec("BEGIN IMMEDIATE", &[])?;
        match self.decide(limits, token, token_refused) {
            Ok(outcome) => {
                self.exec("COMMIT", &[])?;
                // Old slots and buckets are swept a few at a time, on the requests that write
                // anyway.
                let _ = self.exec(
                    "DELETE FROM edge_counters WHERE key IN \
                     (SELECT key FROM edge_counters WHERE expires_at <= ? LIMIT 50)",
                    &[Value::Int(self.now_ms)],
                );
                let _ = self.exec(
                    "DELETE FROM edge_metrics WHERE bucket <= ?",
                    &[Value::Int(
                        self.now_ms.div_euclid(BUCKET_MS) - BUCKET_TTL_SECS / 60,
                    )],
                );
                Ok(outcome)
            }
            Err(e) => {
                let _ = self.exec("ROLLBACK", &[]);
                Err(e)
            }
        }
    }

    async fn metrics(&self) -> Result<Totals, StoreError> {
        let current = self.now_ms.div_euclid(BUCKET_MS);
        let sums: Vec<String> = WINDOWS
            .iter()
            .map(|(_, buckets)| {
                format!(
                    "SUM(CASE WHEN bucket > {} THEN count ELSE 0 END)",
                    current - buckets
                )
            })
            .collect();
        let widest = WINDOWS.iter().map(|(_, b)| *b).max().unwrap_or(0);
        let rows = self.exec(
            &format!(
                "SELECT name, {} FROM edge_metrics WHERE bucket > ? GROUP BY name",
                sums.join(", ")
            ),
            &[Value::Int(current - widest)],
        )?;
        let mut totals = Totals::new();
        for row in &rows.rows {
            let Some(name) = row.first().and_then(Value::as_str) else {
                continue;
            };
            let mut counts = [0; WINDOWS.len()];
            for (c, v) in counts.iter_mut().zip(&row[1..]) {
                *c = v.as_i64().unwrap_or(0).max(0) as u64;
            }
            totals.insert(name.to_string(), counts);
        }
        Ok(totals)
    }

    async fn refund(&self, limit: &Limit, slot: i64) -> Result<(), StoreError> {
        let [key, _] = slot_keys(limit, slot);
        self.exec(
            "UPDATE edge_counters SET count = count - 1 WHERE key = ? AND count > 0",
            &[Value::from(key.as_str())],
        )
        .map(drop)
    }

    async fn reset(&self, limit: &Limit, slot: i64) -> Result<(), StoreError> {
        let [curr, prev] = slot_keys(limit, slot);
        self.exec(
            "DELETE FROM edge_counters WHERE key IN (?, ?)",
            &[Value::from(curr.as_str()), Value::from(prev.as_str())],
        )
        .map(drop)
    }

    /// The database row written by logout is the revocation itself.
    async fn revoke(&self, _digest: &str, _expires_at: i64) -> Result<(), StoreError> {
        Ok(())
    }

    /// `users.token_version`, raised by logout-all, is what checks read.
    async fn raise_min_version(
        &self,
        _user_id: i64,
        _version: i64,
        _ttl: i64,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// No page cache without Redis: a page costs one local statement either way.
    async fn keep_page(&self, _page: PageAt<'_>) -> Result<(), StoreError> {
        Ok(())
    }

    async fn data_changed(
        &self,
        _user_id: i64,
        _page: Option<PageAt<'_>>,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// The embedded store is the database: every request checks the schema itself.
    async fn note_schema(&self, _version: i64) -> Result<(), StoreError> {
        Ok(())
    }

    async fn ping(&self) -> Result<Option<Warning>, StoreError> {
        self.exec("SELECT 1", &[]).map(|_| None)
    }
}
