//! SQLite through Spin's interface, opened once per request on first use, with the schema
//! brought up to date before the first statement runs.

use std::cell::OnceCell;

use spin_sdk::sqlite::{Connection, Error as SqliteError, Value as SqlValue};

use super::{schema, Database, DbError, Rows, Value};

#[derive(Default)]
pub struct SpinDb {
    conn: OnceCell<Connection>,
}

impl SpinDb {
    fn conn(&self) -> Result<&Connection, DbError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        let conn = Connection::open_default().map_err(|e| DbError(describe(&e)))?;
        let conn = self.conn.get_or_init(|| conn);
        schema::prepare(&Raw(conn))?;
        Ok(conn)
    }
}

impl Database for SpinDb {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        Raw(self.conn()?).execute(sql, params)
    }
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
