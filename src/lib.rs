//! alchemix-edge: the AlcheMix API at the edge, as a Spin component.
//!
//! Everything except `component` (Spin's HTTP entry point), `store::redis` and `db::spin`
//! is plain Rust that knows nothing of Spin, and is tested natively.

pub mod answer;
pub mod api;
pub mod chain;
pub mod config;
pub mod cors;
pub mod db;
pub mod error;
pub mod fuzzing;
pub mod guard;
pub mod host;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod pagecache;
pub mod password;
pub mod pipeline;
pub mod policy;
pub mod ratelimit;
pub mod requestlog;
pub mod routes;
pub mod rules;
pub mod store;
pub mod time;
pub mod token;
pub mod validate;
