//! The API's database, behind a small trait: SQLite (the embedded default) or PostgreSQL
//! through Spin in each world's component, anything that speaks these values in tests. The
//! routes write one set of queries in the dialect both engines agree on, with SQLite's `?`
//! and `?N` parameters; the PostgreSQL drivers number them (`postgres::placeholders`).

pub mod lazy;
pub mod postgres;
pub mod schema;

/// Which engine a connection speaks to, for the few statements the dialects spell differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Where the API's data lives, as the configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Spin's `default` SQLite database, on this machine.
    Embedded,
    /// A PostgreSQL connection string (credentials included: never shown).
    Postgres(crate::config::Secret),
}

impl Target {
    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Embedded => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Real(f64),
    Text(String),
    Null,
}

impl Value {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Int(i) => s.serialize_i64(*i),
            Self::Real(f) => s.serialize_f64(*f),
            Self::Text(t) => s.serialize_str(t),
            Self::Null => s.serialize_unit(),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Text(s.to_string())
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Self::Int(i)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    pub fn first_i64(&self) -> Option<i64> {
        self.rows
            .first()
            .and_then(|r| r.first())
            .and_then(Value::as_i64)
    }
}

/// What the routes tell apart; each driver sorts its engine's errors into these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    UniqueViolation,
    ForeignKeyViolation,
    /// A table or column the statement names does not exist (a schema behind the code).
    MissingSchema,
    /// The database cannot be reached, or the connection broke: retrying later may work.
    Unavailable,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub kind: DbErrorKind,
    /// The engine's words; never a parameter's value or a credential.
    pub message: String,
}

impl DbError {
    pub fn new(kind: DbErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// An error of Spin's SQLite interface, which reports everything as text.
    pub fn sqlite(message: impl Into<String>) -> Self {
        let message = message.into();
        let kind = if message.contains("UNIQUE constraint failed") {
            DbErrorKind::UniqueViolation
        } else if message.contains("FOREIGN KEY constraint failed") {
            DbErrorKind::ForeignKeyViolation
        } else if message.contains("no such table") || message.contains("no such column") {
            DbErrorKind::MissingSchema
        } else {
            DbErrorKind::Other
        };
        Self { kind, message }
    }

    pub fn is_unique_violation(&self) -> bool {
        self.kind == DbErrorKind::UniqueViolation
    }

    pub fn is_foreign_key_violation(&self) -> bool {
        self.kind == DbErrorKind::ForeignKeyViolation
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub trait Database {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError>;
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    /// Another instance verified the schema at `version`; this request may skip its check.
    fn vouch_schema(&self, _version: i64) {}
    /// Whether this request checked the schema itself (and migrated it if needed).
    fn verified_schema(&self) -> bool {
        false
    }
}

/// Runs `work` in one write transaction: all of it is stored, or nothing. SQLite takes its
/// write lock at `BEGIN IMMEDIATE`, so concurrent writers queue there rather than fail at
/// their first write; PostgreSQL locks rows as it goes.
pub fn transaction<T, E: From<DbError>>(
    db: &dyn Database,
    work: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let begin = match db.dialect() {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    db.execute(begin, &[])?;
    let result = work().and_then(|value| {
        db.execute("COMMIT", &[])?;
        Ok(value)
    });
    // Also after a failed COMMIT (SQLite's busy timeout), which leaves the transaction open on
    // a connection that WASI 0.3 keeps for the next request.
    if result.is_err() {
        if let Err(rollback) = db.execute("ROLLBACK", &[]) {
            let message = format!("rollback failed: {rollback}");
            eprintln!("{}", crate::requestlog::event("error", None, &message));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Records statements; COMMIT fails as SQLite's does when its busy timeout runs out.
    #[derive(Default)]
    struct BusyCommit(RefCell<Vec<String>>);

    impl Database for BusyCommit {
        fn execute(&self, sql: &str, _params: &[Value]) -> Result<Rows, DbError> {
            self.0.borrow_mut().push(sql.to_string());
            match sql {
                "COMMIT" => Err(DbError::new(DbErrorKind::Other, "database is locked")),
                _ => Ok(Rows::default()),
            }
        }
    }

    #[test]
    fn a_commit_that_fails_is_rolled_back_so_no_transaction_outlives_the_request() {
        let db = BusyCommit::default();
        let result: Result<(), DbError> = transaction(&db, || {
            db.execute("INSERT INTO users (email) VALUES (?)", &[])
                .map(drop)
        });
        assert_eq!(result.unwrap_err().message, "database is locked");
        assert_eq!(
            *db.0.borrow(),
            [
                "BEGIN IMMEDIATE",
                "INSERT INTO users (email) VALUES (?)",
                "COMMIT",
                "ROLLBACK"
            ]
        );
    }
}
