//! What a WASI 0.3 instance keeps between requests, and the conversions between Spin's types
//! and the core's: shared by every component of this world (the API, the guard). Spin reuses
//! one instance for many requests (128 by default, 16 at once), so the instance keeps what
//! costs to make: the Redis connection, the database connection (SQLite's, its schema parsed
//! once, or PostgreSQL's) and the parsed configuration. Nothing of a request (its headers,
//! token, claims or identity) is kept: all of that lives in the request's own future.

#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use alchemix_edge::config::{Config, VARIABLES};
use alchemix_edge::db::lazy::{Driver, LazyDb};
use alchemix_edge::db::{postgres, DbError, DbErrorKind, Rows, Target, Value};
use alchemix_edge::error::ApiError;
use alchemix_edge::http::{bodiless, header_entry, BodyReader, Request, Response};
use alchemix_edge::store::redis::{
    server_replied, RedisError, RedisLink, RedisParameter, RedisResult,
};
use async_trait::async_trait;
use spin_sdk::pg::wit::postgres as pg;
use spin_sdk::redis;
use spin_sdk::sqlite::wit::sqlite;
use spin_sdk::wasip3::http::types;
use spin_sdk::wasip3::wit_bindgen::{FutureReader, StreamReader, StreamResult};
use spin_sdk::wasip3::{wit_future, wit_stream};

thread_local! {
    /// The instance's database connection, opened by the first request that needs it, to the
    /// target of the kept configuration.
    static DB: RefCell<Option<Rc<LazyDb<KeptDb>>>> = const { RefCell::new(None) };
    /// The configuration, read from Spin's variables and checked by the first request.
    static CONFIG: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
    /// The instance's Redis connection, to the address of its kept configuration.
    static REDIS: Rc<KeptRedis> = Rc::new(KeptRedis::default());
}

/// What a request of this instance serves with: the kept configuration, the database (opened
/// on first use, to the configuration's target) and the Redis connection.
pub struct Instance {
    pub config: Rc<Config>,
    pub db: Rc<LazyDb<KeptDb>>,
    redis: Rc<KeptRedis>,
}

impl Instance {
    /// The instance's own, the configuration read and checked by its first request; `Err`
    /// names the problem while it does not load.
    async fn get() -> Result<Self, String> {
        let config = config().await?;
        let db = DB.with(|db| {
            db.borrow_mut()
                .get_or_insert_with(|| Rc::new(LazyDb::new(config.database.clone())))
                .clone()
        });
        Ok(Self {
            config,
            db,
            redis: REDIS.with(Rc::clone),
        })
    }

    /// Redis, at the configuration's address.
    pub fn link(&self) -> Link<'_> {
        Link {
            kept: &self.redis,
            address: self.config.redis_address.expose(),
        }
    }
}

/// Exports `wasi:http/handler@0.3.0` as a component that answers through [`answer`]: the
/// request's parts are read from the host's own type, with no `http` crate request built
/// in between (`#[http_service]` would build one, header map and all, on every request and
/// on both sides of a chain's hop).
#[macro_export]
macro_rules! export_handler {
    ($serve:path) => {
        struct Component;
        $crate::spin_sdk::wasip3::http::service::export!(Component);
        impl $crate::spin_sdk::wasip3::exports::http::handler::Guest for Component {
            async fn handle(
                req: $crate::spin_sdk::wasip3::http::types::Request,
            ) -> Result<
                $crate::spin_sdk::wasip3::http::types::Response,
                $crate::spin_sdk::wasip3::http::types::ErrorCode,
            > {
                Ok($crate::answer(req, $serve).await)
            }
        }
    };
}

pub use spin_sdk;

/// A component's answer: the core's response and, in place of its (then empty) body, a body
/// the component behind produced, handed on unread.
pub struct Reply {
    pub resp: Response,
    pub passed: Option<PassedBody>,
}

impl From<Response> for Reply {
    fn from(resp: Response) -> Self {
        Self { resp, passed: None }
    }
}

