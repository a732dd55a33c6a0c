//! PostgreSQL for components, with Spin's semantics (`crates/factor-outbound-pg` is the
//! reference): the address checked against `allowed_outbound_hosts` as `postgres://host:port`;
//! one connection pool per address, shared by every instance of the app (each `open` takes a
//! connection from it, cleaned when it goes back); every statement prepared anew, columns named
//! from the first row; failures in the interface's own words. The WASI 0.3 interface
//! (`spin:postgres/postgres@4.2.0`) is the implementation, and `fermyon:spin/postgres@2.0.0`
//! converts to and from it, as Spin does.

// The interface's own error type is the one to return, whatever its size.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use wasmtime::component::Resource;

use crate::outbound;
use crate::spin_impl::{bindings as p2, SpinState};
use crate::spin_p3::bindings::spin::postgres::postgres as v4;
use crate::StoreState;

use p2::fermyon::spin::{postgres as v2, rdbms_types as v2_types};

/// The connections one pool keeps per address, as Spin's.
const POOL_SIZE: usize = 64;

#[derive(Default)]
pub struct PgPools {
    pools: Mutex<HashMap<String, deadpool_postgres::Pool>>,
}

/// A `connection` resource: a connection taken from the pool for as long as the guest holds it.
pub struct PgConnection {
    client: Arc<deadpool_postgres::Object>,
}

impl PgPools {
    /// The address's pool; `config` is the address parsed (by `open`, for its checks).
    fn pool(
        &self,
        address: &str,
        config: tokio_postgres::Config,
    ) -> Result<deadpool_postgres::Pool, v4::Error> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get(address) {
            return Ok(pool.clone());
        }
        let manager_config = deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Clean,
        };
        let manager = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
            deadpool_postgres::Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        } else {
            let connector = native_tls::TlsConnector::new()
                .map_err(|e| v4::Error::ConnectionFailed(format!("{e:?}")))?;
            deadpool_postgres::Manager::from_config(
                config,
                postgres_native_tls::MakeTlsConnector::new(connector),
                manager_config,
            )
        };
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| v4::Error::ConnectionFailed(format!("{e:?}")))?;
        pools.insert(address.to_string(), pool.clone());
        Ok(pool)
    }
}

/// Spin's `open`: every host of the address must be allowed, then a pooled connection.
pub(crate) async fn open(spin: &SpinState, address: &str) -> Result<PgConnection, v4::Error> {
    let config = address
        .parse::<tokio_postgres::Config>()
        .map_err(|e| v4::Error::ConnectionFailed(e.to_string()))?;
    let ports = config.get_ports();
    for (i, host) in config.get_hosts().iter().enumerate() {
        let tokio_postgres::config::Host::Tcp(host) = host else {
            return Err(v4::Error::ConnectionFailed(
                "only TCP hosts are supported".into(),
            ));
        };
        let port = ports
            .get(i)
            .or_else(|| (ports.len() == 1).then(|| &ports[0]))
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let url = format!("postgres://{host}{port}");
        match spin.allowed_hosts.allows(&url) {
            Ok(true) => {}
            Ok(false) => {
                eprintln!(
                    "Outbound network destination not allowed: {}",
                    outbound::redact(&url)
                );
                return Err(v4::Error::ConnectionFailed(format!(
                    "address {url} is not permitted"
                )));
            }
            Err(problem) => return Err(v4::Error::Other(problem)),
        }
    }
    let pool = spin.postgres.pool(address, config)?;
    let client = pool
        .get()
        .await
        .map_err(|e| v4::Error::ConnectionFailed(format!("{e:?}")))?;
    Ok(PgConnection {
        client: Arc::new(client),
    })
}

fn query_failed(e: tokio_postgres::Error) -> v4::Error {
    let text = format!("{e:?}");
    v4::Error::QueryFailed(match e.as_db_error() {
        None => v4::QueryError::Text(text),
        Some(db) => v4::QueryError::DbError(v4::DbError {
            as_text: text,
            severity: db.severity().to_string(),
            code: db.code().code().to_string(),
            message: db.message().to_string(),
            detail: db.detail().map(str::to_string),
            extras: Vec::new(),
        }),
    })
}

/// A parameter as the client library writes it; a NULL fits any column type.
fn parameter(value: v4::ParameterValue) -> Result<Box<dyn ToSql + Send + Sync>, v4::Error> {
    use v4::ParameterValue as P;
    Ok(match value {
        P::Boolean(v) => Box::new(v),
        P::Int8(v) => Box::new(v),
        P::Int16(v) => Box::new(v),
        P::Int32(v) => Box::new(v),
        P::Int64(v) => Box::new(v),
        P::Floating32(v) => Box::new(v),
        P::Floating64(v) => Box::new(v),
        P::Str(v) => Box::new(v),
        P::Binary(v) => Box::new(v),
        P::DbNull => Box::new(Null),
        other => {
            return Err(v4::Error::ValueConversionFailed(format!(
                "edge-host does not convert {other:?}"
            )))
        }
    })
}

