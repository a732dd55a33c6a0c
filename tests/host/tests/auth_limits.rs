//! The seed's multi-instance guarantees, through real edge-host processes on one real Redis.

mod support;

use serde_json::json;
use support::*;

#[test]
fn auth_limit_counts_failures_and_answers_429_with_headers() {
    let redis = RedisServer::start();
    let edge = Edge::start(&redis);
    signup(&edge, "limit@example.com");
    for i in 0..5 {
        let r = login(&edge, "limit@example.com", "wrong-password");
        assert_eq!(r.status, 401, "attempt {i}: {}", r.text);
        assert_eq!(r.error(), "Invalid email or password");
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some(&*(4 - i).to_string())
        );
        // The address's budget, and the account's on this address.
        assert_eq!(
            r.header("ratelimit-policy"),
            Some("\"auth\";q=5;w=900, \"login\";q=5;w=900")
        );
        assert!(r
            .header("ratelimit")
            .unwrap()
            .starts_with(&format!("\"auth\";r={};t=", 4 - i)));
    }
    // The sixth attempt is refused even with the right password.
    let r = login(&edge, "limit@example.com", PASSWORD);
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.body["success"], json!(false));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1800).contains(&retry), "{retry}");
    assert_eq!(r.body["details"]["retryAfter"], json!(retry));
    assert!(r.header("ratelimit").unwrap().contains("r=0"));
    // Every counter key carries a TTL.
    for (key, _) in redis.dump() {
        assert!(redis.ttl(&key) > 0, "{key} has no TTL");
    }
}

#[test]
fn successful_logins_are_refunded() {
    let redis = RedisServer::start();
    let edge = Edge::start(&redis);
    // The signup itself succeeded, so it is not counted either.
    signup(&edge, "ok@example.com");
    for _ in 0..8 {
        let r = login(&edge, "ok@example.com", PASSWORD);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    for _ in 0..5 {
        assert_eq!(login(&edge, "ok@example.com", "nope").status, 401);
    }
    assert_eq!(login(&edge, "ok@example.com", PASSWORD).status, 429);
}

#[test]
fn three_instances_share_one_auth_budget() {
    let redis = RedisServer::start();
    let (edges, _state) = cluster(&redis, 3);
    let statuses: Vec<u16> = (0..9)
        .map(|i| login(&edges[i % 3], "nobody@example.com", "whatever-password").status)
        .collect();
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429, 429]);
}

#[test]
fn logout_on_one_instance_is_seen_by_the_others() {
    let redis = RedisServer::start();
    let (edges, _state) = cluster(&redis, 3);
    let [a, b, c] = [&edges[0], &edges[1], &edges[2]];
    let token = signup(a, "multi@example.com");
    for edge in [a, b, c] {
        assert_eq!(get(&edge.url("/auth/me"), Some(&token)).status, 200);
    }
    let r = post(&a.url("/auth/logout"), Some(&token), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["message"], "Logged out successfully");
    for edge in [b, c, a] {
        let r = get(&edge.url("/auth/me"), Some(&token));
        assert_eq!(r.status, 401);
        assert_eq!(r.error(), "Token has been revoked. Please login again.");
    }
    // A fresh login still works everywhere.
    let fresh = login(b, "multi@example.com", PASSWORD);
    let fresh = fresh.body["data"]["token"].as_str().unwrap().to_string();
    assert_eq!(get(&c.url("/auth/me"), Some(&fresh)).status, 200);
}

#[test]
fn logout_all_rejects_every_older_token_everywhere() {
    let redis = RedisServer::start();
    let (edges, _state) = cluster(&redis, 2);
    let [a, b] = [&edges[0], &edges[1]];
    let first = signup(a, "all@example.com");
    let second = login_token(b, "all@example.com");
    let r = post(&a.url("/auth/logout-all"), Some(&first), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    for (edge, token) in [(a, &first), (b, &second), (b, &first)] {
        let r = get(&edge.url("/auth/me"), Some(token));
        assert_eq!(r.status, 401);
        assert_eq!(r.error(), "Token has been invalidated. Please login again.");
    }
    let newer = login_token(a, "all@example.com");
    assert_eq!(get(&b.url("/auth/me"), Some(&newer)).status, 200);
    let version_key = redis
        .dump()
        .into_iter()
        .find(|(k, _)| k.starts_with("ae:tv:"))
        .expect("version key");
    assert_eq!(version_key.1, "1");
    assert!(redis.ttl(&version_key.0) > 0);
}

#[test]
fn redis_never_holds_a_raw_token() {
    let redis = RedisServer::start();
    let edge = Edge::start(&redis);
    let token = signup(&edge, "secret@example.com");
    assert_eq!(get(&edge.url("/auth/me"), Some(&token)).status, 200);
    assert_eq!(
        post(&edge.url("/auth/logout"), Some(&token), json!({})).status,
        200
    );
    let signature = token.rsplit('.').next().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let dump = redis.dump();
    assert!(
        dump.iter().any(|(k, _)| k.starts_with("ae:rv:")),
        "{dump:?}"
    );
    for (key, value) in &dump {
        for part in [token.as_str(), signature, payload] {
            assert!(
                !key.contains(part) && !value.contains(part),
                "{key} = {value}"
            );
        }
    }
    // The revocation lives exactly as long as the token.
    let (rv, _) = dump.iter().find(|(k, _)| k.starts_with("ae:rv:")).unwrap();
    let ttl = redis.ttl(rv);
    assert!(ttl > 6 * 86_400 && ttl <= 7 * 86_400, "{ttl}");
    // Nor does the log.
    let log = edge.drain_log().join("\n");
    assert!(!log.contains(signature), "{log}");
}

#[test]
fn client_sent_spin_headers_and_forwarded_for_do_not_change_identity() {
    let redis = RedisServer::start();
    let edge = Edge::start(&redis);
    let statuses: Vec<u16> = (0..6)
        .map(|i| {
            let spoof = format!("10.9.9.{i}");
            send(
                client()
                    .post(edge.url("/auth/login"))
                    .header("spin-client-addr", format!("{spoof}:1234"))
                    .header("x-forwarded-for", spoof)
                    .json(&json!({ "email": "x@example.com", "password": "nope-nope-nope" })),
            )
            .status
        })
        .collect();
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
}

#[test]
fn rotating_jwt_secret_keeps_sessions_until_the_previous_secret_is_dropped() {
    const NEW: &str = "rotated-secret-rotated-secret-rotated-01";
    let redis = RedisServer::start();
    let state = TempDir::new();
    let edge = |vars: &[(&str, &str)]| {
        vars.iter()
            .fold(
                Edge::builder(&redis.url()).state_dir(&state.0),
                |b, (k, v)| b.var(k, v),
            )
            .start()
    };
    let before = signup(&edge(&[]), "rotate@example.com");

    let rotating = edge(&[("jwt_secret", NEW), ("jwt_previous_secret", SECRET)]);
    assert_eq!(get(&rotating.url("/auth/me"), Some(&before)).status, 200);
    let after = login_token(&rotating, "rotate@example.com");

    // Once the previous secret is dropped, only tokens issued after the rotation are valid.
    let rotated = edge(&[("jwt_secret", NEW)]);
    assert_eq!(get(&rotated.url("/auth/me"), Some(&after)).status, 200);
    let r = get(&rotated.url("/auth/me"), Some(&before));
    assert_eq!(r.status, 401, "{}", r.text);
}
