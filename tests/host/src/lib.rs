//! edge-host: a small Spin-compatible runner for alchemix-edge on the wasmtime crates.
//!
//! It reads `spin.toml` and `runtime-config.toml`, resolves variables like Spin, and serves the
//! component over HTTP with a fresh instance per request. Tests can also call [`App::handle`]
//! in process, without a socket.

pub mod manifest;
pub mod outbound;
pub mod runtime_config;
mod server;
mod spin_impl;
pub mod variables;

pub use server::{App, AppOptions};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The per-request store data.
pub struct StoreState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    spin: std::sync::Arc<spin_impl::SpinState>,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}
