//! alchemix-edge as a WASI 0.3 component (spin-sdk 7, `wasi:http/handler@0.3.0`), for Spin 4.1
//! and later: the guard and the API in one component, on the world's adapter
//! (`alchemix-edge-adapter-wasip3`), which keeps the instance's connections and configuration.

#![cfg(target_arch = "wasm32")]

use alchemix_edge::http::{Request, Response};
use alchemix_edge::pipeline;
use alchemix_edge_adapter_wasip3::{export_handler, Instance};

export_handler!(serve);

async fn serve(req: &Request, instance: &Instance) -> Response {
    pipeline::serve(req, &instance.config, &*instance.db, &instance.link()).await
}
