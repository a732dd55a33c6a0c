//! alchemix-api: the AlcheMix API alone as a WASI 0.3 component (spin-sdk 7), the app that
//! edge-guard fronts as Spin 4.1 middleware (`dependencies.middleware`). It trusts the
//! guard's `x-edge-` headers because the chain is the only way in.

#![cfg(target_arch = "wasm32")]

use alchemix_edge::api;
use alchemix_edge::http::{Request, Response};
use alchemix_edge_adapter_wasip3::{export_handler, Instance};

export_handler!(serve);

async fn serve(req: &Request, instance: &Instance) -> Response {
    api::serve(req, &instance.config, &*instance.db, &instance.link()).await
}
