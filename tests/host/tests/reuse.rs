//! Instance reuse as Spin 4.1 does it: a WASI 0.3 instance serves many requests, several at
//! once, on the Redis connection it keeps; a WASI 0.2 component gets a fresh instance, and so a
//! new Redis connection, per request. Nothing of one request is seen by another.

mod support;

use std::sync::{Arc, Barrier};

use serde_json::json;
use support::*;

fn is_wasip3() -> bool {
    manifest().ends_with("spin.toml")
}

fn connections_received(redis: &RedisServer) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut redis.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// `n` sequential `GET /auth/me` on one kept-alive connection.
fn me_requests(edge: &Edge, token: &str, n: usize) {
    let http = client();
    for _ in 0..n {
        let r = http
            .get(edge.url("/auth/me"))
            .bearer_auth(token)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[test]
fn concurrent_requests_of_different_users_see_only_their_own() {
    let redis = RedisServer::start();
    let edge = Edge::builder(&redis.url())
        .var("api_rate_limit", "100000/15m")
        .var("user_rate_limit", "100000/15m")
        .arg("--max-instance-reuse-count")
        .arg("100000")
        .start();
    let users: Vec<(String, String)> = (0..8)
        .map(|i| {
            let email = format!("user{i}@example.com");
            let token = signup(&edge, &email);
            let r = post(
                &edge.url("/api/inventory"),
                Some(&token),
                json!({"name": format!("bottle of {email}")}),
            );
            assert_eq!(r.status, 201, "{}", r.text);
            (email, token)
        })
        .collect();
    // 8 users x 4 threads, all released together, so one instance serves 16 at once.
    let barrier = Arc::new(Barrier::new(32));
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let (email, token) = users[i % 8].clone();
            let (me, inventory) = (edge.url("/auth/me"), edge.url("/api/inventory"));
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..10 {
                    let r = get(&me, Some(&token));
                    assert_eq!(r.status, 200, "{}", r.text);
                    assert_eq!(r.body["data"]["email"], email.as_str());
                    let r = get(&inventory, Some(&token));
                    assert_eq!(r.status, 200, "{}", r.text);
                    let rows = r.body["data"].as_array().unwrap();
                    assert_eq!(rows.len(), 1, "{}", r.text);
                    assert_eq!(rows[0]["name"], format!("bottle of {email}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a request saw another user's data");
    }
    // A revoked token stays revoked even on the instance that served it before.
    let (_, token) = &users[0];
    assert_eq!(
        post(&edge.url("/auth/logout"), Some(token), json!({})).status,
        200
    );
    assert_eq!(get(&edge.url("/auth/me"), Some(token)).status, 401);
    assert_eq!(get(&edge.url("/auth/me"), Some(&users[1].1)).status, 200);
}

#[test]
fn a_reused_instance_keeps_its_redis_connection() {
    let redis = RedisServer::start();
    let edge = Edge::builder(&redis.url())
        .var("user_rate_limit", "100000/15m")
        .start();
    let token = signup(&edge, "kept@example.com");
    let before = connections_received(&redis);
    me_requests(&edge, &token, 100);
    // The count includes this test's own INFO connection.
    let opened = connections_received(&redis) - before - 1;
    if is_wasip3() {
        // One instance at a time here (sequential requests): at most a few, never one each.
        assert!(
            opened <= 5,
            "{opened} new Redis connections for 100 requests"
        );
    } else {
        assert!(
            opened >= 100,
            "{opened}: WASI 0.2 opens one per request, as Spin does"
        );
    }
}

#[test]
fn an_instance_is_replaced_after_its_reuse_count() {
    let redis = RedisServer::start();
    let edge = Edge::builder(&redis.url())
        .var("user_rate_limit", "100000/15m")
        .arg("--max-instance-reuse-count")
        .arg("10")
        .arg("--idle-instance-timeout")
        .arg("500ms..2s")
        .start();
    let token = signup(&edge, "count@example.com");
    let before = connections_received(&redis);
    me_requests(&edge, &token, 50);
    let opened = connections_received(&redis) - before - 1;
    if is_wasip3() {
        // A new instance, and so a new connection, every 10 requests.
        assert!((4..=8).contains(&opened), "{opened}");
    }
}
