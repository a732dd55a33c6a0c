//! The embedded store: counters and revocations in SQLite through Spin, for one machine
//! without Redis. A check that adds units is one `BEGIN IMMEDIATE` transaction, so concurrent
//! requests (and several processes on one state dir) decide in turn, never past the limit.

use async_trait::async_trait;

use super::{
    recorded_state, slot_keys, Limit, Outcome, PageAt, Store, StoreError, TokenRef, Warning,
};
use crate::db::{transaction, Database, DbError, Value};
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

    /// The live counts of `keys`, in their order, in one statement.
    fn counters(&self, keys: &[&str]) -> Result<Vec<u64>, StoreError> {
        let marks = vec!["?"; keys.len()].join(", ");
        let mut params = vec![Value::Int(self.now_ms)];
        params.extend(keys.iter().map(|k| Value::from(*k)));
        let rows = self.exec(
            &format!(
                "SELECT key, count FROM edge_counters WHERE expires_at > ? AND key IN ({marks})"
            ),
            &params,
        )?;
        Ok(keys.iter().map(|k| count_of(&rows, k)).collect())
    }

    /// Adds each limit's cost to its current slot, in one statement; the new counts by key.
    fn add(&self, charges: &[(&Limit, &str)]) -> Result<crate::db::Rows, StoreError> {
        let rows = vec!["(?, ?, ?)"; charges.len()].join(", ");
        let mut params = Vec::with_capacity(3 * charges.len() + 1);
        for (limit, key) in charges {
            params.extend([
                Value::from(*key),
                Value::Int(limit.cost as i64),
                Value::Int(self.now_ms + 2 * limit.policy.window_ms as i64 + 1000),
            ]);
        }
        params.push(Value::Int(self.now_ms));
        self.exec(
            &format!(
                "INSERT INTO edge_counters (key, count, expires_at) VALUES {rows} \
                 ON CONFLICT(key) DO UPDATE SET \
                   count = CASE WHEN expires_at > ? THEN count ELSE 0 END + excluded.count, \
                   expires_at = excluded.expires_at \
                 RETURNING key, count"
            ),
            &params,
        )
    }

    /// Reads each limit's two slots and places the request in its bands.
    fn assess(&self, limits: &[Limit]) -> Result<Assessment, StoreError> {
        let now = self.now_ms;
        let keys: Vec<(i64, [String; 2])> = limits
            .iter()
            .map(|limit| {
                let slot = now.div_euclid(limit.policy.window_ms as i64);
                (slot, slot_keys(limit, slot))
            })
            .collect();
        let wanted: Vec<&str> = keys
            .iter()
            .flat_map(|(_, [curr, prev])| [curr.as_str(), prev.as_str()])
            .collect();
        let counts = if wanted.is_empty() {
            Vec::new()
        } else {
            self.counters(&wanted)?
        };
        let mut windows = Vec::with_capacity(limits.len());
        let mut fields = Vec::with_capacity(1 + 2 * limits.len());
        let mut admitted = true;
        for ((limit, (slot, _)), pair) in limits.iter().zip(&keys).zip(counts.chunks(2)) {
            let window = limit.policy.window_ms as i64;
            let state = WindowState {
                slot: *slot,
                curr: pair[0],
                prev: pair[1],
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
        let charges = limits.iter().any(|limit| limit.cost > 0);
        Ok(Assessment {
            keys,
            windows,
            fields,
            admitted,
            charges: admitted && charges,
        })
    }

    /// Adds an admitted request's units; true when that made a slot's row.
    fn charge(&self, limits: &[Limit], a: &mut Assessment) -> Result<bool, StoreError> {
        let charges: Vec<(&Limit, &str)> = limits
            .iter()
            .zip(&a.keys)
            .filter(|(limit, _)| limit.cost > 0)
            .map(|(limit, (_, [curr, _]))| (limit, curr.as_str()))
            .collect();
        let counted = self.add(&charges)?;
        let mut new_slot = false;
        for (state, (limit, (_, [curr, _]))) in a.windows.iter_mut().zip(limits.iter().zip(&a.keys))
        {
            if limit.cost > 0 {
                state.curr = count_of(&counted, curr);
                new_slot |= state.curr == limit.cost;
            }
        }
        Ok(new_slot)
    }

    /// Old slots and buckets, a few at a time; run when a slot's row was made, so the tables
    /// shrink as fast as they grow and the requests between lock for less.
    fn sweep(&self) -> Result<(), StoreError> {
        let now = self.now_ms;
        self.exec(
            "DELETE FROM edge_counters WHERE key IN \
             (SELECT key FROM edge_counters WHERE expires_at <= ? LIMIT 50)",
            &[Value::Int(now)],
        )?;
        self.exec(
            "DELETE FROM edge_metrics WHERE bucket <= ?",
            &[Value::Int(now.div_euclid(BUCKET_MS) - BUCKET_TTL_SECS / 60)],
        )
        .map(drop)
    }

    /// Counts the decision for `/metrics`, in a statement of its own: outside any
    /// transaction, it holds the write lock only while it runs. A count that fails is logged,
    /// not answered: the decision stands (and its units may be committed).
    fn settle(
        &self,
        a: Assessment,
        recorded: (bool, i64),
        below_floor: bool,
        token_refused: bool,
    ) -> Outcome {
        let now = self.now_ms;
        let (revoked, min_version) = recorded;
        let mut fields = a.fields;
        fields.push(Verdict::of(a.admitted, token_refused, revoked || below_floor).field());
        if let Err(StoreError::Unavailable(e) | StoreError::Misconfigured(e)) =
            self.count(now.div_euclid(BUCKET_MS), &fields)
        {
            let message = format!("decision not counted: {e}");
            eprintln!("{}", crate::requestlog::event("warn", None, &message));
        }
        Outcome {
            now_ms: now,
            admitted: a.admitted,
            windows: a.windows,
            revoked,
            min_version,
            schema_version: 0,
            data_version: 0,
            page: None,
        }
    }
}

/// One request's place in its limits, as read.
struct Assessment {
    keys: Vec<(i64, [String; 2])>,
    windows: Vec<WindowState>,
    fields: Vec<String>,
    admitted: bool,
    /// Admitted with units to add: only this needs the write lock across statements.
    charges: bool,
}

/// The count a statement returned for `key` (0 when it has no live row).
fn count_of(rows: &crate::db::Rows, key: &str) -> u64 {
    rows.rows
        .iter()
        .rev()
        .find(|row| row.first().and_then(Value::as_str) == Some(key))
        .and_then(|row| row.get(1)?.as_i64())
        .unwrap_or(0)
        .max(0) as u64
}

fn unavailable(e: DbError) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {e}"))
}

