//! Loading an app and serving it: one pre-instantiated component, one fresh instance per request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy, Store,
};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::io::TokioIo;

use wasmtime_wasi_http::handler::{
    HandlerState, Instance, Proxy, ProxyHandler, ShouldAccept, WorkerExpiration, WorkerState,
    WorkerStatus,
};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::compose::{self, Inherit, Middleware};
use crate::manifest::{route_matches, InheritDecl, Manifest};
use crate::outbound::{AllowedHost, AllowedHosts};
use crate::reuse::Span;
use crate::runtime_config::{RuntimeConfig, SqliteDecl};
use crate::spin_impl::{bindings, SpinState, SqliteDatabase};
use crate::variables::Resolver;
use crate::{GrowthLog, StoreState};

/// Spin's default cap on concurrent outbound Redis connections per app.
const DEFAULT_REDIS_CONNECTIONS: usize = 1024;

/// How to load an app: the same knobs as `spin up`.
#[derive(Debug, Clone)]
pub struct AppOptions {
    pub manifest: PathBuf,
    pub runtime_config: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    /// Extra variables that win over the environment, like `spin up --variable`.
    pub variables: Vec<(String, String)>,
    pub reuse: Reuse,
}

/// How Spin 4.1 reuses the instance of a WASI 0.3 component (`spin up`'s defaults); a WASI 0.2
/// component gets a fresh instance per request whatever these say, as in Spin. Each new
/// instance draws its own values from the spans.
#[derive(Debug, Clone, Copy)]
pub struct Reuse {
    /// Requests one instance serves before it is dropped.
    pub max_count: Span<usize>,
    /// Requests one instance serves at once.
    pub max_concurrent: Span<usize>,
    /// How long an idle instance is kept.
    pub idle_timeout: Span<Duration>,
}

impl Default for Reuse {
    fn default() -> Self {
        Self {
            max_count: Span::Value(128),
            max_concurrent: Span::Value(16),
            idle_timeout: Span::Value(Duration::from_secs(1)),
        }
    }
}

/// One instance's draw from [`Reuse`].
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_count: usize,
    max_concurrent: usize,
}

impl AppOptions {
    pub fn new(manifest: impl Into<PathBuf>) -> Self {
        Self {
            manifest: manifest.into(),
            runtime_config: None,
            state_dir: None,
            variables: Vec::new(),
            reuse: Reuse::default(),
        }
    }
}

pub struct App {
    world: World,
    routes: Vec<String>,
    component_id: String,
}

/// The two worlds, each served the way Spin 4.1 serves it.
enum World {
    /// `wasi:http/incoming-handler@0.2`: a fresh instance per request.
    P2 {
        pre: ProxyPre<StoreState>,
        stores: Stores,
    },
    /// `wasi:http/handler@0.3`: instances reused through wasmtime's `ProxyHandler`.
    P3(ProxyHandler<P3Instances>),
}

/// What a new store of the app is made from.
#[derive(Clone)]
struct Stores {
    engine: Engine,
    spin: Arc<SpinState>,
    growth: GrowthLog,
}

impl Stores {
    fn new_store(&self) -> Store<StoreState> {
        let mut store = Store::new(
            &self.engine,
            StoreState {
                wasi: WasiCtx::builder().inherit_stdout().inherit_stderr().build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                spin: self.spin.clone(),
                growth: self.growth,
            },
        );
        store.limiter(|s| &mut s.growth);
        // No request deadline is configured (as in `spin up`), so the epoch never interrupts.
        store.set_epoch_deadline(u64::MAX / 2);
        store
    }
}

/// Spin's instance reuse for WASI 0.3 components.
struct P3Instances {
    pre: ServicePre<StoreState>,
    stores: Stores,
    reuse: Reuse,
}

impl HandlerState for P3Instances {
    type StoreData = StoreState;
    type WorkerExpiration = IdleExpiry;
    type WorkerState = ReusePolicy;

