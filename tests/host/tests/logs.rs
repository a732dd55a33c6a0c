//! The log an operator reads: one JSON line per request, found by the response's request id.

mod support;

use serde_json::{json, Value};
use support::*;

/// The JSON request lines the edge printed up to the line of `last`, its latest request.
fn request_lines(edge: &Edge, last: &Reply) -> Vec<Value> {
    edge.log_until(last.header("x-request-id").expect("a request id"))
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "info" && v["request_id"].is_string())
        .collect()
}

fn line_of<'a>(lines: &'a [Value], reply: &Reply) -> &'a Value {
    let id = reply.header("x-request-id").expect("a request id");
    let found: Vec<&Value> = lines.iter().filter(|l| l["request_id"] == id).collect();
    assert_eq!(found.len(), 1, "one line for {id}: {lines:?}");
    found[0]
}

#[test]
fn every_request_has_one_json_line_with_its_request_id_and_decision() {
    let mut redis = RedisServer::start();
    let edge = Edge::builder(&redis.url())
        .var("auth_rate_limit", "3/1m")
        .start();
    let token = signup(&edge, "logs@example.com");
    let second = login_token(&edge, "logs@example.com");
    let created = post(
        &edge.url("/api/inventory"),
        Some(&token),
        json!({"name": "Rye"}),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["data"]["id"].as_i64().unwrap();
    let updated = send(
        client()
            .put(edge.url(&format!("/api/inventory/{id}")))
            .bearer_auth(&token)
            .json(&json!({"name": "Rye, 100 proof"})),
    );
    assert_eq!(updated.status, 200, "{}", updated.text);
    let anonymous = get(&edge.url("/api/inventory"), None);
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        post(&edge.url("/auth/logout"), Some(&token), json!({})).status,
        200
    );
    let revoked = get(&edge.url("/api/inventory"), Some(&token));
    assert_eq!(revoked.status, 401);
    let mut limited = login(&edge, "logs@example.com", "wrong-password");
    while limited.status != 429 {
        limited = login(&edge, "logs@example.com", "wrong-password");
    }
    let unknown = get(&edge.url("/nowhere/12345"), None);
    assert_eq!(unknown.status, 404);

    let lines = request_lines(&edge, &unknown);
    let user = created.body["data"]["user_id"].as_i64().unwrap();
    let line = line_of(&lines, &updated);
    assert_eq!(line["method"], "PUT");
    assert_eq!(
        line["route"], "/api/inventory/:id",
        "the pattern, not the path"
    );
    assert_eq!(line["status"], 200);
    assert_eq!(line["decision"], "allowed");
    assert_eq!(line["user_id"], user);
    assert!(line["duration_ms"].as_i64().unwrap() >= 0);
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
    let client = line["client"].as_str().unwrap();
    assert_eq!(client.len(), 16, "{line}");

    let line = line_of(&lines, &anonymous);
    assert_eq!(line["decision"], "unauthenticated");
    // Refused before the app ran: in a chain the guard names its own rule's route, here the
    // list's own.
    assert_eq!(line["route"], "/api/inventory");
    assert!(line.get("user_id").is_none(), "{line}");
    assert_eq!(line["client"], client, "the same client, the same hash");
    assert_eq!(line_of(&lines, &revoked)["decision"], "revoked");
    let line = line_of(&lines, &limited);
    assert_eq!(line["decision"], "limited:auth");
    assert_eq!(line["route"], "/auth/login");
    assert_eq!(line["status"], 429);
    assert_eq!(line_of(&lines, &unknown)["route"], "unmatched");

    let all = serde_json::to_string(&lines).unwrap();
    assert!(!all.contains("127.0.0.1"), "no address in clear: {all}");
    assert!(!all.contains(&token), "no token: {all}");
    assert!(!all.contains("12345"), "no raw path: {all}");

    // A request refused because Redis is down: its line says degraded, and the cause has a
    // line of its own under the same request id.
    redis.kill();
    let down = get(&edge.url("/api/inventory"), Some(&second));
    assert_eq!(down.status, 503, "{}", down.text);
    let lines: Vec<Value> = edge
        .log_until("\"decision\":\"degraded\"")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let id = down.header("x-request-id").unwrap();
    let of_it: Vec<&Value> = lines.iter().filter(|l| l["request_id"] == id).collect();
    assert!(
        of_it
            .iter()
            .any(|l| l["level"] == "info" && l["decision"] == "degraded"),
        "{of_it:?}"
    );
    assert!(
        of_it.iter().any(|l| l["level"] == "error"
            && l["message"].as_str().unwrap().contains("store unavailable")),
        "{of_it:?}"
    );
}
