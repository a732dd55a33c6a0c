//! The Spin interfaces the component imports (Redis, SQLite, variables; PostgreSQL is in
//! `spin_pg`), with Spin's semantics:
//! a new Redis connection per `open`, allowed-hosts checks, SQLite labels, flat `execute` replies.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Resource;

use crate::outbound::{self, AllowedHosts};
use crate::StoreState;

pub mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "spin-imports",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/redis@2.0.0.connection": crate::spin_impl::RedisConnection,
            "fermyon:spin/sqlite@2.0.0.connection": crate::spin_impl::SqliteConnection,
            "fermyon:spin/postgres@2.0.0.connection": crate::spin_pg::PgConnection,
        },
    });
}

use bindings::fermyon::spin::{redis, sqlite, variables};

/// What every request of one app shares: resolved variables, outbound rules, databases.
pub struct SpinState {
    pub variables: HashMap<String, String>,
    pub allowed_hosts: AllowedHosts,
    pub redis_permits: Arc<Semaphore>,
    pub sqlite: HashMap<String, SqliteDatabase>,
    pub postgres: crate::spin_pg::PgPools,
}

pub struct RedisConnection {
    pub(crate) conn: ::redis::aio::MultiplexedConnection,
    _permit: OwnedSemaphorePermit,
}

/// A `sqlite` connection resource. Like Spin, each `open` of a file database gets a new
/// connection of its own (so a transaction spans the statements of one request, and every
/// request pays what it pays under Spin: opening the file and reading its schema).
pub struct SqliteConnection {
    pub(crate) conn: Arc<Mutex<rusqlite::Connection>>,
}

/// One SQLite database. A file is opened anew for every `open`; an in-memory database lives in
/// its single connection (Spin would give each `open` an empty one, which serves no test).
pub enum SqliteDatabase {
    File(PathBuf),
    Memory(Arc<Mutex<rusqlite::Connection>>),
}

impl SqliteDatabase {
    pub fn open(location: Option<PathBuf>) -> anyhow::Result<Self> {
        Ok(match location {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                connect_file(&path)
                    .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
                Self::File(path)
            }
            None => Self::Memory(Arc::new(
                Mutex::new(rusqlite::Connection::open_in_memory()?),
            )),
        })
    }

    fn checkout(&self) -> Result<SqliteConnection, sqlite::Error> {
        let conn = match self {
            Self::Memory(conn) => conn.clone(),
            Self::File(path) => Arc::new(Mutex::new(connect_file(path).map_err(io_error)?)),
        };
        Ok(SqliteConnection { conn })
    }
}

/// What Spin's `rusqlite::Connection::open` gives: rusqlite's 5 s busy timeout, nothing else.
fn connect_file(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn io_error(e: impl std::fmt::Display) -> sqlite::Error {
    sqlite::Error::Io(e.to_string())
}

fn execute(
    conn: &rusqlite::Connection,
    statement: &str,
    params: Vec<sqlite::Value>,
) -> Result<sqlite::QueryResult, sqlite::Error> {
    let mut stmt = conn.prepare_cached(statement).map_err(io_error)?;
    let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
    let params: Vec<rusqlite::types::Value> = params.into_iter().map(to_sql).collect();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(io_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(io_error)? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let value = row.get_ref(i).map_err(io_error)?;
            values.push(from_sql(value));
        }
        out.push(sqlite::RowResult { values });
    }
    Ok(sqlite::QueryResult { columns, rows: out })
}

fn to_sql(v: sqlite::Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        sqlite::Value::Integer(i) => V::Integer(i),
        sqlite::Value::Real(f) => V::Real(f),
        sqlite::Value::Text(s) => V::Text(s),
        sqlite::Value::Blob(b) => V::Blob(b),
        sqlite::Value::Null => V::Null,
    }
}

fn from_sql(v: rusqlite::types::ValueRef<'_>) -> sqlite::Value {
    use rusqlite::types::ValueRef as V;
    match v {
        V::Integer(i) => sqlite::Value::Integer(i),
        V::Real(f) => sqlite::Value::Real(f),
        V::Text(t) => sqlite::Value::Text(String::from_utf8_lossy(t).into_owned()),
        V::Blob(b) => sqlite::Value::Blob(b.to_vec()),
        V::Null => sqlite::Value::Null,
    }
}

type Trap<T> = wasmtime::Result<T>;

impl redis::Host for StoreState {}

