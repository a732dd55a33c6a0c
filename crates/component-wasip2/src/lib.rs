//! alchemix-edge as a WASI 0.2 component (spin-sdk 5, `wasi:http/incoming-handler@0.2`), for
//! Spin 3.x and 4.0 hosts. Spin gives it a fresh instance per request, so everything it opens
//! (Redis, SQLite or PostgreSQL) and reads (the configuration, one `settings` variable) is per request.
//!
//! The entry point reads the request (refusing bodies over the limit while streaming), loads
//! the configuration, and runs the core's pipeline.

#![cfg(target_arch = "wasm32")]

use std::cell::OnceCell;

use async_trait::async_trait;
use futures::StreamExt;
use spin_sdk::http::{Headers, IncomingRequest, OutgoingResponse};
use spin_sdk::http_component;
use spin_sdk::pg;
use spin_sdk::redis;
use spin_sdk::sqlite::{Connection, Error as SqliteError, Value as SqlValue};
use spin_sdk::wit::wasi::http0_2_0::types::{HeaderError, OutgoingBody, ResponseOutparam};

use alchemix_edge::answer;
use alchemix_edge::config::{settings_lookup, Config};
use alchemix_edge::db::lazy::{Driver, LazyDb};
use alchemix_edge::db::{postgres, DbError, DbErrorKind, Rows, Target, Value};
use alchemix_edge::error::ApiError;
use alchemix_edge::http::{header_entry, BodyReader, Request, Response};
use alchemix_edge::pipeline;
use alchemix_edge::store::redis::{RedisError, RedisLink, RedisParameter, RedisResult};

#[http_component]
async fn handle(req: IncomingRequest, out: spin_sdk::http::ResponseOutparam) {
    let resp = match read(req).await {
        Ok(req) => match load_config() {
            Ok(config) => {
                let link = SpinRedis::new(config.redis_address.expose());
                let db = SpinDb::new(config.database.clone());
                pipeline::serve(&req, &config, &db, &link).await
            }
            Err(problem) => answer::misconfigured(&req, &problem),
        },
        Err(e) => answer::unreadable(e),
    };
    send(out, resp);
}

/// Hands the response to the host as it is: the SDK's `Response` would lowercase every header
/// name again and copy the headers through a hash map first.
fn send(out: spin_sdk::http::ResponseOutparam, resp: Response) {
    let Response {
        status,
        headers,
        body,
    } = resp;
    let (status, headers, body) = match fields(headers) {
        Ok(headers) => (status, headers, body),
        // Every header is the edge's own, so this is a bug, but it must still be an answer.
        Err(e) => {
            eprintln!("alchemix-edge: response headers refused by the host: {e:?}");
            let fallback = ApiError::Internal(String::new()).into_response();
            match fields(fallback.headers) {
                Ok(headers) => (fallback.status, headers, fallback.body),
                Err(_) => return,
            }
        }
    };
    let response = OutgoingResponse::new(headers);
    if response.set_status_code(status).is_err() {
        eprintln!("alchemix-edge: status {status} refused by the host");
    }
    if let Err(e) = body_then_head(out.into_inner(), response, &body) {
        eprintln!("alchemix-edge: the response body could not be sent: {e:?}");
    }
}

/// The most of a body written before the response is handed over: the host buffers that
/// much without a reader.
const BODY_BEFORE_HEAD_BYTES: usize = 1 << 20;

/// Writes the body (all of it, for every body the edge makes) before handing the response
/// to the host, so the host has head and body together. The SDK's `set_with_body` hands the
/// head over first; a host without `TCP_NODELAY` (Spin) then sends the body in a second
/// segment that waits for the client's delayed ACK, ~40 ms on a keep-alive connection.
fn body_then_head(
    out: ResponseOutparam,
    response: OutgoingResponse,
    body: &[u8],
) -> Result<(), String> {
    let outgoing = response.body().map_err(|()| "body taken")?;
    let stream = outgoing.write().map_err(|()| "body stream taken")?;
    let failed = |e| format!("{e:?}");
    let mut written = 0;
    while written < body.len().min(BODY_BEFORE_HEAD_BYTES) {
        match stream.check_write().map_err(failed)? {
            0 => break,
            room => {
                let end = body.len().min(written + room.min(4096) as usize);
                stream.write(&body[written..end]).map_err(failed)?;
                written = end;
            }
        }
    }
    if written == body.len() {
        drop(stream);
        let finished = OutgoingBody::finish(outgoing, None);
        ResponseOutparam::set(out, Ok(response));
        return finished.map_err(|e| format!("{e:?}"));
    }
    // A body larger than the host buffers: the rest follows the head.
    ResponseOutparam::set(out, Ok(response));
    for chunk in body[written..].chunks(4096) {
        stream.blocking_write_and_flush(chunk).map_err(failed)?;
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).map_err(|e| format!("{e:?}"))
}

fn fields(headers: Vec<(String, String)>) -> Result<Headers, HeaderError> {
    let list: Vec<(String, Vec<u8>)> = headers
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    Headers::from_list(&list)
}

async fn read(req: IncomingRequest) -> Result<Request, ApiError> {
    let method = req.method().to_string();
    let target = req.path_with_query().unwrap_or_else(|| "/".into());
    let headers: Vec<(String, String)> = req
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| header_entry(k, v))
        .collect();
    let mut body = BodyReader::new(&headers)?;
    let mut stream = req.into_body_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("Could not read the request body"))?;
        body.push(&chunk)?;
    }
    Ok(Request::new(method, &target, headers, body.finish()?))
}