/// The body of the response of the component behind, as it wrote it: middleware that has no use
/// for the bytes hands the stream on, so they cross from that component to the host without
/// being read and written again in between.
pub struct PassedBody {
    contents: StreamReader<u8>,
    trailers: FutureReader<BodyEnd>,
}

impl PassedBody {
    /// The body of `resp`, to hand on unread.
    pub fn of(resp: types::Response) -> Self {
        // Dropped at once, the writer tells the component behind its body was taken: none of
        // the edge's components waits on that.
        let (_, done) = wit_future::new(|| Ok(()));
        let (contents, trailers) = types::Response::consume_body(resp, done);
        Self { contents, trailers }
    }

    /// The body read whole, as the core takes it; `Err` when its writer cut it short.
    pub async fn read(self) -> Result<Vec<u8>, ()> {
        let mut bytes = Vec::new();
        read_body(self.contents, self.trailers, |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })
        .await
        .map_err(drop)?;
        Ok(bytes)
    }
}

/// A component's whole answer to Spin: the request read (within the size limit), served by
/// `serve` with the instance's own, the response handed back. A request that cannot be read,
/// or that comes while the configuration does not load, is answered here.
pub async fn answer<R: Into<Reply>>(
    req: types::Request,
    serve: impl AsyncFnOnce(&Request, &Instance) -> R,
) -> types::Response {
    let reply = match read(req).await {
        Ok(req) => match Instance::get().await {
            Ok(instance) => serve(&req, &instance).await.into(),
            Err(problem) => alchemix_edge::answer::misconfigured(&req, &problem).into(),
        },
        Err(e) => alchemix_edge::answer::unreadable(e).into(),
    };
    // The host hands hyper the response head as soon as it has it, and the body's first bytes
    // only when its event loop next turns to the body stream. Resumed by a host call completing
    // (a SQLite statement, most often), this task answers while the instance's other requests
    // queue their own guest work, which the loop may run first: hyper then writes the head
    // alone and, with no TCP_NODELAY, the body waits ~40 ms for the client's delayed ACK (about
    // one answer in ten at 16 connections, measured). A yield puts the answer behind that work,
    // so head and body leave in one write. The app behind the guard yields too: the guard hands
    // its body to the host unread (`PassedBody`), so the host reads it from the app's stream
    // (without the app's yield, about one answer in 200 stalled through the chain, measured).
    spin_sdk::wit_bindgen::yield_async().await;
    respond(reply)
}

/// The request as the core sees it, its body read whole (within the size limit).
async fn read(req: types::Request) -> Result<Request, ApiError> {
    let method = match req.get_method() {
        types::Method::Get => "GET".to_string(),
        types::Method::Head => "HEAD".into(),
        types::Method::Post => "POST".into(),
        types::Method::Put => "PUT".into(),
        types::Method::Delete => "DELETE".into(),
        types::Method::Connect => "CONNECT".into(),
        types::Method::Options => "OPTIONS".into(),
        types::Method::Trace => "TRACE".into(),
        types::Method::Patch => "PATCH".into(),
        types::Method::Other(other) => other,
    };
    let target = req.get_path_with_query().unwrap_or_else(|| "/".into());
    let headers: Vec<(String, String)> = req
        .get_headers()
        .copy_all()
        .into_iter()
        .map(|(k, v)| header_entry(k, v))
        .collect();
    let mut reader = BodyReader::new(&headers)?;
    if !bodiless(&method, &headers) {
        // Held until the body is read: the host learns the request was taken in whole.
        let (taken, done) = wit_future::new(|| Ok(()));
        let (contents, trailers) = types::Request::consume_body(req, done);
        read_body(contents, trailers, |chunk| reader.push(chunk))
            .await
            .map_err(|e| {
                e.unwrap_or_else(|| ApiError::bad_request("Could not read the request body"))
            })?;
        drop(taken);
    }
    Ok(Request::new(method, &target, headers, reader.finish()?))
}

