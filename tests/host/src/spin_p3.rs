//! The Spin interfaces of a WASI 0.3 component (`spin:redis/redis@3.0.0`,
//! `spin:sqlite/sqlite@3.1.0`, `spin:variables/variables@3.0.0`), with the same semantics as
//! their WASI 0.2 versions in `spin_impl`. The async functions take the store only to reach
//! its table, and await Redis without it, so the requests an instance serves concurrently
//! wait on Redis together.

use wasmtime::component::{Accessor, HasSelf, Resource};

use crate::spin_impl::{self, bindings as p2, RedisConnection, SqliteConnection};
use crate::StoreState;

pub mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "spin-imports-p3",
        imports: {
            "spin:redis/redis.[static]connection.open": async | store | trappable,
            "spin:redis/redis.[method]connection.execute": async | store | trappable,
            "spin:variables/variables.get": async | store | trappable,
            default: async | trappable,
        },
        with: {
            "spin:redis/redis.connection": crate::spin_impl::RedisConnection,
            "spin:sqlite/sqlite.connection": crate::spin_impl::SqliteConnection,
            "spin:postgres/postgres.connection": crate::spin_pg::PgConnection,
        },
    });
}

use bindings::spin::redis::redis;
use bindings::spin::sqlite::sqlite;
use bindings::spin::variables::variables;

type Trap<T> = wasmtime::Result<T>;
type Spin = HasSelf<StoreState>;

pub fn add_to_linker(linker: &mut wasmtime::component::Linker<StoreState>) -> Trap<()> {
    bindings::SpinImportsP3::add_to_linker::<_, Spin>(linker, |s| s)
}

fn redis_error(e: p2::fermyon::spin::redis::Error) -> redis::Error {
    use p2::fermyon::spin::redis::Error as E;
    match e {
        E::InvalidAddress => redis::Error::InvalidAddress,
        E::TooManyConnections => redis::Error::TooManyConnections,
        E::TypeError => redis::Error::TypeError,
        E::Other(m) => redis::Error::Other(m),
    }
}

impl redis::Host for StoreState {}

impl redis::HostConnection for StoreState {
    async fn drop(&mut self, this: Resource<RedisConnection>) -> Trap<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl<U> redis::HostConnectionWithStore<U> for Spin {
    async fn open(
        store: &Accessor<U, Self>,
        address: String,
    ) -> Trap<Result<Resource<RedisConnection>, redis::Error>> {
        let spin = store.with(|mut view| view.get().spin.clone());
        match spin_impl::open_redis(&spin, &address).await {
            Ok(conn) => store.with(|mut view| Ok(Ok(view.get().table.push(conn)?))),
            Err(e) => Ok(Err(redis_error(e))),
        }
    }

    async fn execute(
        store: &Accessor<U, Self>,
        this: Resource<RedisConnection>,
        command: String,
        arguments: Vec<redis::RedisParameter>,
    ) -> Trap<Result<Vec<redis::RedisResult>, redis::Error>> {
        use p2::fermyon::spin::redis::{RedisParameter as P, RedisResult as R};
        let conn = store.with(|mut view| view.get().table.get(&this).map(|c| c.conn.clone()))?;
        let arguments = arguments
            .into_iter()
            .map(|a| match a {
                redis::RedisParameter::Int64(i) => P::Int64(i),
                redis::RedisParameter::Binary(b) => P::Binary(b),
            })
            .collect();
        Ok(spin_impl::execute_redis(conn, &command, arguments)
            .await
            .map(|results| {
                results
                    .into_iter()
                    .map(|r| match r {
                        R::Nil => redis::RedisResult::Nil,
                        R::Status(s) => redis::RedisResult::Status(s),
                        R::Int64(i) => redis::RedisResult::Int64(i),
                        R::Binary(b) => redis::RedisResult::Binary(b),
                    })
                    .collect()
            })
            .map_err(redis_error))
    }
}

fn sqlite_error(e: p2::fermyon::spin::sqlite::Error) -> sqlite::Error {
    use p2::fermyon::spin::sqlite::Error as E;
    match e {
        E::NoSuchDatabase => sqlite::Error::NoSuchDatabase,
        E::AccessDenied => sqlite::Error::AccessDenied,
        E::InvalidConnection => sqlite::Error::InvalidConnection,
        E::DatabaseFull => sqlite::Error::DatabaseFull,
        E::Io(m) => sqlite::Error::Io(m),
    }
}

impl sqlite::Host for StoreState {}

impl sqlite::HostConnection for StoreState {
    async fn open(
        &mut self,
        database: String,
    ) -> Trap<Result<Resource<SqliteConnection>, sqlite::Error>> {
        match spin_impl::open_sqlite(&self.spin, &database) {
            Ok(conn) => Ok(Ok(self.table.push(conn)?)),
            Err(e) => Ok(Err(sqlite_error(e))),
        }
    }

    async fn execute(
        &mut self,
        this: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> Trap<Result<sqlite::QueryResult, sqlite::Error>> {
        use p2::fermyon::spin::sqlite::Value as V;
        let conn = self.table.get(&this)?.conn.clone();
        let parameters = parameters
            .into_iter()
            .map(|v| match v {
                sqlite::Value::Integer(i) => V::Integer(i),
                sqlite::Value::Real(f) => V::Real(f),
                sqlite::Value::Text(s) => V::Text(s),
                sqlite::Value::Blob(b) => V::Blob(b),
                sqlite::Value::Null => V::Null,
            })
            .collect();
        let result = spin_impl::execute_sqlite(conn, statement, parameters).await?;
        Ok(result
            .map(|r| sqlite::QueryResult {
                columns: r.columns,
                rows: r
                    .rows
                    .into_iter()
                    .map(|row| sqlite::RowResult {
                        values: row
                            .values
                            .into_iter()
                            .map(|v| match v {
                                V::Integer(i) => sqlite::Value::Integer(i),
                                V::Real(f) => sqlite::Value::Real(f),
                                V::Text(s) => sqlite::Value::Text(s),
                                V::Blob(b) => sqlite::Value::Blob(b),
                                V::Null => sqlite::Value::Null,
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .map_err(sqlite_error))
    }

    async fn drop(&mut self, this: Resource<SqliteConnection>) -> Trap<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl variables::Host for StoreState {}

impl<U> variables::HostWithStore<U> for Spin {
    async fn get(
        store: &Accessor<U, Self>,
        name: String,
    ) -> Trap<Result<String, variables::Error>> {
        use p2::fermyon::spin::variables::Error as E;
        let found = store.with(|mut view| spin_impl::variable(&view.get().spin, name));
        Ok(found.map_err(|e| match e {
            E::InvalidName(m) => variables::Error::InvalidName(m),
            E::Undefined(m) => variables::Error::Undefined(m),
            E::Provider(m) => variables::Error::Provider(m),
            E::Other(m) => variables::Error::Other(m),
        }))
    }
}
