//! A database connection opened on first use, with the schema brought up to date before the
//! first statement runs (unless the store vouches for it), over whichever SQLite driver the
//! world offers. WASI 0.2 makes one per request; WASI 0.3 keeps one for the instance's life,
//! so its schema is checked once per instance.

use std::cell::{Cell, OnceCell};

use super::{schema, Database, DbError, Rows, Value};

/// One SQLite connection of Spin's interface, in either world.
pub trait Driver: Sized {
    fn open() -> Result<Self, DbError>;
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError>;
}

pub struct LazyDb<D> {
    conn: OnceCell<D>,
    /// Foreign keys are a per-connection setting; only writes need them, so reads skip it.
    foreign_keys: Cell<bool>,
    schema: Cell<Schema>,
}

impl<D> Default for LazyDb<D> {
    fn default() -> Self {
        Self {
            conn: OnceCell::new(),
            foreign_keys: Cell::new(false),
            schema: Cell::new(Schema::Unknown),
        }
    }
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Schema {
    #[default]
    Unknown,
    Vouched,
    Verified,
}

impl<D: Driver> LazyDb<D> {
    fn conn(&self) -> Result<&D, DbError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        let conn = D::open()?;
        let conn = self.conn.get_or_init(|| conn);
        if self.schema.get() == Schema::Unknown {
            schema::prepare(&Raw(conn))?;
            self.schema.set(Schema::Verified);
        }
        Ok(conn)
    }
}

impl<D: Driver> Database for LazyDb<D> {
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
struct Raw<'a, D>(&'a D);

impl<D: Driver> Database for Raw<'_, D> {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        self.0.execute(sql, params)
    }
}