    async fn instantiate(&self) -> wasmtime::Result<Instance<StoreState, IdleExpiry, ReusePolicy>> {
        let mut store = self.stores.new_store();
        let proxy = Proxy::P3(self.pre.instantiate_async(&mut store).await?);
        Ok(Instance {
            store,
            proxy,
            view: |s: &mut StoreState| s.http(),
            expiration: IdleExpiry {
                idle: self.reuse.idle_timeout.pick(),
                sleep: Box::pin(tokio::time::sleep(Duration::MAX)),
            },
            state: ReusePolicy(Limits {
                max_count: self.reuse.max_count.pick(),
                max_concurrent: self.reuse.max_concurrent.pick(),
            }),
        })
    }
}

/// An instance is dropped once idle for `idle`; a request has no deadline (as `spin up`).
struct IdleExpiry {
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for IdleExpiry {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let me = self.get_mut();
        if status != WorkerStatus::Idle {
            return Poll::Pending;
        }
        let Some(deadline) = start.checked_add(me.idle) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if me.sleep.deadline() != deadline {
            me.sleep.as_mut().reset(deadline);
        }
        me.sleep.as_mut().poll(cx)
    }
}

struct ReusePolicy(Limits);

impl WorkerState for ReusePolicy {
    type StoreData = StoreState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.0.max_count {
            ShouldAccept::Never
        } else if concurrent >= self.0.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: wasmtime::StoreContextMut<'_, StoreState>,
        _data: (),
        _task: wasmtime::component::GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        Box::pin(std::future::pending())
    }

    fn drop(&self, store: Store<StoreState>, result: wasmtime::Result<()>) {
        if let Err(e) = result {
            eprintln!("edge-host: instance failed: {e:?}");
        }
        drop(store);
    }
}

