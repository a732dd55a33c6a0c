//! edge-guard as Spin 4.1 middleware in front of an app that is not AlcheMix
//! (`examples/guard-in-front`): the host composes the chain, the guard limits and authenticates,
//! and the app sees only what the guard verified.

mod support;

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use support::*;

fn example() -> std::path::PathBuf {
    root().join("examples/guard-in-front/spin.toml")
}

fn guarded(redis: &RedisServer) -> Edge {
    Edge::builder(&redis.url())
        .manifest(&example())
        .var("api_rate_limit", "4/1m")
        .start()
}

fn token(user_id: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "userId": user_id, "email": "someone@example.com", "tokenVersion": 0,
        "iat": now - 10, "exp": now + 600, "jti": format!("jti-{user_id}"),
    });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[test]
fn the_app_sees_the_verified_identity_and_never_a_forged_one() {
    let redis = RedisServer::start();
    let edge = guarded(&redis);

    let r = send(
        client()
            .get(edge.url("/public"))
            .header("x-edge-user-id", "1")
            .header("x-edge-client", "forged")
            .header("x-edge-anything", "forged"),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["hello"], json!("world"), "{}", r.text);
    assert_eq!(r.body["user"], json!(null), "{}", r.text);
    assert_eq!(r.body["client"], json!("127.0.0.1"), "{}", r.text);
    // Only the guard's own: the client, the request id it answers with, and the schema
    // version its check read from the store (for an app that keeps its schema there).
    assert_eq!(
        r.body["edgeHeaders"],
        json!(["x-edge-client", "x-edge-request-id", "x-edge-schema"]),
        "{}",
        r.text
    );
    // The guard's headers on the app's answer.
    assert_eq!(r.header("x-ratelimit-limit"), Some("4"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("3"));
    assert!(r
        .header("ratelimit-policy")
        .is_some_and(|p| p.contains("\"api\"")));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("x-request-id").is_some());
    // The body comes as the app framed it (this one declares no length), not read and framed
    // again by the guard: an app that streams its answer keeps streaming through the guard.
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-length"), None);

    let r = send(
        client()
            .get(edge.url("/private/thing"))
            .bearer_auth(token(7))
            .header("x-edge-user-id", "1"),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["user"], json!("7"), "{}", r.text);
    assert_eq!(r.body["path"], json!("/private/thing"), "{}", r.text);
    // A write by a verified user: the app keeps no pages, so it is handed no data version.
    let r = send(
        client()
            .post(edge.url("/private/thing"))
            .bearer_auth(token(7))
            .body("{}"),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let mut seen: Vec<String> = serde_json::from_value(r.body["edgeHeaders"].clone()).unwrap();
    seen.sort();
    assert_eq!(
        seen,
        [
            "x-edge-client",
            "x-edge-request-id",
            "x-edge-schema",
            "x-edge-user-id"
        ]
    );
    // A route that asks for a token is not open as HEAD or with a trailing slash.
    let r = send(client().head(edge.url("/private/thing/")));
    assert_eq!(r.status, 401);
    // Per address and per user: the user's own counter is in Redis too.
    let keys: Vec<String> = redis.dump().into_iter().map(|(k, _)| k).collect();
    assert!(
        keys.iter().any(|k| k.starts_with("ae:rl:user:u7:")),
        "{keys:?}"
    );
}

#[test]
fn refusals_are_the_guards_and_never_reach_the_app() {
    let redis = RedisServer::start();
    let edge = guarded(&redis);

    for (auth, message) in [
        (None, "No authorization token provided"),
        (Some("not-a-token"), "Invalid or expired token"),
    ] {
        let mut req = client().get(edge.url("/private/thing"));
        if let Some(auth) = auth {
            req = req.bearer_auth(auth);
        }
        let r = send(req);
        assert_eq!(r.status, 401, "{}", r.text);
        assert_eq!(r.error(), message);
        assert!(r.body.get("hello").is_none(), "{}", r.text);
    }

    // A token whose user's floor was raised (logout-all elsewhere) is refused on every instance.
    let t = token(9);
    assert_eq!(get(&edge.url("/private/x"), Some(&t)).status, 200);
    let mut conn = redis.conn();
    redis::cmd("SET")
        .arg("ae:tv:9")
        .arg(1)
        .query::<()>(&mut conn)
        .unwrap();
    let r = get(&edge.url("/private/x"), Some(&t));
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.error(), "Token has been invalidated. Please login again.");

    // Every request so far, refused or not, spent one of the address's 4 units.
    let r = get(&edge.url("/public/"), None);
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.body.get("hello").is_none(), "{}", r.text);
    assert!(r.header("retry-after").is_some());
}

#[test]
fn two_instances_share_one_budget() {
    let redis = RedisServer::start();
    let a = guarded(&redis);
    let b = guarded(&redis);
    for edge in [&a, &b, &a, &b] {
        assert_eq!(get(&edge.url("/public"), None).status, 200);
    }
    for edge in [&a, &b] {
        let r = get(&edge.url("/public"), None);
        assert_eq!(r.status, 429, "{}", r.text);
        assert!(r.error().starts_with("Rate limit exceeded"), "{}", r.text);
    }
}

#[test]
fn a_guard_that_may_not_use_the_apps_configuration_is_refused_at_load() {
    let dir = TempDir::new();
    let manifest = std::fs::read_to_string(example())
        .unwrap()
        .replace(", inherit_configuration = true", "")
        .replace("../../target", &root().join("target").to_string_lossy());
    let path = dir.0.join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    let redis = RedisServer::start();
    let err = match Edge::builder(&redis.url()).manifest(&path).try_start() {
        Ok(_) => panic!("a middleware without its configuration was served"),
        Err(e) => e,
    };
    assert!(err.contains("inherit_configuration"), "{err}");
}