/// Spin's `open`: the allowed-hosts check, the connection cap, then a new multiplexed
/// connection (never one shared with another `open`).
pub(crate) async fn open_redis(
    spin: &SpinState,
    address: &str,
) -> Result<RedisConnection, redis::Error> {
    match spin.allowed_hosts.allows(address) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!(
                "Outbound network destination not allowed: {}",
                outbound::redact(address)
            );
            return Err(redis::Error::InvalidAddress);
        }
        Err(problem) => {
            eprintln!("Error parsing allowed outbound hosts: {problem}");
            return Err(redis::Error::Other(problem));
        }
    }
    let Ok(permit) = spin.redis_permits.clone().try_acquire_owned() else {
        return Err(redis::Error::TooManyConnections);
    };
    let client = ::redis::Client::open(address).map_err(|_| redis::Error::InvalidAddress)?;
    // Spin's client (redis-rs 0.29 in Spin 3.4, 0.32 later) waits without a deadline for
    // both; redis-rs 1.x would give up after 1 s and 500 ms, which Spin users never see.
    let unbounded = ::redis::AsyncConnectionConfig::new()
        .set_connection_timeout(None)
        .set_response_timeout(None);
    let conn = client
        .get_multiplexed_async_connection_with_config(&unbounded)
        .await
        .map_err(|e| redis::Error::Other(e.to_string()))?;
    Ok(RedisConnection {
        conn,
        _permit: permit,
    })
}

/// Spin's `execute`, on a clone of the connection (Spin clones the multiplexed connection per
/// call, so calls of concurrent requests share it).
pub(crate) async fn execute_redis(
    mut conn: ::redis::aio::MultiplexedConnection,
    command: &str,
    arguments: Vec<redis::RedisParameter>,
) -> Result<Vec<redis::RedisResult>, redis::Error> {
    let mut cmd = ::redis::cmd(command);
    for arg in arguments {
        match arg {
            redis::RedisParameter::Int64(i) => cmd.arg(i),
            redis::RedisParameter::Binary(b) => cmd.arg(b),
        };
    }
    let value = cmd
        .query_async::<::redis::Value>(&mut conn)
        .await
        .map_err(redis_error)?;
    let mut out = Vec::new();
    flatten(value, &mut out).map(|()| out)
}

fn redis_error(e: ::redis::RedisError) -> redis::Error {
    if e.kind() == ::redis::ErrorKind::UnexpectedReturnType {
        redis::Error::TypeError
    } else {
        redis::Error::Other(e.to_string())
    }
}

