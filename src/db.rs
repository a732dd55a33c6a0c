//! The API's database, behind a small trait: SQLite through Spin in each world's component,
//! anything that speaks these values in tests.

pub mod lazy;
pub mod schema;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError(pub String);

impl DbError {
    pub fn is_unique_violation(&self) -> bool {
        self.0.contains("UNIQUE constraint failed")
    }

    pub fn is_foreign_key_violation(&self) -> bool {
        self.0.contains("FOREIGN KEY constraint failed")
    }
}

pub trait Database {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError>;
    /// Another instance verified the schema at `version`; this request may skip its check.
    fn vouch_schema(&self, _version: i64) {}
    /// Whether this request checked the schema itself (and migrated it if needed).
    fn verified_schema(&self) -> bool {
        false
    }
}