/// For `db::transaction`'s own statements (BEGIN, COMMIT).
impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        unavailable(e)
    }
}

#[async_trait(?Send)]
impl Store for SqliteStore<'_> {
    async fn check(
        &self,
        limits: &[Limit],
        token: Option<TokenRef<'_>>,
        token_refused: bool,
    ) -> Result<Outcome, StoreError> {
        // The system of record is read before the write lock is taken: WAL lets it run beside
        // another request's decision.
        let recorded = match token {
            Some(t) => recorded_state(self.db, t, self.now_ms / 1000).map_err(unavailable)?,
            None => (false, 0),
        };
        let below_floor = token.is_some_and(|t| t.version < recorded.1);
        // Every other request on this file waits for the write lock, and its holder waits for
        // each statement's host call; Spin's busy handler polls, so a long hold queues a burst
        // into the busy timeout (503s). A request found over a limit, or with nothing to add,
        // is settled without it (the metrics insert is one statement, locking on its own), and
        // one that adds holds it for three statements.
        // (Refused on an unlocked read is refused as of that read: a limit is only left by
        // time or by a refund, and either may as well come just after.)
        let first = self.assess(limits)?;
        if !first.charges {
            return Ok(self.settle(first, recorded, below_floor, token_refused));
        }
        let a = transaction(self.db, || {
            let mut a = self.assess(limits)?;
            if a.charges && self.charge(limits, &mut a)? {
                self.sweep()?;
            }
            Ok::<_, StoreError>(a)
        })?;
        Ok(self.settle(a, recorded, below_floor, token_refused))
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
