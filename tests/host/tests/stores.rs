//! One behavioural suite, run against both stores: Redis (shared by instances) and the
//! embedded SQLite store (`redis_address = ""`, instances sharing one state dir).

mod support;

use std::sync::{Arc, Barrier};
use std::time::Duration;

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

const METRICS_TOKEN: &str = "metrics-token-0123456789abcdef-0123456789";

/// One `/metrics` value, by its series (name and labels as written).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

fn fleet_metrics_count_every_instance_decisions(redis: Option<&RedisServer>) {
    let state = TempDir::new();
    let address = redis.map(RedisServer::url).unwrap_or_default();
    let edges: Vec<Edge> = (0..2)
        .map(|_| {
            Edge::builder(&address)
                .var("api_rate_limit", "5/15m")
                .var("metrics_token", METRICS_TOKEN)
                .state_dir(&state.0)
                .start()
        })
        .collect();
    let (a, b) = (&edges[0], &edges[1]);
    let token = signup(a, "counted@example.com");
    let inventory =
        |edge: &Edge, token: Option<&str>| get(&edge.url("/api/inventory"), token).status;
    assert_eq!(
        [inventory(a, Some(&token)), inventory(a, Some(&token))],
        [200, 200]
    );
    assert_eq!(inventory(b, Some("not.a.token")), 401);
    assert_eq!(
        [inventory(b, Some(&token)), inventory(b, Some(&token))],
        [200, 200]
    );
    let limited = [
        inventory(a, Some(&token)),
        inventory(a, None),
        inventory(b, Some(&token)),
    ];
    assert_eq!(limited, [429, 429, 429]);
    assert_eq!(
        post(&a.url("/auth/logout"), Some(&token), json!({})).status,
        200
    );
    assert_eq!(get(&b.url("/auth/me"), Some(&token)).status, 401);

    let scrape = |edge: &Edge| {
        let r = send(
            client()
                .get(edge.url("/metrics"))
                .bearer_auth(METRICS_TOKEN),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        r.text
    };
    let text = scrape(b);
    // Either instance answers for both; scraping counts nothing.
    assert_eq!(scrape(a), text);
    for (decision, n) in [
        ("allowed", 6),
        ("limited", 3),
        ("unauthenticated", 1),
        ("revoked", 1),
    ] {
        for window in ["5m", "1h"] {
            let series =
                format!("alchemix_edge_decisions{{decision=\"{decision}\",window=\"{window}\"}}");
            assert_eq!(metric(&text, &series), n, "{series}");
        }
    }
    let api = |counter: &str| {
        metric(
            &text,
            &format!("alchemix_edge_ratelimit_{counter}{{policy=\"api\",window=\"5m\"}}"),
        )
    };
    // Five admitted (the fourth and fifth at 80% or more), three refused.
    assert_eq!(
        (api("total_hits"), api("near_limit"), api("over_limit")),
        (8, 2, 3)
    );
    assert_eq!(
        metric(&text, "alchemix_edge_ratelimit_limit{policy=\"api\"}"),
        5
    );
    assert_eq!(
        metric(
            &text,
            "alchemix_edge_ratelimit_window_seconds{policy=\"api\"}"
        ),
        900
    );
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
    fleet_metrics_count_every_instance_decisions,
    auth_limit_is_shared_and_counts_only_failures,
    revocations_hold_on_every_instance,
    concurrent_failures_admit_exactly_the_limit,
    login_failures_per_account_reset_on_success,
);

#[test]
fn embedded_store_sweeps_the_slots_no_check_reads_any_more() {
    let state = TempDir::new();
    let edge = Edge::builder("")
        .state_dir(&state.0)
        .var("auth_rate_limit", "50/1s")
        .var("login_rate_limit", "50/1s")
        .start();
    let keys = || -> Vec<String> {
        let db = rusqlite::Connection::open(state.0.join("sqlite_db.db")).unwrap();
        let mut rows = db.prepare("SELECT key FROM edge_counters").unwrap();
        let keys = rows.query_map([], |row| row.get(0)).unwrap();
        keys.map(Result::unwrap).collect()
    };
    assert_eq!(login(&edge, "sweep@example.com", "wrong-wrong").status, 401);
    let first = keys();
    assert_eq!(
        first.len(),
        2,
        "the address's slot and the account's: {first:?}"
    );
    // A slot is read for two windows, and kept a second longer.
    std::thread::sleep(Duration::from_millis(3_100));
    assert_eq!(login(&edge, "sweep@example.com", "wrong-wrong").status, 401);
    let second = keys();
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(
        second.iter().all(|k| !first.contains(k)),
        "{first:?} {second:?}"
    );
}

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