/// Spin's Redis interface for WASI 0.2 (`fermyon:spin/redis@2.0.0`): a connection opened on
/// first use and dropped with the request, as Spin gives each request a fresh instance anyway.
struct SpinRedis<'a> {
    address: &'a str,
    conn: OnceCell<redis::Connection>,
}

impl<'a> SpinRedis<'a> {
    fn new(address: &'a str) -> Self {
        Self {
            address,
            conn: OnceCell::new(),
        }
    }

    fn conn(&self) -> Result<&redis::Connection, RedisError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        let conn = redis::Connection::open(self.address).map_err(from_spin)?;
        Ok(self.conn.get_or_init(|| conn))
    }
}

#[async_trait(?Send)]
impl RedisLink for SpinRedis<'_> {
    async fn execute(
        &self,
        command: &str,
        params: &[RedisParameter],
    ) -> Result<Vec<RedisResult>, RedisError> {
        let params: Vec<redis::RedisParameter> = params
            .iter()
            .map(|p| match p {
                RedisParameter::Int64(i) => redis::RedisParameter::Int64(*i),
                RedisParameter::Binary(b) => redis::RedisParameter::Binary(b.clone()),
            })
            .collect();
        let results = self.conn()?.execute(command, &params).map_err(from_spin)?;
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
}

fn from_spin(e: redis::Error) -> RedisError {
    match e {
        redis::Error::InvalidAddress => RedisError::InvalidAddress,
        redis::Error::TooManyConnections => RedisError::TooManyConnections,
        redis::Error::TypeError => RedisError::TypeError,
        redis::Error::Other(m) => RedisError::Other(m),
    }
}

/// One host call for every setting: `settings` joins all application variables.
fn load_config() -> Result<Config, String> {
    let settings = spin_sdk::variables::get("settings")
        .map_err(|e| format!("cannot read the settings variable: {e}"))?;
    let lookup = settings_lookup(&settings)?;
    Config::load(&|name| lookup.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
}

/// The database of one request: Spin gives each WASI 0.2 request a fresh instance, so the
/// connection (SQLite's, or one from Spin's PostgreSQL pool) is opened per request.
type SpinDb = LazyDb<SpinConn>;

enum SpinConn {
    Sqlite(Connection),
    Postgres(pg::Connection),
}

impl Driver for SpinConn {
    fn open(target: &Target) -> Result<Self, DbError> {
        match target {
            Target::Embedded => Connection::open_default()
                .map(SpinConn::Sqlite)
                .map_err(|e| DbError::sqlite(describe(&e))),
            Target::Postgres(url) => pg::Connection::open(url.expose())
                .map(SpinConn::Postgres)
                .map_err(|e| pg_error(&e)),
        }
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        match self {
            SpinConn::Sqlite(conn) => sqlite_execute(conn, sql, params),
            SpinConn::Postgres(conn) => pg_execute(conn, sql, params),
        }
    }
}

fn sqlite_execute(conn: &Connection, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
    let params: Vec<SqlValue> = params
        .iter()
        .map(|p| match p {
            Value::Int(i) => SqlValue::Integer(*i),
            Value::Real(f) => SqlValue::Real(*f),
            Value::Text(s) => SqlValue::Text(s.clone()),
            Value::Null => SqlValue::Null,
        })
        .collect();
    let result = conn
        .execute(sql, &params)
        .map_err(|e| DbError::sqlite(describe(&e)))?;
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

/// PostgreSQL through `fermyon:spin/postgres@2.0.0`: the shared query with numbered
/// parameters, its values as the core's four kinds (booleans as 0 and 1, as SQLite has them).
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
        .map_err(|e| pg_error(&e))?;
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
                    pg::DbValue::Int64(i) => Value::Int(i),
                    pg::DbValue::Uint8(i) => Value::Int(i64::from(i)),
                    pg::DbValue::Uint16(i) => Value::Int(i64::from(i)),
                    pg::DbValue::Uint32(i) => Value::Int(i64::from(i)),
                    pg::DbValue::Uint64(i) => {
                        i64::try_from(i).map_or_else(|_| Value::Text(i.to_string()), Value::Int)
                    }
                    pg::DbValue::Floating32(f) => Value::Real(f64::from(f)),
                    pg::DbValue::Floating64(f) => Value::Real(f),
                    pg::DbValue::Str(s) => Value::Text(s),
                    pg::DbValue::Binary(b) => Value::Text(String::from_utf8_lossy(&b).into_owned()),
                    pg::DbValue::DbNull | pg::DbValue::Unsupported => Value::Null,
                })
                .collect()
        })
        .collect();
    Ok(Rows {
        columns: result.columns.into_iter().map(|c| c.name).collect(),
        rows,
    })
}

fn pg_error(e: &pg::PgError) -> DbError {
    match e {
        pg::PgError::ConnectionFailed(m) => DbError::new(DbErrorKind::Unavailable, m.clone()),
        pg::PgError::QueryFailed(m) => DbError::new(postgres::kind_of_text(m), m.clone()),
        pg::PgError::BadParameter(m)
        | pg::PgError::ValueConversionFailed(m)
        | pg::PgError::Other(m) => DbError::new(DbErrorKind::Other, m.clone()),
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