impl redis::HostConnection for StoreState {
    async fn open(
        &mut self,
        address: String,
    ) -> Trap<Result<Resource<RedisConnection>, redis::Error>> {
        match open_redis(&self.spin, &address).await {
            Ok(conn) => Ok(Ok(self.table.push(conn)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn publish(
        &mut self,
        this: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> Trap<Result<(), redis::Error>> {
        let mut cmd = ::redis::cmd("PUBLISH");
        cmd.arg(channel).arg(payload);
        Ok(self.query::<i64>(&this, cmd).await?.map(|_| ()))
    }

    async fn get(
        &mut self,
        this: Resource<RedisConnection>,
        key: String,
    ) -> Trap<Result<Option<Vec<u8>>, redis::Error>> {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(key);
        self.query(&this, cmd).await
    }

    async fn set(
        &mut self,
        this: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> Trap<Result<(), redis::Error>> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(key).arg(value);
        self.query(&this, cmd).await
    }

    async fn incr(
        &mut self,
        this: Resource<RedisConnection>,
        key: String,
    ) -> Trap<Result<i64, redis::Error>> {
        let mut cmd = ::redis::cmd("INCR");
        cmd.arg(key);
        self.query(&this, cmd).await
    }

    async fn del(
        &mut self,
        this: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> Trap<Result<u32, redis::Error>> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(keys);
        self.query(&this, cmd).await
    }

    async fn sadd(
        &mut self,
        this: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Trap<Result<u32, redis::Error>> {
        let mut cmd = ::redis::cmd("SADD");
        cmd.arg(key).arg(values);
        self.query(&this, cmd).await
    }

    async fn smembers(
        &mut self,
        this: Resource<RedisConnection>,
        key: String,
    ) -> Trap<Result<Vec<String>, redis::Error>> {
        let mut cmd = ::redis::cmd("SMEMBERS");
        cmd.arg(key);
        self.query(&this, cmd).await
    }

    async fn srem(
        &mut self,
        this: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Trap<Result<u32, redis::Error>> {
        let mut cmd = ::redis::cmd("SREM");
        cmd.arg(key).arg(values);
        self.query(&this, cmd).await
    }

    async fn execute(
        &mut self,
        this: Resource<RedisConnection>,
        command: String,
        arguments: Vec<redis::RedisParameter>,
    ) -> Trap<Result<Vec<redis::RedisResult>, redis::Error>> {
        let conn = self.table.get(&this)?.conn.clone();
        Ok(execute_redis(conn, &command, arguments).await)
    }

    async fn drop(&mut self, this: Resource<RedisConnection>) -> Trap<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl StoreState {
    async fn query<T: ::redis::FromRedisValue>(
        &mut self,
        this: &Resource<RedisConnection>,
        cmd: ::redis::Cmd,
    ) -> Trap<Result<T, redis::Error>> {
        let conn = &mut self.table.get_mut(this)?.conn;
        Ok(cmd.query_async::<T>(conn).await.map_err(redis_error))
    }
}

/// Spin's flattening of a reply into the interface's four cases.
fn flatten(value: ::redis::Value, out: &mut Vec<redis::RedisResult>) -> Result<(), redis::Error> {
    use ::redis::Value as V;
    match value {
        V::Nil => out.push(redis::RedisResult::Nil),
        V::Int(i) => out.push(redis::RedisResult::Int64(i)),
        V::BulkString(b) => out.push(redis::RedisResult::Binary(b)),
        V::SimpleString(s) => out.push(redis::RedisResult::Status(s)),
        V::Okay => out.push(redis::RedisResult::Status("OK".into())),
        V::Array(items) | V::Set(items) => {
            for item in items {
                flatten(item, out)?;
            }
        }
        V::Double(d) => out.push(redis::RedisResult::Binary(d.to_string().into_bytes())),
        V::BigNumber(n) => out.push(redis::RedisResult::Binary(n)),
        V::Boolean(b) => out.push(redis::RedisResult::Int64(i64::from(b))),
        V::ServerError(e) => return Err(redis::Error::Other(format!("{e:?}"))),
        _ => return Err(redis::Error::Other("unsupported".into())),
    }
    Ok(())
}

/// Addresses may carry a password; logs get the host part only.
impl sqlite::Host for StoreState {}

/// Spin's `open`: only the labels the component lists, each `open` a connection of its own.
pub(crate) fn open_sqlite(
    spin: &SpinState,
    database: &str,
) -> Result<SqliteConnection, sqlite::Error> {
    spin.sqlite
        .get(database)
        .ok_or(sqlite::Error::AccessDenied)?
        .checkout()
}

/// A statement on a blocking thread (SQLite waits on its busy timeout there, not on the
/// runtime's workers).
pub(crate) async fn execute_sqlite(
    conn: Arc<Mutex<rusqlite::Connection>>,
    statement: String,
    parameters: Vec<sqlite::Value>,
) -> Trap<Result<sqlite::QueryResult, sqlite::Error>> {
    tokio::task::spawn_blocking(move || {
        let conn = conn.lock().map_err(io_error)?;
        execute(&conn, &statement, parameters)
    })
    .await
    .map_err(|e| wasmtime::format_err!("sqlite worker failed: {e}"))
}

impl sqlite::HostConnection for StoreState {
    async fn open(
        &mut self,
        database: String,
    ) -> Trap<Result<Resource<SqliteConnection>, sqlite::Error>> {
        match open_sqlite(&self.spin, &database) {
            Ok(conn) => Ok(Ok(self.table.push(conn)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn execute(
        &mut self,
        this: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> Trap<Result<sqlite::QueryResult, sqlite::Error>> {
        let conn = self.table.get(&this)?.conn.clone();
        execute_sqlite(conn, statement, parameters).await
    }

    async fn drop(&mut self, this: Resource<SqliteConnection>) -> Trap<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl variables::Host for StoreState {
    async fn get(&mut self, name: String) -> Trap<Result<String, variables::Error>> {
        Ok(variable(&self.spin, name))
    }
}

/// Spin's `get`: a component variable of the manifest, by its checked name.
pub(crate) fn variable(spin: &SpinState, name: String) -> Result<String, variables::Error> {
    if crate::manifest::check_variable_name(&name).is_err() {
        return Err(variables::Error::InvalidName(name));
    }
    spin.variables
        .get(&name)
        .cloned()
        .ok_or(variables::Error::Undefined(name))
}
