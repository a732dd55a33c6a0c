//! Redis losing its data (a restart without persistence) must not bring revoked tokens back:
//! the database is the record, and the edge restores from it before trusting a miss.

mod support;

use serde_json::json;
use support::*;

#[test]
fn revocations_survive_a_redis_that_restarts_empty() {
    let mut redis = RedisServer::start();
    let (edges, _state) = cluster(&redis, 3);
    let logged_out = signup(&edges[0], "lost@example.com");
    let before_all = login_token(&edges[1], "lost@example.com");
    assert_eq!(
        post(&edges[0].url("/auth/logout"), Some(&logged_out), json!({})).status,
        200
    );
    let other = signup(&edges[2], "other@example.com");
    let survivor = login_token(&edges[2], "lost@example.com");
    assert_eq!(
        post(
            &edges[2].url("/auth/logout-all"),
            Some(&survivor),
            json!({})
        )
        .status,
        200
    );
    let after_all = login_token(&edges[2], "lost@example.com");

    redis.restart();
    assert!(redis.dump().is_empty());

    for edge in &edges {
        let r = get(&edge.url("/auth/me"), Some(&logged_out));
        assert_eq!(r.status, 401, "{}", r.text);
        for old in [&before_all, &survivor] {
            let r = get(&edge.url("/auth/me"), Some(old));
            assert_eq!(r.status, 401, "{}", r.text);
            assert_eq!(r.error(), "Token has been invalidated. Please login again.");
        }
        assert_eq!(get(&edge.url("/auth/me"), Some(&after_all)).status, 200);
        assert_eq!(get(&edge.url("/auth/me"), Some(&other)).status, 200);
    }
    // Redis holds the restored state again, marked, and still no raw token.
    let dump = redis.dump();
    assert!(dump.iter().any(|(k, _)| k == "ae:epoch"), "{dump:?}");
    assert!(
        dump.iter().any(|(k, _)| k.starts_with("ae:rv:")),
        "{dump:?}"
    );
    assert!(
        dump.iter()
            .any(|(k, v)| k.starts_with("ae:tv:") && v == "1"),
        "{dump:?}"
    );
    for (key, value) in &dump {
        assert!(!key.contains(&logged_out) && !value.contains(&logged_out));
        if key.starts_with("ae:rv:") || key.starts_with("ae:tv:") {
            assert!(redis.ttl(key) > 0, "{key} has no TTL");
        }
    }
}

#[test]
fn trusted_proxies_decide_who_the_client_is() {
    let redis = RedisServer::start();
    let edge = Edge::builder(&redis.url())
        .var("trusted_proxies", "127.0.0.1/32")
        .var("auth_rate_limit", "2/15m")
        .start();
    let attempt = |xff: &str| {
        send(
            client()
                .post(edge.url("/auth/login"))
                .header("x-forwarded-for", xff)
                .json(&json!({"email": "p@example.com", "password": "nope-nope"})),
        )
        .status
    };
    // Behind a trusted proxy each forwarded client has its own budget.
    assert_eq!(
        [
            attempt("198.51.100.1"),
            attempt("198.51.100.1"),
            attempt("198.51.100.1")
        ],
        [401, 401, 429]
    );
    assert_eq!(attempt("198.51.100.2"), 401);
    // Spoofed hops left of the real client change nothing: the right-most untrusted hop counts.
    assert_eq!(attempt("6.6.6.6, 198.51.100.1"), 429);
    // IPv6 clients share one budget per /64.
    assert_eq!(
        [attempt("2001:db8:1:2::1"), attempt("2001:db8:1:2::ffff")],
        [401, 401]
    );
    assert_eq!(attempt("2001:db8:1:2:abcd::9"), 429);
    assert_eq!(attempt("2001:db8:1:3::1"), 401);
}

#[test]
fn a_replaced_database_under_a_remembering_redis_is_migrated_not_a_500() {
    let redis = RedisServer::start();
    let first = Edge::start(&redis);
    let token = signup(&first, "schema@example.com");
    assert_eq!(get(&first.url("/api/inventory"), Some(&token)).status, 200);
    assert!(redis.dump().iter().any(|(k, _)| k == "ae:schema"));
    drop(first);
    // A new, empty database (new state dir) behind the same Redis: the vouched schema is wrong.
    let second = Edge::start(&redis);
    let r = get(&second.url("/api/inventory"), Some(&token));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["pagination"]["total"], 0);
}

#[test]
fn a_database_of_the_previous_release_is_migrated_in_place() {
    if pg::on_postgres() {
        return; // it writes the SQLite file itself
    }
    let state = TempDir::new();
    let token = {
        let redis = RedisServer::start();
        let edge = Edge::builder(&redis.url()).state_dir(&state.0).start();
        let token = signup(&edge, "upgrade@example.com");
        let r = post(
            &edge.url("/api/inventory"),
            Some(&token),
            json!({"name": "Kept"}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        token
    };
    // Put the file back the way version 3 left it: its migrations table and user_version 3.
    let db = rusqlite::Connection::open(state.0.join("sqlite_db.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,
             applied_at DATETIME DEFAULT CURRENT_TIMESTAMP);
         INSERT INTO schema_migrations (version) VALUES (1), (2), (3);
         PRAGMA user_version = 3;",
    )
    .unwrap();
    drop(db);

    let redis = RedisServer::start();
    let edge = Edge::builder(&redis.url()).state_dir(&state.0).start();
    let r = get(&edge.url("/api/inventory"), Some(&token));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"][0]["name"], "Kept", "{}", r.text);
    let db = rusqlite::Connection::open(state.0.join("sqlite_db.db")).unwrap();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 7, "every migration since applied");
    let journal: String = db
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    let tables: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'schema_migrations'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
}
