//! edge-host as a library: the component called in process, without a socket.

mod support;

use bytes::Bytes;
use edge_host::{App, AppOptions};
use http_body_util::Full;
use support::*;

#[test]
fn library_calls_the_component_without_a_socket() {
    let redis = RedisServer::start();
    let state = TempDir::new();
    let mut opts = AppOptions::new(manifest());
    opts.state_dir = Some(state.0.clone());
    opts.variables = vec![
        ("jwt_secret".into(), SECRET.into()),
        ("redis_address".into(), redis.url()),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let app = App::load(&opts).unwrap();
        let req = hyper::Request::get("http://localhost/health")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = app.call(req, "127.0.0.1:9".parse().unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["status"], "ok");
    });
}
