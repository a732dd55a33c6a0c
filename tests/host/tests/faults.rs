//! Redis going away and coming back, Redis behind a password or TLS, a misconfigured edge, and
//! fail-open routes.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

#[test]
fn redis_down_means_503_not_401_and_recovery_without_restart() {
    let mut redis = RedisServer::start();
    let edge = Edge::start(&redis);
    let token = signup(&edge, "down@example.com");
    redis.kill();

    let r = get(&edge.url("/auth/me"), Some(&token));
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.body["success"], json!(false));
    assert!(!r.error().is_empty());
    let r = login(&edge, "down@example.com", PASSWORD);
    assert_eq!(r.status, 503, "{}", r.text);
    let r = get(&edge.url("/health"), None);
    assert_eq!(r.status, 503);
    assert_eq!(r.body["status"], "degraded");
    assert_eq!(
        r.body["services"],
        json!({"redis": "down", "database": "ok"})
    );

    // A refused connection is answered at once, not after retries.
    let started = Instant::now();
    assert_eq!(get(&edge.url("/auth/me"), Some(&token)).status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    redis.restart();
    let back = Instant::now();
    loop {
        let r = get(&edge.url("/auth/me"), Some(&token));
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(
            back.elapsed() < Duration::from_secs(2),
            "not back within 2 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&edge.url("/health"), None).status, 200);
}

#[test]
fn a_redis_that_stops_answering_holds_requests_as_spin_does() {
    let redis = RedisServer::start();
    let edge = Edge::start(&redis);
    let token = signup(&edge, "paused@example.com");
    redis.pause();
    let url = edge.url("/auth/me");
    let waiting = std::thread::spawn(move || get(&url, Some(&token)));
    // Spin's Redis client sets no deadline, so neither does the host: no 503 after the 1 s a
    // redis-rs 1.x client would wait, and the request is neither dropped nor failed.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!waiting.is_finished(), "answered while Redis was paused");
    redis.resume();
    let r = waiting.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["email"], "paused@example.com");
}

#[test]
fn fail_open_routes_serve_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let edge = Edge::builder(&redis.url())
        .var("fail_open_routes", "GET /auth/me")
        .start();
    let token = signup(&edge, "open@example.com");
    redis.kill();
    let r = get(&edge.url("/auth/me"), Some(&token));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-edge-degraded"), Some("store-unavailable"));
    // Everything else still fails closed.
    assert_eq!(
        post(&edge.url("/auth/logout"), Some(&token), json!({})).status,
        503
    );
}

