//! Every bad input gets a JSON 4xx from the component, never a trap (a bodiless 500).

mod support;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use support::*;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn forge(alg: Algorithm, key: &str, exp_offset: i64, jti: Option<&str>) -> String {
    let mut claims = json!({
        "userId": 1, "email": "a@example.com", "tokenVersion": 0,
        "iat": now() - 10, "exp": now() + exp_offset,
    });
    if let Some(jti) = jti {
        claims["jti"] = json!(jti);
    }
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn assert_json_error(r: &Reply, status: u16) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["success"], json!(false), "{}", r.text);
    assert!(!r.error().is_empty(), "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/json"));
}

/// Sends a raw request, writing the body from another thread (the edge may answer and close
/// before it has read it all), and returns the status and the whole response text.
fn raw_request(port: u16, head: &str, body: Vec<u8>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&body);
    });
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn bad_tokens_are_401_json() {
    let redis = RedisServer::start();
    let edge = Edge::start(&redis);
    signup(&edge, "a@example.com");
    let me = edge.url("/auth/me");

    let r = get(&me, None);
    assert_json_error(&r, 401);
    assert_eq!(r.error(), "No authorization token provided");

    let good_payload = forge(Algorithm::HS256, SECRET, 3600, Some("j1"));
    let payload = good_payload.split('.').nth(1).unwrap();
    let alg_none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let cases = [
        "garbage".to_string(),
        "a.b.c".to_string(),
        "Bearer".to_string(),
        alg_none,
        forge(
            Algorithm::HS256,
            "some-other-secret-some-other-secret!!",
            3600,
            Some("j2"),
        ),
        forge(Algorithm::HS512, SECRET, 3600, Some("j3")),
        forge(Algorithm::HS256, SECRET, -10, Some("j4")),
        forge(Algorithm::HS256, SECRET, 3600, None),
        format!("{}.{}", "e".repeat(5000), "x"),
        "'; DROP TABLE users; --".to_string(),
    ];
    for token in &cases {
        let r = send(
            client()
                .get(&me)
                .header("authorization", format!("Bearer {token}")),
        );
        assert_json_error(&r, 401);
    }
    let r = send(
        client()
            .get(&me)
            .header("authorization", "Basic dXNlcjpwYXNz"),
    );
    assert_json_error(&r, 401);
    // A very large header is refused before the component, or by it; never a 500.
    let r = send(
        client()
            .get(&me)
            .header("authorization", format!("Bearer {}", "x".repeat(60_000))),
    );
    assert!(matches!(r.status, 401 | 431), "{}", r.status);
}

#[test]
fn bad_bodies_are_400_413_and_unknown_routes_404() {
    let redis = RedisServer::start();
    // Every rejected attempt counts against the auth limit; this test makes many on purpose.
    let edge = Edge::builder(&redis.url())
        .var("auth_rate_limit", "1000/15m")
        .start();
    let signup_url = edge.url("/auth/signup");

    // Nesting just inside serde_json's depth limit, and far past it: the guest's stack
    // (a linker setting in .cargo/config.toml) must hold the deepest parse the edge allows.
    let nested = |depth: usize| {
        format!(
            "{{\"email\": {}1{}, \"password\": \"x\"}}",
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let deep = [nested(126), nested(20_000)];
    for body in [
        "{not json",
        "",
        "[]",
        "\"str\"",
        "{\"email\": 5, \"password\": []}",
        deep[0].as_str(),
        deep[1].as_str(),
    ] {
        for url in [&signup_url, &edge.url("/auth/login")] {
            let r = send(
                client()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.to_string()),
            );
            assert_json_error(&r, 400);
        }
    }
    let r = post(
        &signup_url,
        None,
        json!({"email": "no-at-sign", "password": PASSWORD}),
    );
    assert_json_error(&r, 400);
    assert_eq!(r.error(), "Invalid email format");
    let r = post(
        &signup_url,
        None,
        json!({"email": "weak@example.com", "password": "short"}),
    );
    assert_json_error(&r, 400);
    assert!(
        r.body["details"].as_array().unwrap().len() >= 3,
        "{}",
        r.text
    );

    // SQL-looking input is data: it is refused as an email, and the users table survives.
    let r = post(
        &signup_url,
        None,
        json!({"email": "x' OR 1=1; DROP TABLE users;--@e.com", "password": PASSWORD}),
    );
    assert_json_error(&r, 400);
    let r = login(&edge, "' OR '1'='1", "' OR '1'='1");
    assert_json_error(&r, 401);
    signup(&edge, "after.sql@example.com");

    // Declared too large: the body is read to its end and dropped, then refused.
    let declared = 10 * 1024 * 1024 + 1;
    let head = format!(
        "POST /auth/signup HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\nconnection: close\r\n\r\n"
    );
    let (status, text) = raw_request(edge.port, &head, vec![b'a'; declared]);
    assert_eq!(status, 413, "{text}");
    assert!(
        text.contains("\"success\":false") && text.contains("x-frame-options: DENY"),
        "{text}"
    );
    // Past what the edge drains (16 MiB): refused from the headers alone, before any body.
    let head = "POST /auth/signup HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 16777217\r\n\r\n";
    let (status, text) = raw_request(edge.port, head, Vec::new());
    assert_eq!(status, 413, "{text}");
    // Streamed without a length: refused once the count passes 10 MB.
    let head = "POST /auth/signup HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    let mut body = Vec::new();
    for _ in 0..11 {
        body.extend_from_slice(format!("{:x}\r\n", 1 << 20).as_bytes());
        body.extend(std::iter::repeat_n(b'a', 1 << 20));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw_request(edge.port, head, body);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("Request body too large"), "{text}");

    let r = get(&edge.url("/no/such/route"), None);
    assert_json_error(&r, 404);
    assert_eq!(r.error(), "Route GET /no/such/route not found");
    let r = send(client().delete(edge.url("/auth/login")));
    assert_json_error(&r, 405);
}

#[test]
fn every_response_carries_security_headers_and_a_request_id() {
    let redis = RedisServer::start();
    let edge = Edge::start(&redis);
    let client_id = "123e4567-e89b-42d3-a456-426614174000";
    for r in [
        send(
            client()
                .get(edge.url("/health"))
                .header("x-request-id", client_id),
        ),
        get(&edge.url("/nope"), None),
    ] {
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        assert!(r
            .header("strict-transport-security")
            .unwrap()
            .contains("max-age"));
        let id = r.header("x-request-id").unwrap();
        assert_eq!(id.len(), 36);
        assert_ne!(id, client_id);
    }
    let r = send(
        client()
            .get(edge.url("/health"))
            .header("x-request-id", client_id),
    );
    assert_eq!(r.header("x-client-request-id"), Some(client_id));
}
