//! The API's database, behind a small trait: SQLite through Spin in the component, anything
//! that speaks these values in tests.

pub mod schema;
pub mod spin;

use serde_json::Value as Json;

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

    pub fn to_json(&self) -> Json {
        match self {
            Self::Int(i) => Json::from(*i),
            Self::Real(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Self::Text(s) => Json::String(s.clone()),
            Self::Null => Json::Null,
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
    /// Each row as a JSON object keyed by column name.
    pub fn to_json(&self) -> Vec<Json> {
        self.rows
            .iter()
            .map(|row| {
                let map = self
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.clone(), v.to_json()))
                    .collect();
                Json::Object(map)
            })
            .collect()
    }

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
}

pub trait Database {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError>;
}
