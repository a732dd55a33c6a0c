//! A response's head and body leave together: edge-host leaves `TCP_NODELAY` off as Spin does,
//! so a body sent after its head would wait for the client's delayed ACK (~40 ms). Its own
//! test binary, so no other test shares the cores while it times requests.

mod support;

use serde_json::json;
use support::*;

fn roomy(redis: &RedisServer) -> EdgeBuilder {
    Edge::builder(&redis.url())
        .var("api_rate_limit", "100000/15m")
        .var("user_rate_limit", "100000/15m")
}

#[test]
fn keep_alive_responses_do_not_wait_for_a_delayed_ack() {
    let redis = RedisServer::start();
    let edge = roomy(&redis).start();
    let t = signup(&edge, "nagle@example.com");
    for i in 0..10 {
        post(
            &edge.url("/api/inventory"),
            Some(&t),
            json!({"name": format!("Bottle {i}")}),
        );
    }
    // One client, one kept-alive connection; edge-host leaves TCP_NODELAY off, as Spin does,
    // so a body sent after its head would wait ~40 ms for the client's delayed ACK.
    let http = client();
    for path in ["/no/such/route", "/api/inventory"] {
        let mut times: Vec<std::time::Duration> = (0..30)
            .map(|_| {
                let started = std::time::Instant::now();
                let r = http.get(edge.url(path)).bearer_auth(&t).send().unwrap();
                let _ = r.bytes().unwrap();
                started.elapsed()
            })
            .collect();
        times.sort();
        let median = times[times.len() / 2];
        // A read from PostgreSQL (in the suite's PostgreSQL run) costs its own round trips,
        // still far below the 40 ms a stall would add.
        let bound = if pg::on_postgres() && path.starts_with("/api") {
            20
        } else {
            5
        };
        assert!(
            median < std::time::Duration::from_millis(bound),
            "{path}: median {median:?} over {times:?}"
        );
    }
}
