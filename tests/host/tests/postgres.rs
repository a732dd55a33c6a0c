//! Past one machine: the data in PostgreSQL, instances that share no state dir (as on three
//! machines) and one Redis. Every test starts its own PostgreSQL server.

mod support;

use serde_json::json;
use support::pg::{PostgresServer, ROLE, ROLE_PASSWORD};
use support::*;

/// An instance on a machine of its own (its own state dir), using `database` on `pg`.
fn machine(redis: &RedisServer, pg: &PostgresServer, database: &str) -> EdgeBuilder {
    Edge::builder(&redis.url())
        .var("database_address", &pg.address())
        .var("database_name", database)
        .var("database_user", ROLE)
        .var("database_password", ROLE_PASSWORD)
        .var("auth_rate_limit", "1000/1m")
        .var("login_rate_limit", "1000/1m")
        .var("api_rate_limit", "1000/1m")
        .var("user_rate_limit", "1000/1m")
}

#[test]
fn three_machines_share_accounts_data_and_logouts() {
    let pg = PostgresServer::start();
    pg.create_database("cellar");
    let mut redis = RedisServer::start();
    let edges: Vec<Edge> = (0..3)
        .map(|_| machine(&redis, &pg, "cellar").start())
        .collect();

    let on_a = signup(&edges[0], "ada@example.com");
    let on_b = login_token(&edges[1], "ada@example.com");
    let r = post(
        &edges[0].url("/api/inventory"),
        Some(&on_a),
        json!({"name": "Rye", "ABV (%)": "45.5", "Stock Number": 3}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = get(&edges[2].url("/api/inventory"), Some(&on_b));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"][0]["name"], "Rye", "{}", r.text);
    assert_eq!(r.body["data"][0]["ABV (%)"], 45.5);
    assert_eq!(r.body["data"][0]["Stock Number"], 3);
    assert_eq!(r.body["pagination"]["total"], 1);
    // The same address in another case is the same account, on any machine.
    let r = post(
        &edges[2].url("/auth/signup"),
        None,
        json!({"email": "ADA@example.com", "password": PASSWORD}),
    );
    assert_eq!(r.status, 400, "{}", r.text);

    assert_eq!(
        post(&edges[0].url("/auth/logout"), Some(&on_a), json!({})).status,
        200
    );
    let survivor = login_token(&edges[2], "ada@example.com");
    assert_eq!(
        post(&edges[1].url("/auth/logout-all"), Some(&on_b), json!({})).status,
        200
    );
    let after_all = login_token(&edges[1], "ada@example.com");

    // Redis loses everything: every machine restores every machine's logouts from PostgreSQL.
    redis.restart();
    for edge in &edges {
        for old in [&on_a, &on_b, &survivor] {
            let r = get(&edge.url("/auth/me"), Some(old));
            assert_eq!(r.status, 401, "{}", r.text);
        }
        let r = get(&edge.url("/auth/me"), Some(&after_all));
        assert_eq!(r.status, 200, "{}", r.text);
    }

    // The record holds digests and the version floor, never a token.
    let mut db = pg.client("cellar");
    let digests: Vec<String> = db
        .query("SELECT digest FROM revoked_tokens", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(digests.len(), 1, "{digests:?}");
    assert!(!digests[0].contains(&on_a) && !on_a.contains(&digests[0]));
    let version: i64 = db
        .query_one(
            "SELECT token_version FROM users WHERE email = 'ada@example.com'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, 1);
    // Limit counters are Redis's: PostgreSQL has no table for them.
    let counters: i64 = db
        .query_one(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'edge_counters'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(counters, 0);
}

#[test]
fn instances_starting_together_migrate_once() {
    let pg = PostgresServer::start();
    pg.create_database("fresh");
    let redis = RedisServer::start();
    let edges: Vec<Edge> = (0..3)
        .map(|_| machine(&redis, &pg, "fresh").start())
        .collect();
    let results: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = edges
            .iter()
            .enumerate()
            .flat_map(|(i, edge)| {
                (0..3).map(move |j| {
                    s.spawn(move || {
                        post(
                            &edge.url("/auth/signup"),
                            None,
                            json!({"email": format!("m{i}{j}@example.com"), "password": PASSWORD}),
                        )
                        .status
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|s| *s == 201), "{results:?}");
    let mut db = pg.client("fresh");
    let versions: Vec<i64> = db
        .query("SELECT version FROM edge_schema ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, vec![1], "each version recorded once");
    let users: i64 = db
        .query_one("SELECT COUNT(*) FROM users", &[])
        .unwrap()
        .get(0);
    assert_eq!(users, 9);
}

#[test]
fn postgres_down_is_a_503_to_retry_and_service_resumes_without_restart() {
    let mut pg = PostgresServer::start();
    pg.create_database("outage");
    let redis = RedisServer::start();
    // A page kept in Redis would still answer the list read; this test is about the database.
    let edge = machine(&redis, &pg, "outage")
        .var("page_cache", "off")
        .start();
    let token = signup(&edge, "grace@example.com");
    assert_eq!(get(&edge.url("/api/inventory"), Some(&token)).status, 200);

    pg.stop();
    let calls = [
        get(&edge.url("/api/inventory"), Some(&token)),
        get(&edge.url("/auth/me"), Some(&token)),
        login(&edge, "grace@example.com", PASSWORD),
        post(
            &edge.url("/auth/signup"),
            None,
            json!({"email": "new@example.com", "password": PASSWORD}),
        ),
        post(
            &edge.url("/api/inventory"),
            Some(&token),
            json!({"name": "Lost"}),
        ),
    ];
    for r in &calls {
        assert_eq!(r.status, 503, "{}", r.text);
        assert_eq!(r.header("retry-after"), Some("2"), "{}", r.text);
        assert_eq!(r.body["success"], false, "{}", r.text);
        assert!(!r.error().is_empty(), "{}", r.text);
    }
    let health = get(&edge.url("/health"), None);
    assert_eq!(health.status, 503, "{}", health.text);
    assert_eq!(health.body["services"]["database"], "down");
    let log = edge.drain_log().join("\n");
    assert!(!log.contains(ROLE_PASSWORD), "{log}");

    pg.start_again();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = get(&edge.url("/api/inventory"), Some(&token));
        if r.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.text);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(get(&edge.url("/auth/me"), Some(&token)).status, 200);
    assert_eq!(login(&edge, "grace@example.com", PASSWORD).status, 200);
    let mut db = pg.client("outage");
    let lost: i64 = db
        .query_one("SELECT COUNT(*) FROM bottles", &[])
        .unwrap()
        .get(0);
    assert_eq!(lost, 0, "nothing half-stored");
}

#[test]
fn postgres_without_redis_refuses_to_serve_naming_the_variable() {
    let pg = PostgresServer::start();
    let edge = Edge::builder("")
        .var("database_address", &pg.address())
        .var("database_password", ROLE_PASSWORD)
        .start();
    let r = get(&edge.url("/health"), None);
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(r.body["success"], false);
    let log = edge.log_until("redis_address");
    assert!(log.contains("redis_address"), "{log}");
    assert!(!log.contains(ROLE_PASSWORD), "{log}");
}
