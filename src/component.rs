//! Spin's HTTP entry point: reads the request (refusing bodies over the limit while streaming),
//! loads the configuration from Spin variables, and runs the pipeline.

use std::cell::OnceCell;

use async_trait::async_trait;
use futures::StreamExt;
use spin_sdk::http::{Headers, IncomingRequest, OutgoingResponse};
use spin_sdk::http_component;
use spin_sdk::redis;
use spin_sdk::wit::wasi::http0_2_0::types::{HeaderError, OutgoingBody, ResponseOutparam};

use crate::config::{settings_lookup, Config};
use crate::db::spin::SpinDb;
use crate::error::ApiError;
use crate::http::{header_entry, BodyReader, Request, Response};
use crate::pipeline;
use crate::store::redis::{RedisError, RedisLink, RedisParameter, RedisResult};

#[http_component]
async fn handle(req: IncomingRequest, out: spin_sdk::http::ResponseOutparam) {
    let resp = match read(req).await {
        Ok(req) => match load_config() {
            Ok(config) => {
                let link = SpinRedis::new(config.redis_address.expose());
                pipeline::serve(&req, &config, &SpinDb::default(), &link).await
            }
            Err(problem) => pipeline::misconfigured(&req, &problem),
        },
        Err(e) => pipeline::unreadable(e),
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
            let fallback =
                ApiError::Internal(format!("response headers refused by the host: {e:?}"))
                    .into_response();
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