impl App {
    /// Reads the manifest and runtime config, resolves variables and compiles the component.
    pub fn load(opts: &AppOptions) -> Result<Self> {
        let manifest = Manifest::load(&opts.manifest)?;
        let app_dir = opts
            .manifest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let runtime = match &opts.runtime_config {
            Some(path) => RuntimeConfig::load(path)?,
            None => RuntimeConfig::default(),
        };
        let (component_id, decl, routes) = manifest.http_component()?;

        let overrides: HashMap<String, String> = opts.variables.iter().cloned().collect();
        let env = |name: &str| {
            let key = name
                .strip_prefix("SPIN_VARIABLE_")
                .map(str::to_ascii_lowercase)
                .unwrap_or_default();
            overrides
                .get(&key)
                .cloned()
                .or_else(|| std::env::var(name).ok())
        };
        let resolver = Resolver::new(&manifest.variables, &runtime, &env)?;
        let mut variables = HashMap::new();
        for (key, template) in &decl.variables {
            variables.insert(key.clone(), resolver.expand(template)?);
        }
        // Like Spin's loader: a literal entry must parse before the app starts; a templated one
        // is only parsed on use, once resolved, and one that resolves to nothing is an optional
        // endpoint left unset (`{{ database_address }}` with the embedded database): skipped.
        let mut resolved = Vec::with_capacity(decl.allowed_outbound_hosts.len());
        for rule in &decl.allowed_outbound_hosts {
            if !rule.contains("{{") {
                AllowedHost::parse(rule).context("`allowed_outbound_hosts` is malformed")?;
                resolved.push(rule.clone());
                continue;
            }
            let rule = resolver.expand(rule)?;
            if !matches!(rule.as_str(), "" | "http://" | "https://") {
                resolved.push(rule);
            }
        }
        let allowed_hosts = AllowedHosts::parse(&resolved);

        let state_dir = opts
            .state_dir
            .clone()
            .or_else(|| runtime.state_dir.as_ref().map(|d| runtime.resolve(d)))
            .unwrap_or_else(|| app_dir.join(".spin"));
        let mut sqlite = HashMap::new();
        for label in &decl.sqlite_databases {
            let location = match runtime.sqlite_database.get(label) {
                Some(SqliteDecl::Spin { path: Some(path) }) => Some(runtime.resolve(path)),
                Some(SqliteDecl::Spin { path: None }) => None,
                Some(SqliteDecl::Libsql { .. }) => {
                    bail!("sqlite_database.{label}: libsql is not supported by edge-host")
                }
                None if label == "default" => {
                    let dir = state_dir.to_string_lossy();
                    (!dir.is_empty()).then(|| state_dir.join("sqlite_db.db"))
                }
                None => bail!(
                    "component {component_id} uses sqlite database {label:?}, \
                     which runtime-config.toml does not define"
                ),
            };
            sqlite.insert(label.clone(), SqliteDatabase::open(location)?);
        }
        let max_redis = runtime
            .outbound_redis
            .as_ref()
            .and_then(|r| r.max_connections)
            .unwrap_or(DEFAULT_REDIS_CONNECTIONS);
        let spin = Arc::new(SpinState {
            variables,
            allowed_hosts,
            redis_permits: Arc::new(Semaphore::new(max_redis)),
            sqlite,
            postgres: Default::default(),
        });

        let engine = engine()?;
        let bytes = composed(&manifest, &app_dir, &decl.source)?;
        let component = Component::new(&engine, &bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot load component {}", decl.source))?;
        let mut linker = Linker::<StoreState>::new(&engine);
        // Rust's standard library imports WASI 0.2 in both worlds.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        let stores = Stores {
            engine: engine.clone(),
            spin,
            growth: GrowthLog {
                enabled: std::env::var_os("EDGE_HOST_LOG_MEMORY_GROWTH").is_some(),
            },
        };
        let is_p3 = component
            .component_type()
            .exports(&engine)
            .any(|(name, _)| name.starts_with("wasi:http/handler@0.3"));
        let world = if is_p3 {
            wasmtime_wasi::p3::add_to_linker(&mut linker)?;
            wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
            crate::spin_p3::add_to_linker(&mut linker)?;
            let pre = ServicePre::new(linker.instantiate_pre(&component)?)?;
            World::P3(ProxyHandler::new(P3Instances {
                pre,
                stores,
                reuse: opts.reuse,
            }))
        } else {
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
            bindings::SpinImports::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)?;
            let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
            World::P2 { pre, stores }
        };
        Ok(Self {
            world,
            routes: routes.into_iter().map(String::from).collect(),
            component_id: component_id.to_string(),
        })
    }

    /// Serves one request through a fresh instance of the component.
    pub async fn handle<B>(
        &self,
        req: hyper::Request<B>,
        client: SocketAddr,
    ) -> Result<hyper::Response<HyperOutgoingBody>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let path = req.uri().path().to_string();
        let Some(route) = self.routes.iter().find(|r| route_matches(r, &path)) else {
            return Ok(plain(404, "Not Found"));
        };
        let req = with_spin_headers(req, route, client);
        let (pre, stores) = match &self.world {
            World::P2 { pre, stores } => (pre, stores),
            World::P3(handler) => {
                let req = req.map(|body| body.map_err(Into::into).boxed_unsync());
                let resp = handler
                    .handle((), req)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e:?}"))
                    .with_context(|| format!("component {} failed", self.component_id))?;
                return Ok(resp);
            }
        };
        let mut store = stores.new_store();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = pre.clone();
        let task = tokio::task::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });
        match receiver.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                let e = match task.await {
                    Ok(Ok(())) => anyhow::anyhow!("component never set a response"),
                    Ok(Err(e)) => e.into(),
                    Err(e) => e.into(),
                };
                Err(e.context(format!("component {} failed", self.component_id)))
            }
        }
    }

    /// Calls the component in process and collects the whole response.
    pub async fn call(
        &self,
        req: hyper::Request<Full<Bytes>>,
        client: SocketAddr,
    ) -> Result<hyper::Response<Bytes>> {
        let resp = self.handle(req, client).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(hyper::Response::from_parts(parts, body))
    }

    /// Accepts connections until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => accepted?,
                () = &mut shutdown => return Ok(()),
            };
            // No `TCP_NODELAY`, as in Spin: a response whose body leaves after its head waits
            // for the client's delayed ACK here exactly as it would there.
            let app = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(app.respond(req, peer).await) }
                });
                // Client resets and half-closed sockets are routine; nothing to report.
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn respond(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> hyper::Response<HyperOutgoingBody> {
        match self.handle(req, peer).await {
            Ok(resp) => resp,
            Err(e) => {
                eprintln!("edge-host: request failed: {e:#}");
                plain(500, "")
            }
        }
    }
}