/// The project's manifest with another `allowed_outbound_hosts` entry, written into `dir`.
fn manifest_allowing(dir: &TempDir, entry: &str) -> std::path::PathBuf {
    let original = manifest();
    let beside = original.parent().unwrap().display().to_string();
    // The copy lives elsewhere: each component's source becomes absolute.
    let manifest: String = std::fs::read_to_string(&original)
        .unwrap()
        .replace(
            r#"allowed_outbound_hosts = ["{{ redis_address }}", "{{ database_address }}"]"#,
            &format!(r#"allowed_outbound_hosts = ["{entry}"]"#),
        )
        .lines()
        .map(|line| match line.strip_prefix(r#"source = ""#) {
            Some(relative) => format!("source = \"{beside}/{relative}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    let path = dir.0.join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    path
}

#[test]
fn a_malformed_literal_allowed_host_stops_the_host_like_spin() {
    let dir = TempDir::new();
    let path = manifest_allowing(&dir, "127.0.0.1:6379");
    let e = Edge::builder("redis://127.0.0.1:6379")
        .manifest(&path)
        .try_start()
        .err()
        .expect("edge-host must refuse the manifest");
    assert!(e.contains("`allowed_outbound_hosts` is malformed"), "{e}");
}

#[test]
fn redis_address_outside_allowed_hosts_is_a_clear_503() {
    let redis = RedisServer::start();
    let dir = TempDir::new();
    let path = manifest_allowing(&dir, "redis://127.0.0.1:1");
    let edge = Edge::builder(&redis.url()).manifest(&path).start();
    let r = login(&edge, "allowed@example.com", PASSWORD);
    assert_eq!(r.status, 503, "{}", r.text);
    let log = edge.log_until_all(&[
        "Outbound network destination not allowed",
        "allowed_outbound_hosts",
    ]);
    assert!(
        log.contains("Outbound network destination not allowed"),
        "{log}"
    );
    assert!(log.contains("allowed_outbound_hosts"), "{log}");
}

/// Health, signup, me and logout all work, and the logout's revocation lands in `redis`.
fn serves_and_revokes_through(edge: &Edge, redis: &RedisServer, db: u32, email: &str) {
    assert_eq!(get(&edge.url("/health"), None).status, 200);
    let token = signup(edge, email);
    assert_eq!(get(&edge.url("/auth/me"), Some(&token)).status, 200);
    assert_eq!(
        post(&edge.url("/auth/logout"), Some(&token), json!({})).status,
        200
    );
    let r = get(&edge.url("/auth/me"), Some(&token));
    assert_eq!(r.error(), "Token has been revoked. Please login again.");
    let dump = redis.dump_db(db);
    assert!(
        dump.iter().any(|(k, _)| k.starts_with("ae:rv:")),
        "{dump:?}"
    );
}

#[test]
fn a_redis_password_comes_from_its_secret_variable_and_is_never_printed() {
    // Characters a URL must escape, so the test also proves the encoding.
    let password = "pa:ss@w/rd%21";
    let redis = RedisServer::start_with_password(password);
    let edge = Edge::builder(&redis.url())
        .var("redis_password", password)
        .start();
    serves_and_revokes_through(&edge, &redis, 0, "auth@example.com");

    // A wrong password is an unavailable store: 503, never a 401 or a 500.
    let wrong = Edge::builder(&redis.url())
        .var("redis_password", "not-the-one")
        .start();
    let r = login(&wrong, "auth@example.com", PASSWORD);
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(get(&wrong.url("/health"), None).status, 503);

    std::thread::sleep(Duration::from_millis(100));
    let log = [edge.drain_log(), wrong.drain_log()].concat().join("\n");
    for secret in [password, "pa%3Ass", "not-the-one"] {
        assert!(!log.contains(secret), "{secret} in the log: {log}");
    }
}

#[test]
fn redis_database_keeps_every_key_of_the_edge_in_that_database() {
    let redis = RedisServer::start();
    let edge = Edge::builder(&redis.url())
        .var("redis_database", "5")
        .start();
    serves_and_revokes_through(&edge, &redis, 5, "db@example.com");
    assert_eq!(redis.dump(), vec![], "database 0 holds nothing");

    // A database the server does not have is an unavailable store, named in the log.
    let missing = Edge::builder(&redis.url())
        .var("redis_database", "99")
        .start();
    let r = login(&missing, "db@example.com", PASSWORD);
    assert_eq!(r.status, 503, "{}", r.text);
    let log = missing.log_until("DB index is out of range");
    assert!(log.contains("DB index is out of range"), "{log}");
}

#[test]
fn rediss_verifies_the_server_certificate_against_the_trusted_cas() {
    let dir = TempDir::new();
    let (ca_file, cert, key) = tls_files(&dir.0);
    let tls_port = free_port().to_string();
    // The plain port stays open for this test's own checks; the edge gets only the TLS one.
    let redis = RedisServer::start_with_options(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca_file,
        "--tls-auth-clients",
        "no",
    ]);
    let address = format!("rediss://127.0.0.1:{tls_port}");
    let edge = |trusting: Option<&str>| {
        let mut builder = Edge::builder(&address);
        if let Some(ca) = trusting {
            // How an operator trusts a private CA, with Spin and edge-host alike (OpenSSL).
            builder = builder.env("SSL_CERT_FILE", ca);
        }
        builder.start()
    };

    let trusting = edge(Some(&ca_file));
    serves_and_revokes_through(&trusting, &redis, 0, "tls@example.com");

    // A certificate no trusted CA signed is an unavailable store: fail closed, never serve.
    let untrusting = edge(None);
    let r = login(&untrusting, "tls@example.com", PASSWORD);
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.header("retry-after").is_some());
    assert_eq!(get(&untrusting.url("/health"), None).status, 503);
    // The operator is told why.
    let log = untrusting.log_until("certificate verify failed");
    assert!(log.contains("certificate verify failed"), "{log}");
}

#[test]
fn a_redis_address_that_cannot_be_an_allowed_host_is_refused_by_name() {
    let redis = RedisServer::start();
    let port = redis.port;
    for (address, named) in [
        (format!("127.0.0.1:{port}"), "redis_address"),
        (format!("redis://127.0.0.1:{port}/0"), "redis_address"),
        (
            format!("redis://:hunter2@127.0.0.1:{port}"),
            "redis_password",
        ),
    ] {
        // Like Spin, the host starts: allowed_outbound_hosts is only parsed on use.
        let edge = Edge::builder(&address).start();
        let r = get(&edge.url("/health"), None);
        assert_eq!(r.status, 500, "{address}: {}", r.text);
        assert_eq!(r.error(), "Server misconfigured");
        let log = edge.log_until(named);
        assert!(log.contains(named), "{address}: {log}");
        assert!(!log.contains("hunter2"), "{log}");
    }
}

#[test]
fn health_warns_while_redis_may_evict_revocations() {
    let evicting = RedisServer::start_with_options(&[
        "--maxmemory",
        "64mb",
        "--maxmemory-policy",
        "allkeys-lru",
    ]);
    let fleet = [Edge::start(&evicting), Edge::start(&evicting)];
    // Serving works, so the edge stays in the pool; every probe on every instance reports the
    // warning, but only the first one logs it: probes come every few seconds.
    for edge in fleet.iter().chain(&fleet) {
        let r = get(&edge.url("/health"), None);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["status"], "ok");
        let warning = r.body["warnings"][0].as_str().unwrap_or_default();
        assert!(
            warning.contains("allkeys-lru") && warning.contains("noeviction"),
            "{}",
            r.text
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    let logged: Vec<String> = fleet
        .iter()
        .flat_map(Edge::drain_log)
        .filter(|line| line.contains("noeviction"))
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    let ttl = evicting.ttl("ae:warned");
    assert!(
        (290..=300).contains(&ttl),
        "the next line is due in {ttl} s"
    );
    // Once that interval has passed, the next probe logs it again.
    redis::cmd("DEL")
        .arg("ae:warned")
        .query::<()>(&mut evicting.conn())
        .unwrap();
    get(&fleet[1].url("/health"), None);
    assert!(fleet[1].log_until("noeviction").contains("noeviction"));

    let keeping = RedisServer::start_with_options(&[
        "--maxmemory",
        "64mb",
        "--maxmemory-policy",
        "noeviction",
    ]);
    let r = get(&Edge::start(&keeping).url("/health"), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body.get("warnings").is_none(), "{}", r.text);
}

#[test]
fn a_full_redis_that_does_not_evict_fails_closed_then_recovers() {
    let redis = RedisServer::start();
    let edge = Edge::start(&redis);
    let token = signup(&edge, "full@example.com");
    // 8 MiB of data, then a 4 MiB limit: every write is refused until memory is freed.
    let mut conn = redis.conn();
    for i in 0..32 {
        redis::cmd("SET")
            .arg(format!("filler:{i}"))
            .arg(vec![b'x'; 256 << 10])
            .query::<()>(&mut conn)
            .unwrap();
    }
    redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "noeviction", "maxmemory", "4mb"])
        .query::<()>(&mut conn)
        .unwrap();

    let r = get(&edge.url("/auth/me"), Some(&token));
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.body["success"], json!(false));
    assert_eq!(login(&edge, "full@example.com", PASSWORD).status, 503);

    for i in 0..32 {
        redis::cmd("DEL")
            .arg(format!("filler:{i}"))
            .query::<()>(&mut conn)
            .unwrap();
    }
    assert_eq!(get(&edge.url("/auth/me"), Some(&token)).status, 200);
}

#[test]
fn short_secret_refuses_to_serve_without_logging_it() {
    let redis = RedisServer::start();
    let edge = Edge::builder(&redis.url())
        .var("jwt_secret", "too-short")
        .start();
    let r = get(&edge.url("/health"), None);
    assert_eq!(r.status, 500);
    assert_eq!(r.error(), "Server misconfigured");
    let log = edge.log_until("jwt_secret");
    assert!(log.contains("jwt_secret") && log.contains("32"), "{log}");
    assert!(
        !log.contains("too-short"),
        "the secret itself must not be logged"
    );
}

#[test]
fn unresolvable_required_variable_stops_the_host() {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edge-host"));
    let out = cmd
        .args(["up", "--listen", "127.0.0.1:0", "-f"])
        .arg(manifest())
        .env_remove("SPIN_VARIABLE_JWT_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SPIN_VARIABLE_JWT_SECRET"), "{stderr}");
}
