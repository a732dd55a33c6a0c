//! edge-host: a small Spin-compatible runner for alchemix-edge on the wasmtime crates.
//!
//! It reads `spin.toml` and `runtime-config.toml`, resolves variables like Spin, and serves the
//! component over HTTP with a fresh instance per request. Tests can also call [`App::handle`]
//! in process, without a socket.

pub mod compose;
pub mod manifest;
pub mod outbound;
pub mod reuse;
pub mod runtime_config;
mod server;
mod spin_impl;
mod spin_p3;
mod spin_pg;
pub mod variables;

pub use server::{App, AppOptions, Reuse};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The per-request store data.
pub struct StoreState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    spin: std::sync::Arc<spin_impl::SpinState>,
    growth: GrowthLog,
}

/// Reports each `memory.grow` of the guest on stderr when `EDGE_HOST_LOG_MEMORY_GROWTH` is set,
/// for `scripts/instructions`. Under the pooling allocator a grown memory is dear: the new pages
/// are made accessible with `mprotect`, and hidden again with another when the next instance
/// takes the slot, and each call flushes the TLB of every core that runs the host. Every growth
/// is allowed; the pool's `max_memory_size` still caps it.
#[derive(Clone, Copy)]
pub(crate) struct GrowthLog {
    pub(crate) enabled: bool,
}

impl wasmtime::ResourceLimiter for GrowthLog {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Instantiation reports the initial size as growth from zero; only `memory.grow` counts.
        if self.enabled && current > 0 {
            eprintln!("edge-host: guest memory grew from {current} to {desired} bytes");
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
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