/// Reads a body's stream to its end, handing each chunk to `push`; `Err(Some)` is what `push`
/// refused, `Err(None)` a body its writer cut short.
pub async fn read_body(
    mut contents: StreamReader<u8>,
    trailers: FutureReader<BodyEnd>,
    mut push: impl FnMut(&[u8]) -> Result<(), ApiError>,
) -> Result<(), Option<ApiError>> {
    loop {
        let (result, chunk) = contents.read(Vec::with_capacity(READ_CHUNK)).await;
        match result {
            StreamResult::Complete(_) => push(&chunk).map_err(Some)?,
            StreamResult::Dropped | StreamResult::Cancelled => break,
        }
    }
    trailers.await.map(drop).map_err(|_| None)
}

/// What one read of a body stream asks for.
const READ_CHUNK: usize = 16 * 1024;

/// Hands Spin the response with its whole body offered in one write, taken as soon as the
/// host reads the body stream, or with the passed body's stream and the length its writer
/// declared.
fn respond(reply: Reply) -> types::Response {
    let Reply {
        resp: Response {
            status,
            headers,
            body,
        },
        passed,
    } = reply;
    let mut list: Vec<(String, Vec<u8>)> = headers
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    // A declared length lets the host frame the body without chunking.
    if !body.is_empty() {
        list.push(("content-length".into(), body.len().to_string().into_bytes()));
    }
    let fields = types::Fields::from_list(&list).unwrap_or_else(|e| {
        // Every header is the edge's own, so this is a bug, but it must still be an answer.
        eprintln!("alchemix-edge: response headers refused by the host: {e:?}");
        types::Fields::new()
    });
    let (contents, trailers) = match passed {
        Some(passed) => (Some(passed.contents), passed.trailers),
        None => outgoing_body(body),
    };
    let (response, _sent) = types::Response::new(fields, contents, trailers);
    if response.set_status_code(status).is_err() {
        eprintln!("alchemix-edge: status {status} refused by the host");
    }
    response
}

/// How a body ends: its trailers, if any, or the error that cut it short.
pub type BodyEnd = Result<Option<types::Trailers>, types::ErrorCode>;

/// A body to hand on whole, offered in one write taken as soon as its reader reads; an empty
/// one is no stream at all (no stream, no writer task, nothing for the reader to wait on).
pub fn outgoing_body(body: Vec<u8>) -> (Option<StreamReader<u8>>, FutureReader<BodyEnd>) {
    // Dropped unwritten, the future gives its reader this default: no trailers.
    let (result_tx, result_rx) = wit_future::new(|| Ok(None));
    if body.is_empty() {
        return (None, result_rx);
    }
    let (mut body_tx, body_rx) = wit_stream::new();
    spin_sdk::wasip3::spawn(async move {
        let unwritten = body_tx.write_all(body).await;
        drop(body_tx);
        if unwritten.is_empty() {
            let _ = result_tx.write(Ok(None)).await;
        }
    });
    (Some(body_rx), result_rx)
}

/// The configuration, one Spin variable per setting, read and checked once per instance. A
/// configuration that does not load is not kept: each request reports it, by variable name.
async fn config() -> Result<Rc<Config>, String> {
    if let Some(config) = CONFIG.with(|c| c.borrow().clone()) {
        return Ok(config);
    }
    let mut values = HashMap::new();
    for (name, _) in VARIABLES {
        if let Some(value) = variable(name).await? {
            values.insert(*name, value);
        }
    }
    let config = Rc::new(Config::load(&|name| values.get(name).map(String::as_str))?);
    CONFIG.with(|c| *c.borrow_mut() = Some(config.clone()));
    Ok(config)
}

/// A component variable; `None` when the manifest does not declare it (its default applies),
/// so a component in front of another app declares only what it changes.
async fn variable(name: &str) -> Result<Option<String>, String> {
    match spin_sdk::variables::get(name).await {
        Ok(value) => Ok(Some(value)),
        Err(spin_sdk::variables::Error::Undefined(_)) => Ok(None),
        Err(e) => Err(format!("cannot read the variable {name}: {e}")),
    }
}

/// The database through Spin's synchronous calls (`spin:sqlite/sqlite@3.1.0`,
/// `spin:postgres/postgres@4.2.0`): a statement never yields, so a transaction's statements
/// (the embedded store's check, an import) run without another request of the instance
/// stepping between them on the shared connection.
pub enum KeptDb {
    Sqlite(sqlite::Connection),
    Postgres(pg::Connection),
}