#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A value of a type without a case of its own: its bytes as the server sent them.
struct Other(Vec<u8>);

impl<'a> FromSql<'a> for Other {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn value(row: &tokio_postgres::Row, i: usize) -> Result<v4::DbValue, tokio_postgres::Error> {
    use v4::DbValue as V;
    fn get<'a, T: FromSql<'a>>(
        row: &'a tokio_postgres::Row,
        i: usize,
        case: fn(T) -> V,
    ) -> Result<V, tokio_postgres::Error> {
        Ok(row.try_get::<_, Option<T>>(i)?.map_or(V::DbNull, case))
    }
    match *row.columns()[i].type_() {
        Type::BOOL => get(row, i, V::Boolean),
        Type::INT2 => get(row, i, V::Int16),
        Type::INT4 => get(row, i, V::Int32),
        Type::INT8 => get(row, i, V::Int64),
        Type::FLOAT4 => get(row, i, V::Floating32),
        Type::FLOAT8 => get(row, i, V::Floating64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => get(row, i, V::Str),
        Type::BYTEA => get(row, i, V::Binary),
        _ => get(row, i, |o: Other| V::Unsupported(o.0)),
    }
}

fn data_type(t: &Type) -> v4::DbDataType {
    use v4::DbDataType as D;
    match *t {
        Type::BOOL => D::Boolean,
        Type::INT2 => D::Int16,
        Type::INT4 => D::Int32,
        Type::INT8 => D::Int64,
        Type::FLOAT4 => D::Floating32,
        Type::FLOAT8 => D::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => D::Str,
        Type::BYTEA => D::Binary,
        _ => D::Other(t.name().to_string()),
    }
}

fn parameters(
    params: Vec<v4::ParameterValue>,
) -> Result<Vec<Box<dyn ToSql + Send + Sync>>, v4::Error> {
    params.into_iter().map(parameter).collect()
}

fn refs(params: &[Box<dyn ToSql + Send + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

pub(crate) async fn query(
    client: Arc<deadpool_postgres::Object>,
    statement: String,
    params: Vec<v4::ParameterValue>,
) -> Result<v4::RowSet, v4::Error> {
    let params = parameters(params)?;
    let rows = client
        .query(&statement, &refs(&params))
        .await
        .map_err(query_failed)?;
    let columns = rows
        .first()
        .map(|row| {
            row.columns()
                .iter()
                .map(|c| v4::Column {
                    name: c.name().to_string(),
                    data_type: data_type(c.type_()),
                })
                .collect()
        })
        .unwrap_or_default();
    let rows = rows
        .iter()
        .map(|row| (0..row.len()).map(|i| value(row, i)).collect())
        .collect::<Result<_, _>>()
        .map_err(query_failed)?;
    Ok(v4::RowSet { columns, rows })
}

pub(crate) async fn execute(
    client: Arc<deadpool_postgres::Object>,
    statement: String,
    params: Vec<v4::ParameterValue>,
) -> Result<u64, v4::Error> {
    let params = parameters(params)?;
    client
        .execute(&statement, &refs(&params))
        .await
        .map_err(query_failed)
}

type Trap<T> = wasmtime::Result<T>;

impl StoreState {
    fn pg_client(&self, this: &Resource<PgConnection>) -> Trap<Arc<deadpool_postgres::Object>> {
        Ok(self.table.get(this)?.client.clone())
    }
}

impl v4::Host for StoreState {}

impl v4::HostConnection for StoreState {
    async fn open(&mut self, address: String) -> Trap<Result<Resource<PgConnection>, v4::Error>> {
        match open(&self.spin, &address).await {
            Ok(conn) => Ok(Ok(self.table.push(conn)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn query(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> Trap<Result<v4::RowSet, v4::Error>> {
        let client = self.pg_client(&this)?;
        Ok(query(client, statement, params).await)
    }

    async fn execute(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> Trap<Result<u64, v4::Error>> {
        let client = self.pg_client(&this)?;
        Ok(execute(client, statement, params).await)
    }

    async fn drop(&mut self, this: Resource<PgConnection>) -> Trap<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

fn v2_error(e: v4::Error) -> v2_types::Error {
    use v2_types::Error as E;
    match e {
        v4::Error::ConnectionFailed(m) => E::ConnectionFailed(m),
        v4::Error::BadParameter(m) => E::BadParameter(m),
        v4::Error::QueryFailed(v4::QueryError::Text(m)) => E::QueryFailed(m),
        v4::Error::QueryFailed(v4::QueryError::DbError(e)) => E::QueryFailed(e.as_text),
        v4::Error::ValueConversionFailed(m) => E::ValueConversionFailed(m),
        v4::Error::Other(m) => E::Other(m),
    }
}

fn v2_parameters(
    params: Vec<v2_types::ParameterValue>,
) -> Result<Vec<v4::ParameterValue>, v2_types::Error> {
    params.into_iter().map(v2_parameter).collect()
}

fn v2_parameter(p: v2_types::ParameterValue) -> Result<v4::ParameterValue, v2_types::Error> {
    use v2_types::ParameterValue as P2;
    use v4::ParameterValue as P;
    Ok(match p {
        P2::Boolean(v) => P::Boolean(v),
        P2::Int8(v) => P::Int8(v),
        P2::Int16(v) => P::Int16(v),
        P2::Int32(v) => P::Int32(v),
        P2::Int64(v) => P::Int64(v),
        P2::Uint8(v) => P::Int16(v.into()),
        P2::Uint16(v) => P::Int32(v.into()),
        P2::Uint32(v) => P::Int64(v.into()),
        P2::Uint64(v) => P::Int64(i64::try_from(v).map_err(|_| {
            v2_types::Error::ValueConversionFailed(format!("{v} does not fit a bigint"))
        })?),
        P2::Floating32(v) => P::Floating32(v),
        P2::Floating64(v) => P::Floating64(v),
        P2::Str(v) => P::Str(v),
        P2::Binary(v) => P::Binary(v),
        P2::DbNull => P::DbNull,
    })
}

fn v2_value(v: v4::DbValue) -> v2_types::DbValue {
    use v2_types::DbValue as V2;
    use v4::DbValue as V;
    match v {
        V::Boolean(b) => V2::Boolean(b),
        V::Int8(i) => V2::Int8(i),
        V::Int16(i) => V2::Int16(i),
        V::Int32(i) => V2::Int32(i),
        V::Int64(i) => V2::Int64(i),
        V::Floating32(f) => V2::Floating32(f),
        V::Floating64(f) => V2::Floating64(f),
        V::Str(s) => V2::Str(s),
        V::Binary(b) => V2::Binary(b),
        V::DbNull => V2::DbNull,
        _ => V2::Unsupported,
    }
}

fn v2_data_type(t: v4::DbDataType) -> v2_types::DbDataType {
    use v2_types::DbDataType as D2;
    use v4::DbDataType as D;
    match t {
        D::Boolean => D2::Boolean,
        D::Int8 => D2::Int8,
        D::Int16 => D2::Int16,
        D::Int32 => D2::Int32,
        D::Int64 => D2::Int64,
        D::Floating32 => D2::Floating32,
        D::Floating64 => D2::Floating64,
        D::Str => D2::Str,
        D::Binary => D2::Binary,
        _ => D2::Other,
    }
}

impl v2_types::Host for StoreState {}
impl v2::Host for StoreState {}

impl v2::HostConnection for StoreState {
    async fn open(
        &mut self,
        address: String,
    ) -> Trap<Result<Resource<PgConnection>, v2_types::Error>> {
        match open(&self.spin, &address).await {
            Ok(conn) => Ok(Ok(self.table.push(conn)?)),
            Err(e) => Ok(Err(v2_error(e))),
        }
    }

    async fn query(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<v2_types::ParameterValue>,
    ) -> Trap<Result<v2_types::RowSet, v2_types::Error>> {
        let client = self.pg_client(&this)?;
        let params = match v2_parameters(params) {
            Ok(params) => params,
            Err(e) => return Ok(Err(e)),
        };
        Ok(query(client, statement, params)
            .await
            .map(|set| v2_types::RowSet {
                columns: set
                    .columns
                    .into_iter()
                    .map(|c| v2_types::Column {
                        name: c.name,
                        data_type: v2_data_type(c.data_type),
                    })
                    .collect(),
                rows: set
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(v2_value).collect())
                    .collect(),
            })
            .map_err(v2_error))
    }

    async fn execute(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<v2_types::ParameterValue>,
    ) -> Trap<Result<u64, v2_types::Error>> {
        let client = self.pg_client(&this)?;
        let params = match v2_parameters(params) {
            Ok(params) => params,
            Err(e) => return Ok(Err(e)),
        };
        Ok(execute(client, statement, params).await.map_err(v2_error))
    }

    async fn drop(&mut self, this: Resource<PgConnection>) -> Trap<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
