//! AlcheMix as a chain (`spin.toml`): edge-guard as Spin 4.1 middleware in
//! front of the alchemix-api component. The guard limits, authenticates and logs; the API
//! answers with the identity the guard verified, and still records logouts for every instance.

mod support;

use serde_json::{json, Value};
use support::*;

fn chain(redis: &RedisServer, state: &TempDir) -> EdgeBuilder {
    Edge::builder(&redis.url())
        .manifest(&root().join("spin.toml"))
        .state_dir(&state.0)
}

fn names(r: &Reply) -> Vec<String> {
    r.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {}", r.text))
        .iter()
        .map(|b| b["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_api_answers_the_user_the_guard_verified_and_never_a_forged_one() {
    let redis = RedisServer::start();
    let state = TempDir::new();
    let edge = chain(&redis, &state).start();
    let ada = signup(&edge, "ada@example.com");
    let bob = signup(&edge, "bob@example.com");
    let created = post(
        &edge.url("/api/inventory"),
        Some(&ada),
        json!({"name": "Rye"}),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let ada_id = created.body["data"]["user_id"].as_i64().unwrap();
    let listed = get(&edge.url("/api/inventory"), Some(&ada));
    assert_eq!(names(&listed), ["Rye"]);

    // Bob claims to be Ada: the guard drops his header and the API answers Bob.
    let forged = send(
        client()
            .get(edge.url("/api/inventory"))
            .bearer_auth(&bob)
            .header("x-edge-user-id", ada_id.to_string()),
    );
    assert_eq!(forged.status, 200, "{}", forged.text);
    assert!(names(&forged).is_empty(), "{}", forged.text);
    // The guard's headers are on the API's answer, and none of the chain's own.
    assert!(forged.header("x-ratelimit-remaining").is_some());
    assert_eq!(forged.header("x-content-type-options"), Some("nosniff"));
    assert!(forged.header("x-edge-route").is_none());

    let me = get(&edge.url("/auth/me"), Some(&ada));
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["data"]["email"], "ada@example.com");
    // A page the guard holds, one it missed (read whole, to keep), and an answer of the API's
    // it hands on unread: each with its length, never chunked.
    let missed = get(&edge.url("/api/favorites"), Some(&ada));
    assert_eq!(
        missed.header("x-edge-cache"),
        Some("miss"),
        "{}",
        missed.text
    );
    for r in [&listed, &missed, &me] {
        let length = r.text.len().to_string();
        assert_eq!(
            r.header("content-length"),
            Some(length.as_str()),
            "{}",
            r.text
        );
        assert_eq!(r.header("transfer-encoding"), None);
    }
}

#[test]
fn a_logout_holds_on_every_instance_and_a_good_login_gives_back_its_unit() {
    let redis = RedisServer::start();
    let state = TempDir::new();
    let a = chain(&redis, &state).var("auth_rate_limit", "3/1m").start();
    let b = chain(&redis, &state).var("auth_rate_limit", "3/1m").start();
    signup(&a, "grace@example.com");
    // Signup and five good logins on two instances, under a limit of 3 attempts: the
    // guard refunds every success.
    let mut token = String::new();
    for edge in [&a, &b, &a, &b, &a] {
        let r = login(edge, "grace@example.com", PASSWORD);
        assert_eq!(r.status, 200, "{}", r.text);
        token = r.body["data"]["token"].as_str().unwrap().to_string();
    }
    assert_eq!(get(&b.url("/auth/me"), Some(&token)).status, 200);
    let out = post(&a.url("/auth/logout"), Some(&token), json!({}));
    assert_eq!(out.status, 200, "{}", out.text);
    let r = get(&b.url("/api/inventory"), Some(&token));
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.error(), "Token has been revoked. Please login again.");

    // Redis loses everything: the revocation the API recorded in the database still holds.
    let mut conn = redis.conn();
    redis::cmd("FLUSHALL").query::<()>(&mut conn).unwrap();
    let r = get(&a.url("/auth/me"), Some(&token));
    assert_eq!(r.status, 401, "{}", r.text);
}

#[test]
fn a_refusal_is_the_guards_and_the_api_never_runs_for_it() {
    let redis = RedisServer::start();
    let state = TempDir::new();
    let edge = chain(&redis, &state).var("user_rate_limit", "2/1m").start();
    let token = signup(&edge, "limited@example.com");
    let created: Vec<Reply> = ["One", "Two"]
        .into_iter()
        .map(|name| {
            post(
                &edge.url("/api/inventory"),
                Some(&token),
                json!({"name": name}),
            )
        })
        .collect();
    for r in &created {
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let refused = post(
        &edge.url("/api/inventory"),
        Some(&token),
        json!({"name": "Three"}),
    );
    assert_eq!(refused.status, 429, "{}", refused.text);
    let anonymous = post(&edge.url("/api/inventory"), None, json!({"name": "Four"}));
    assert_eq!(anonymous.status, 401, "{}", anonymous.text);

    // The request lines are the guard's: the API's route where it answered, the guard's own
    // rule where it refused alone.
    let lines: Vec<Value> = edge
        .log_until(anonymous.header("x-request-id").unwrap())
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "info")
        .collect();
    let line = |reply: &Reply| {
        let id = reply.header("x-request-id").unwrap();
        let of: Vec<&Value> = lines.iter().filter(|l| l["request_id"] == id).collect();
        assert_eq!(of.len(), 1, "one line for {id}: {lines:?}");
        of[0].clone()
    };
    assert_eq!(line(&created[1])["route"], "/api/inventory");
    assert_eq!(line(&created[1])["decision"], "allowed");
    assert_eq!(line(&refused)["decision"], "limited:user");
    assert_eq!(line(&refused)["route"], "/api/*");
    assert_eq!(line(&anonymous)["decision"], "unauthenticated");
    assert_eq!(line(&anonymous)["route"], "/api/*");

    // Nothing of the refused writes was stored.
    let relogged = login_token(&edge, "limited@example.com");
    let fresh = Edge::builder(&redis.url()).state_dir(&state.0).start();
    let list = get(&fresh.url("/api/inventory"), Some(&relogged));
    assert_eq!(list.status, 200, "{}", list.text);
    let mut stored = names(&list);
    stored.sort();
    assert_eq!(stored, ["One", "Two"]);
}
