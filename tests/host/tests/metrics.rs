//! `GET /metrics` as an operator's scraper meets it: absent until a token is set, then only for
//! that bearer token, in Prometheus text; its counters live in Redis buckets that expire.

mod support;

use support::*;

const TOKEN: &str = "scrape-token-0123456789abcdef-0123456789";

#[test]
fn metrics_exist_only_with_a_token_and_answer_only_it() {
    let redis = RedisServer::start();
    let closed = Edge::start(&redis);
    let r = send(client().get(closed.url("/metrics")).bearer_auth(TOKEN));
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.error(), "Route GET /metrics not found");

    let edge = Edge::builder(&redis.url())
        .var("metrics_token", TOKEN)
        .start();
    for auth in [None, Some("wrong"), Some(&TOKEN[1..])] {
        let mut req = client().get(edge.url("/metrics"));
        if let Some(auth) = auth {
            req = req.bearer_auth(auth);
        }
        let r = send(req);
        assert_eq!(r.status, 401, "{}", r.text);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(!r.text.contains("alchemix_edge"), "{}", r.text);
    }
    signup(&edge, "scraped@example.com");
    let r = send(client().get(edge.url("/metrics")).bearer_auth(TOKEN));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        r.text
            .contains("alchemix_edge_decisions{decision=\"allowed\",window=\"5m\"} 1\n"),
        "{}",
        r.text
    );
    assert!(r
        .text
        .contains("# TYPE alchemix_edge_ratelimit_over_limit gauge\n"));
    // Policies turned off are not in force, so not listed.
    let off = Edge::builder(&redis.url())
        .var("metrics_token", TOKEN)
        .var("login_rate_limit", "off")
        .start();
    let r = send(client().get(off.url("/metrics")).bearer_auth(TOKEN));
    assert!(!r.text.contains("policy=\"login\""), "{}", r.text);
    assert!(r
        .text
        .contains("alchemix_edge_ratelimit_limit{policy=\"auth\"} 5\n"));

    // One bucket per minute, each with a TTL just past the widest window.
    let buckets: Vec<String> = redis
        .dump()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("ae:mx:"))
        .collect();
    assert!(!buckets.is_empty() && buckets.len() <= 2, "{buckets:?}");
    for key in &buckets {
        let ttl = redis.ttl(key);
        assert!((3000..=3660).contains(&ttl), "{key}: {ttl}");
    }
}