impl Driver for KeptDb {
    fn open(target: &Target) -> Result<Self, DbError> {
        match target {
            Target::Embedded => sqlite::Connection::open("default")
                .map(KeptDb::Sqlite)
                .map_err(|e| DbError::sqlite(describe_sqlite(&e))),
            Target::Postgres(url) => pg::Connection::open(url.expose())
                .map(KeptDb::Postgres)
                .map_err(pg_error),
        }
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        match self {
            KeptDb::Sqlite(conn) => sqlite_execute(conn, sql, params),
            KeptDb::Postgres(conn) => pg_execute(conn, sql, params),
        }
    }
}

fn sqlite_execute(conn: &sqlite::Connection, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
    let params: Vec<sqlite::Value> = params
        .iter()
        .map(|p| match p {
            Value::Int(i) => sqlite::Value::Integer(*i),
            Value::Real(f) => sqlite::Value::Real(*f),
            Value::Text(s) => sqlite::Value::Text(s.clone()),
            Value::Null => sqlite::Value::Null,
        })
        .collect();
    let result = conn
        .execute(sql, &params)
        .map_err(|e| DbError::sqlite(describe_sqlite(&e)))?;
    let rows = result
        .rows
        .into_iter()
        .map(|row| {
            row.values
                .into_iter()
                .map(|v| match v {
                    sqlite::Value::Integer(i) => Value::Int(i),
                    sqlite::Value::Real(f) => Value::Real(f),
                    sqlite::Value::Text(s) => Value::Text(s),
                    sqlite::Value::Blob(b) => Value::Text(String::from_utf8_lossy(&b).into_owned()),
                    sqlite::Value::Null => Value::Null,
                })
                .collect()
        })
        .collect();
    Ok(Rows {
        columns: result.columns,
        rows,
    })
}

/// The shared query with numbered parameters; its values as the core's four kinds (booleans
/// as 0 and 1, as SQLite has them; a decimal as its text).
fn pg_execute(conn: &pg::Connection, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
    let params: Vec<pg::ParameterValue> = params
        .iter()
        .map(|p| match p {
            Value::Int(i) => pg::ParameterValue::Int64(*i),
            Value::Real(f) => pg::ParameterValue::Floating64(*f),
            Value::Text(s) => pg::ParameterValue::Str(s.clone()),
            Value::Null => pg::ParameterValue::DbNull,
        })
        .collect();
    let result = conn
        .query(&postgres::placeholders(sql), &params)
        .map_err(pg_error)?;
    let rows = result
        .rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| match v {
                    pg::DbValue::Boolean(b) => Value::Int(i64::from(b)),
                    pg::DbValue::Int8(i) => Value::Int(i64::from(i)),
                    pg::DbValue::Int16(i) => Value::Int(i64::from(i)),
                    pg::DbValue::Int32(i) => Value::Int(i64::from(i)),
                    pg::DbValue::Int64(i) | pg::DbValue::Timestamp(i) => Value::Int(i),
                    pg::DbValue::Floating32(f) => Value::Real(f64::from(f)),
                    pg::DbValue::Floating64(f) => Value::Real(f),
                    pg::DbValue::Str(s) | pg::DbValue::Decimal(s) | pg::DbValue::Uuid(s) => {
                        Value::Text(s)
                    }
                    pg::DbValue::Binary(b) | pg::DbValue::Jsonb(b) => {
                        Value::Text(String::from_utf8_lossy(&b).into_owned())
                    }
                    _ => Value::Null,
                })
                .collect()
        })
        .collect();
    Ok(Rows {
        columns: result.columns.into_iter().map(|c| c.name).collect(),
        rows,
    })
}

fn pg_error(e: pg::Error) -> DbError {
    match e {
        pg::Error::ConnectionFailed(m) => DbError::new(DbErrorKind::Unavailable, m),
        pg::Error::QueryFailed(pg::QueryError::DbError(e)) => {
            DbError::new(postgres::kind_of_code(&e.code), e.message)
        }
        pg::Error::QueryFailed(pg::QueryError::Text(m)) => {
            DbError::new(postgres::kind_of_text(&m), m)
        }
        pg::Error::BadParameter(m) | pg::Error::ValueConversionFailed(m) | pg::Error::Other(m) => {
            DbError::new(DbErrorKind::Other, m)
        }
    }
}

