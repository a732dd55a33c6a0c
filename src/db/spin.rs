//! SQLite through Spin's interface, opened once per request on first use, with the schema
//! brought up to date before the first statement runs (unless the store vouches for it).

use std::cell::{Cell, OnceCell};

use spin_sdk::sqlite::{Connection, Error as SqliteError, Value as SqlValue};

use super::{schema, Database, DbError, Rows, Value};

#[derive(Default)]
pub struct SpinDb {
    conn: OnceCell<Connection>,
    /// Foreign keys are a per-connection setting; only writes need them, so reads skip it.
    foreign_keys: Cell<bool>,
    schema: Cell<Schema>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Schema {
    #[default]
    Unknown,
    Vouched,
    Verified,
}

impl SpinDb {
    fn conn(&self) -> Result<&Connection, DbError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        let conn = Connection::open_default().map_err(|e| DbError(describe(&e)))?;
        let conn = self.conn.get_or_init(|| conn);
        if self.schema.get() == Schema::Unknown {
            schema::prepare(&Raw(conn))?;
            self.schema.set(Schema::Verified);
        }
        Ok(conn)
    }
}

impl Database for SpinDb {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let conn = Raw(self.conn()?);
        if !self.foreign_keys.get() && !is_read(sql) {
            conn.execute("PRAGMA foreign_keys = ON", &[])?;
            self.foreign_keys.set(true);
        }
        match conn.execute(sql, params) {
            // The store vouched for a schema this database does not have (it was replaced
            // under a Redis that remembers): check it after all, then try once more.
            Err(e) if self.schema.get() == Schema::Vouched && is_missing_schema(&e) => {
                schema::prepare(&conn)?;
                self.schema.set(Schema::Verified);
                conn.execute(sql, params)
            }
            result => result,
        }
    }

    fn vouch_schema(&self, version: i64) {
        if version >= schema::LATEST && self.schema.get() == Schema::Unknown {
            self.schema.set(Schema::Vouched);
        }
    }

    fn verified_schema(&self) -> bool {
        self.schema.get() == Schema::Verified
    }
}

fn is_missing_schema(e: &DbError) -> bool {
    e.0.contains("no such table") || e.0.contains("no such column")
}

fn is_read(sql: &str) -> bool {
    let head = sql.trim_start().get(..6).unwrap_or_default();
    head.eq_ignore_ascii_case("SELECT") || head.eq_ignore_ascii_case("PRAGMA")
}

/// A connection without the lazy schema step (used by the schema step itself).
struct Raw<'a>(&'a Connection);

impl Database for Raw<'_> {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let params: Vec<SqlValue> = params
            .iter()
            .map(|p| match p {
                Value::Int(i) => SqlValue::Integer(*i),
                Value::Real(f) => SqlValue::Real(*f),
                Value::Text(s) => SqlValue::Text(s.clone()),
                Value::Null => SqlValue::Null,
            })
            .collect();
        let result = self
            .0
            .execute(sql, &params)
            .map_err(|e| DbError(describe(&e)))?;
        let rows = result
            .rows
            .into_iter()
            .map(|row| {
                row.values
                    .into_iter()
                    .map(|v| match v {
                        SqlValue::Integer(i) => Value::Int(i),
                        SqlValue::Real(f) => Value::Real(f),
                        SqlValue::Text(s) => Value::Text(s),
                        SqlValue::Blob(b) => Value::Text(String::from_utf8_lossy(&b).into_owned()),
                        SqlValue::Null => Value::Null,
                    })
                    .collect()
            })
            .collect();
        Ok(Rows {
            columns: result.columns,
            rows,
        })
    }
}

fn describe(e: &SqliteError) -> String {
    match e {
        SqliteError::NoSuchDatabase => "no such database".into(),
        SqliteError::AccessDenied => "access denied (sqlite_databases in spin.toml)".into(),
        SqliteError::InvalidConnection => "invalid connection".into(),
        SqliteError::DatabaseFull => "database full".into(),
        SqliteError::Io(m) => m.clone(),
    }
}
