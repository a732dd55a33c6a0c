//! SQLite through Spin's WASI 0.2 interface (`fermyon:spin/sqlite@2.0.0`).

use spin_sdk::sqlite::{Connection, Error as SqliteError, Value as SqlValue};

use super::lazy::{Driver, LazyDb};
use super::{DbError, Rows, Value};

/// The database of one request: Spin gives each WASI 0.2 request a fresh instance.
pub type SpinDb = LazyDb<Connection>;

impl Driver for Connection {
    fn open() -> Result<Self, DbError> {
        Connection::open_default().map_err(|e| DbError(describe(&e)))
    }

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
        let result = Connection::execute(self, sql, &params).map_err(|e| DbError(describe(&e)))?;
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