fn describe_sqlite(e: &sqlite::Error) -> String {
    match e {
        sqlite::Error::NoSuchDatabase => "no such database".into(),
        sqlite::Error::AccessDenied => "access denied (sqlite_databases in spin.toml)".into(),
        sqlite::Error::InvalidConnection => "invalid connection".into(),
        sqlite::Error::DatabaseFull => "database full".into(),
        sqlite::Error::Io(m) => m.clone(),
    }
}

/// The instance's Redis connection. Concurrent requests share it (Spin multiplexes it); one
/// that fails other than by Redis's own error reply is dropped and the command tried once on a
/// new one, so an outage ends as soon as Redis is back, without a restart. The configuration
/// is kept for the instance's life once it loads, so every request names the same address.
#[derive(Default)]
struct KeptRedis {
    conn: RefCell<Option<Rc<redis::Connection>>>,
}

pub struct Link<'a> {
    kept: &'a KeptRedis,
    address: &'a str,
}

impl Link<'_> {
    /// The kept connection if there is one (`true`), else a new one, kept from now on.
    async fn conn(&self) -> Result<(Rc<redis::Connection>, bool), RedisError> {
        if let Some(conn) = self.kept.conn.borrow().clone() {
            return Ok((conn, true));
        }
        let conn = Rc::new(
            redis::Connection::open(self.address)
                .await
                .map_err(from_spin)?,
        );
        *self.kept.conn.borrow_mut() = Some(conn.clone());
        Ok((conn, false))
    }

    /// Forgets `conn` unless another request has replaced it already.
    fn forget(&self, conn: &Rc<redis::Connection>) {
        let mut kept = self.kept.conn.borrow_mut();
        if kept.as_ref().is_some_and(|c| Rc::ptr_eq(c, conn)) {
            *kept = None;
        }
    }
}

async fn execute_on(
    conn: &redis::Connection,
    command: &str,
    params: &[RedisParameter],
) -> Result<Vec<RedisResult>, RedisError> {
    let params = params.iter().map(|p| match p {
        RedisParameter::Int64(i) => redis::RedisParameter::Int64(*i),
        RedisParameter::Binary(b) => redis::RedisParameter::Binary(b.clone()),
    });
    let results = conn.execute(command, params).await.map_err(from_spin)?;
    Ok(results
        .into_iter()
        .map(|r| match r {
            redis::RedisResult::Nil => RedisResult::Nil,
            redis::RedisResult::Status(s) => RedisResult::Status(s),
            redis::RedisResult::Int64(i) => RedisResult::Int64(i),
            redis::RedisResult::Binary(b) => RedisResult::Binary(b),
        })
        .collect())
}

#[async_trait(?Send)]
impl RedisLink for Link<'_> {
    async fn execute(
        &self,
        command: &str,
        params: &[RedisParameter],
    ) -> Result<Vec<RedisResult>, RedisError> {
        let (conn, kept) = self.conn().await?;
        match execute_on(&conn, command, params).await {
            Err(e) if !server_replied(&e) => {
                self.forget(&conn);
                if !kept {
                    return Err(e);
                }
                // A kept connection found broken (Redis restarted, or a failover) while Redis
                // may be back: one try on a new connection, as a fresh instance would make.
                let (conn, _) = self.conn().await?;
                let result = execute_on(&conn, command, params).await;
                if result.as_ref().is_err_and(|e| !server_replied(e)) {
                    self.forget(&conn);
                }
                result
            }
            result => result,
        }
    }
}

fn from_spin(e: redis::Error) -> RedisError {
    match e {
        redis::Error::InvalidAddress => RedisError::InvalidAddress,
        redis::Error::TooManyConnections => RedisError::TooManyConnections,
        redis::Error::TypeError => RedisError::TypeError,
        redis::Error::Other(m) => RedisError::Other(m),
    }
}