fn plain(status: u16, body: &'static str) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(body.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    resp
}

/// Spin's trigger headers, replacing any a client sent: the component trusts them.
fn with_spin_headers<B>(
    mut req: hyper::Request<B>,
    route: &str,
    client: SocketAddr,
) -> hyper::Request<B> {
    let path = req.uri().path().to_string();
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let full_url = format!(
        "http://{host}{}",
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let base = route.strip_suffix("/...").unwrap_or(route);
    let path_info = if route.ends_with("/...") {
        path.strip_prefix(base).unwrap_or(&path).to_string()
    } else {
        String::new()
    };
    let headers = req.headers_mut();
    let stale: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for key in stale {
        headers.remove(key);
    }
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = hyper::header::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set("spin-full-url", &full_url);
    set("spin-path-info", &path_info);
    set("spin-matched-route", route);
    set("spin-base-path", "/");
    set("spin-raw-component-route", route);
    set("spin-component-route", base);
    set("spin-client-addr", &client.to_string());
    if !req.headers().contains_key(hyper::header::HOST) {
        req.headers_mut().insert(
            hyper::header::HOST,
            hyper::header::HeaderValue::from_static("localhost"),
        );
    }
    req
}

/// Spin's engine settings: pooling allocator with its default sizes and resident memory,
/// and epoch interruption (whose checks every guest loop pays).
fn engine() -> Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model_async(true);
    // `perf` names guest functions from /tmp/perf-<pid>.map (as `wasmtime serve --profile perfmap`).
    if std::env::var_os("EDGE_HOST_PERFMAP").is_some() {
        config.profiler(ProfilingStrategy::PerfMap);
    }
    // valgrind cannot reserve the pool's address space (terabytes of guard regions), so the
    // instruction counts (`scripts/instructions`) run on the on-demand allocator.
    if std::env::var_os("EDGE_HOST_VALGRIND").is_some() {
        return Ok(Engine::new(&config)?);
    }
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(1000)
        .total_memories(1000)
        .total_tables(2000)
        .total_stacks(1000)
        .total_core_instances(4000)
        .max_memory_size(4 << 30)
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(1 << 19);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// The trigger's component, composed behind its middleware if the trigger names any.
fn composed(manifest: &Manifest, app_dir: &Path, source: &str) -> Result<Vec<u8>> {
    let read = |source: &str| {
        let path = app_dir.join(source);
        std::fs::read(&path).with_context(|| {
            format!(
                "cannot load component {} (build it first: `edge-host up --build`)",
                path.display()
            )
        })
    };
    let primary = read(source)?;
    let mut chain = Vec::new();
    for entry in manifest.middleware()? {
        let (name, source) = match (&entry.component, &entry.path) {
            (Some(id), _) => {
                let decl = manifest
                    .component
                    .get(id)
                    .with_context(|| format!("middleware names unknown component {id}"))?;
                (id.clone(), decl.source.clone())
            }
            (None, Some(path)) => (path.clone(), path.clone()),
            (None, None) => bail!("a middleware entry names either `component` or `path`"),
        };
        let inherit = match &entry.inherit_configuration {
            Some(InheritDecl::All(true)) => Inherit::All,
            Some(InheritDecl::All(false)) | None => Inherit::Sets(Vec::new()),
            Some(InheritDecl::Sets(sets)) => Inherit::Sets(sets.clone()),
        };
        chain.push(Middleware {
            name,
            bytes: read(&source)?,
            inherit,
        });
    }
    compose::compose(primary, &chain)
}
