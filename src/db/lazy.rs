//! A database connection opened on first use, with the schema brought up to date before the
//! first statement runs (unless the store vouches for it), over whichever driver the world
//! offers for the configured target. WASI 0.2 makes one per request; WASI 0.3 keeps one for the
//! instance's life, so its schema is checked once per instance, and a connection that broke
//! (the database restarted) is dropped and a new one opened.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::{schema, Database, DbError, DbErrorKind, Dialect, Rows, Target, Value};

/// One connection of Spin's SQLite or PostgreSQL interface, in either world.
pub trait Driver: Sized {
    fn open(target: &Target) -> Result<Self, DbError>;
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError>;
}

pub struct LazyDb<D> {
    target: Target,
    conn: RefCell<Option<Rc<D>>>,
    /// SQLite's foreign keys are a per-connection setting; only writes need them.
    foreign_keys: Cell<bool>,
    schema: Cell<Schema>,
    /// Between `BEGIN` and its `COMMIT` or `ROLLBACK`: a statement that fails then is not
    /// retried on another connection (the transaction's earlier statements died with the old).
    in_transaction: Cell<bool>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Schema {
    #[default]
    Unknown,
    Vouched,
    Verified,
}

impl<D: Driver> LazyDb<D> {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            conn: RefCell::new(None),
            foreign_keys: Cell::new(false),
            schema: Cell::new(Schema::Unknown),
            in_transaction: Cell::new(false),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The open connection and whether it served earlier statements, or a new one.
    fn conn(&self) -> Result<(Rc<D>, bool), DbError> {
        if let Some(conn) = self.conn.borrow().clone() {
            return Ok((conn, true));
        }
        let conn = Rc::new(D::open(&self.target)?);
        self.foreign_keys.set(false);
        if self.schema.get() == Schema::Unknown {
            schema::prepare(&Raw(&*conn, self.dialect()))?;
            self.schema.set(Schema::Verified);
        }
        *self.conn.borrow_mut() = Some(conn.clone());
        Ok((conn, false))
    }

    fn forget(&self, conn: &Rc<D>) {
        let mut kept = self.conn.borrow_mut();
        if kept.as_ref().is_some_and(|c| Rc::ptr_eq(c, conn)) {
            *kept = None;
        }
    }

    fn run(&self, conn: &Rc<D>, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let raw = Raw(&**conn, self.dialect());
        if self.dialect() == Dialect::Sqlite && !self.foreign_keys.get() && !is_read(sql) {
            raw.execute("PRAGMA foreign_keys = ON", &[])?;
            self.foreign_keys.set(true);
        }
        match raw.execute(sql, params) {
            // The store vouched for a schema this database does not have (it was replaced
            // under a Redis that remembers): check it after all, then try once more.
            Err(e)
                if self.schema.get() == Schema::Vouched
                    && e.kind == DbErrorKind::MissingSchema
                    && !self.in_transaction.get() =>
            {
                schema::prepare(&raw)?;
                self.schema.set(Schema::Verified);
                raw.execute(sql, params)
            }
            result => result,
        }
    }
}

impl<D: Driver> Database for LazyDb<D> {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let (conn, kept) = self.conn()?;
        let result = match self.run(&conn, sql, params) {
            Err(e) if e.kind == DbErrorKind::Unavailable => {
                self.forget(&conn);
                if !kept || self.in_transaction.get() {
                    Err(e)
                } else {
                    // A kept connection found broken while the database may be back: one try
                    // on a new connection, as a fresh instance would make.
                    let (conn, _) = self.conn()?;
                    let result = self.run(&conn, sql, params);
                    if result
                        .as_ref()
                        .is_err_and(|e| e.kind == DbErrorKind::Unavailable)
                    {
                        self.forget(&conn);
                    }
                    result
                }
            }
            result => result,
        };
        match transaction_step(sql) {
            Some(Step::Begin) => self.in_transaction.set(result.is_ok()),
            Some(Step::End) => self.in_transaction.set(false),
            None => {}
        }
        result
    }

    fn dialect(&self) -> Dialect {
        self.target.dialect()
    }

    fn vouch_schema(&self, version: i64) {
        if version >= schema::latest(self.dialect()) && self.schema.get() == Schema::Unknown {
            self.schema.set(Schema::Vouched);
        }
    }

    fn verified_schema(&self) -> bool {
        self.schema.get() == Schema::Verified
    }
}

enum Step {
    Begin,
    End,
}

fn transaction_step(sql: &str) -> Option<Step> {
    let word = sql.split_whitespace().next().unwrap_or_default();
    if word.eq_ignore_ascii_case("BEGIN") {
        Some(Step::Begin)
    } else if word.eq_ignore_ascii_case("COMMIT") || word.eq_ignore_ascii_case("ROLLBACK") {
        Some(Step::End)
    } else {
        None
    }
}

fn is_read(sql: &str) -> bool {
    let head = sql.trim_start().get(..6).unwrap_or_default();
    head.eq_ignore_ascii_case("SELECT") || head.eq_ignore_ascii_case("PRAGMA")
}

/// A connection without the lazy schema step (used by the schema step itself).
struct Raw<'a, D>(&'a D, Dialect);

impl<D: Driver> Database for Raw<'_, D> {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        self.0.execute(sql, params)
    }

    fn dialect(&self) -> Dialect {
        self.1
    }
}
