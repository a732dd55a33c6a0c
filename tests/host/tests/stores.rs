//! One behavioural suite, run against both stores: Redis (shared by instances) and the
//! embedded SQLite store (`redis_address = ""`, instances sharing one state dir).

mod support;

use std::sync::{Arc, Barrier};

use serde_json::json;
use support::*;

/// `n` instances on the backend, sharing one state dir; the Redis server (if any) lives as long.
fn instances(redis: Option<&RedisServer>, n: usize) -> (Vec<Edge>, TempDir) {
    let state = TempDir::new();
    let address = redis.map(RedisServer::url).unwrap_or_default();
    let edges = (0..n)
        .map(|_| Edge::builder(&address).state_dir(&state.0).start())
        .collect();
    (edges, state)
}

fn auth_limit_is_shared_and_counts_only_failures(redis: Option<&RedisServer>) {
    let (edges, _state) = instances(redis, 2);
    signup(&edges[0], "shared@example.com");
    for _ in 0..3 {
        assert_eq!(login(&edges[1], "shared@example.com", PASSWORD).status, 200);
    }
    let statuses: Vec<u16> = (0..7)
        .map(|i| login(&edges[i % 2], "shared@example.com", "wrong-wrong").status)
        .collect();
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    let r = login(&edges[0], "shared@example.com", PASSWORD);
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
}

fn revocations_hold_on_every_instance(redis: Option<&RedisServer>) {
    let (edges, _state) = instances(redis, 2);
    let first = signup(&edges[0], "rev@example.com");
    let second = login_token(&edges[1], "rev@example.com");
    assert_eq!(
        post(&edges[1].url("/auth/logout"), Some(&first), json!({})).status,
        200
    );
    let r = get(&edges[0].url("/auth/me"), Some(&first));
    assert_eq!(
        (r.status, r.error()),
        (401, "Token has been revoked. Please login again.")
    );
    assert_eq!(get(&edges[0].url("/auth/me"), Some(&second)).status, 200);
    assert_eq!(
        post(&edges[0].url("/auth/logout-all"), Some(&second), json!({})).status,
        200
    );
    let r = get(&edges[1].url("/auth/me"), Some(&second));
    assert_eq!(
        (r.status, r.error()),
        (401, "Token has been invalidated. Please login again.")
    );
    let third = login_token(&edges[1], "rev@example.com");
    assert_eq!(get(&edges[0].url("/auth/me"), Some(&third)).status, 200);
}

fn concurrent_failures_admit_exactly_the_limit(redis: Option<&RedisServer>) {
    let (edges, _state) = instances(redis, 3);
    let edges = Arc::new(edges);
    let n = 120;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (edges, barrier) = (edges.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                login(&edges[i % 3], "target@example.com", "guess-guess").status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let admitted = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((admitted, limited), (5, n - 5), "{statuses:?}");
}

fn login_failures_per_account_reset_on_success(redis: Option<&RedisServer>) {
    let address = redis.map(RedisServer::url).unwrap_or_default();
    let edge = Edge::builder(&address)
        .var("auth_rate_limit", "6/15m")
        .var("login_rate_limit", "3/15m")
        .start();
    signup(&edge, "a@example.com");
    signup(&edge, "b@example.com");
    let attempt = |email: &str, password: &str| login(&edge, email, password).status;
    assert_eq!(
        [
            attempt("a@example.com", "bad-1"),
            attempt("a@example.com", "bad-2")
        ],
        [401, 401]
    );
    // A success clears the account's failures, but the address keeps its two.
    assert_eq!(attempt("a@example.com", PASSWORD), 200);
    for _ in 0..3 {
        assert_eq!(attempt("a@example.com", "bad-again"), 401);
    }
    // The account is now locked for this address, even with the right password...
    assert_eq!(attempt("A@Example.com ", PASSWORD), 429);
    // ...while another account may still try, until the address budget (6 failures) is spent.
    assert_eq!(attempt("b@example.com", "bad-b"), 401);
    assert_eq!(attempt("b@example.com", "bad-b"), 429);
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod redis_store {
            use super::*;
            $(#[test] fn $name() { let redis = RedisServer::start(); super::$name(Some(&redis)); })*
        }
        mod embedded_store {
            $(#[test] fn $name() { super::$name(None); })*
        }
    };
}

both_stores!(
    auth_limit_is_shared_and_counts_only_failures,
    revocations_hold_on_every_instance,
    concurrent_failures_admit_exactly_the_limit,
    login_failures_per_account_reset_on_success,
);

#[test]
fn embedded_store_reports_itself_in_health_and_touches_no_redis() {
    let edge = Edge::builder("").start();
    let r = get(&edge.url("/health"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["services"],
        json!({"redis": "embedded", "database": "ok"})
    );
}
