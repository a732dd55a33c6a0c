//! The page cache in Redis: repeat reads of a list are answered without the database, every
//! write (on any instance) retires the user's cached pages before it answers and hands the
//! cache the list it wrote to, and a cached page is never served where the request itself
//! would be refused.

mod support;

use serde_json::{json, Value};
use support::*;

fn put(url: &str, token: &str, body: Value) -> Reply {
    send(client().put(url).bearer_auth(token).json(&body))
}

fn delete(url: &str, token: &str) -> Reply {
    send(client().delete(url).bearer_auth(token))
}

/// A row the test needs to exist: anything but 201 fails the test here.
fn create(edge: &Edge, path: &str, token: &str, body: Value) -> Reply {
    let r = post(&edge.url(path), Some(token), body);
    assert_eq!(r.status, 201, "{}", r.text);
    r
}

fn roomy(redis: &RedisServer, state: &TempDir) -> EdgeBuilder {
    Edge::builder(&redis.url())
        .state_dir(&state.0)
        .var("api_rate_limit", "100000/15m")
        .var("user_rate_limit", "100000/15m")
}

/// A roomy edge on a Redis and a state dir of its own, and a new user's token.
struct Setup {
    redis: RedisServer,
    state: TempDir,
    edge: Edge,
    t: String,
}

fn setup(email: &str) -> Setup {
    let redis = RedisServer::start();
    let state = TempDir::new();
    let edge = roomy(&redis, &state).start();
    let t = signup(&edge, email);
    Setup {
        redis,
        state,
        edge,
        t,
    }
}

fn names(r: &Reply) -> Vec<String> {
    column(r, "name")
}

/// One field of every row of a list answer.
fn column(r: &Reply, key: &str) -> Vec<String> {
    r.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {}", r.text))
        .iter()
        .map(|row| row[key].as_str().unwrap_or_default().to_string())
        .collect()
}

fn page_keys(redis: &RedisServer) -> Vec<(String, String)> {
    redis
        .dump()
        .into_iter()
        .filter(|(k, _)| k.starts_with("ae:pg:"))
        .collect()
}

fn data_version(redis: &RedisServer, user: &str) -> String {
    redis::cmd("GET")
        .arg(format!("ae:dv:{user}"))
        .query::<Option<String>>(&mut redis.conn())
        .unwrap()
        .unwrap_or_default()
}

/// The user id a page key names (`ae:pg:<user>:...`).
fn page_user(key: &str) -> String {
    key.split(':').nth(2).unwrap_or_default().to_string()
}

#[test]
fn writes_on_any_instance_hand_the_next_read_its_page() {
    let redis = RedisServer::start();
    let state = TempDir::new();
    let a = roomy(&redis, &state).start();
    let b = roomy(&redis, &state).start();
    let t = signup(&a, "cache@example.com");
    let list = |edge: &Edge| get(&edge.url("/api/inventory"), Some(&t));

    // The write read its list's first page back and left it in the cache before answering, so
    // the read that follows, on another instance, needs no database.
    let created = create(&a, "/api/inventory", &t, json!({"name": "Rye"}));
    let id = created.body["data"]["id"].as_i64().unwrap();
    let first = list(&b);
    assert_eq!(
        (first.status, first.header("x-edge-cache")),
        (200, Some("hit"))
    );
    assert_eq!(names(&first), ["Rye"]);
    assert_eq!(first.body["data"][0], created.body["data"]);
    assert_eq!(first.body["pagination"]["total"], 1);
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert!(first.header("ratelimit").is_some());
    assert!(first.header("x-request-id").is_some());

    // Held under the user and the page's name, tagged with the data version, with a TTL.
    let keys = page_keys(&redis);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let (key, value) = &keys[0];
    assert!(
        key.starts_with("ae:pg:") && key.ends_with(":bottles:1:50"),
        "{key}"
    );
    let (tag, body) = value.split_once(':').unwrap();
    assert_eq!(tag, data_version(&redis, &page_user(key)));
    assert_eq!(serde_json::from_str::<Value>(body).unwrap(), first.body);
    let ttl = redis.ttl(key);
    assert!((1..=30).contains(&ttl), "{ttl}");
    for (k, v) in redis.dump() {
        assert!(!k.contains(&t) && !v.contains(&t), "{k}");
    }

    // Pages the write did not read back (here the second of size 1) are retired by it and
    // filled by the next read.
    let second_page = |edge: &Edge| get(&edge.url("/api/inventory?limit=1&page=2"), Some(&t));
    create(&b, "/api/inventory", &t, json!({"name": "Gin"}));
    let miss = second_page(&a);
    assert_eq!(
        (miss.header("x-edge-cache"), names(&miss)),
        (Some("miss"), vec!["Rye".to_string()])
    );
    assert_eq!(second_page(&b).header("x-edge-cache"), Some("hit"));
    assert_eq!(names(&list(&a)), ["Gin", "Rye"]);

    let r = put(
        &b.url(&format!("/api/inventory/{id}")),
        &t,
        json!({"name": "Rye, bonded"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let after = list(&a);
    assert_eq!(after.header("x-edge-cache"), Some("hit"));
    assert_eq!(names(&after), ["Gin", "Rye, bonded"]);
    let retired = second_page(&a);
    assert_eq!(
        (retired.header("x-edge-cache"), names(&retired)),
        (Some("miss"), vec!["Rye, bonded".to_string()])
    );

    assert_eq!(
        delete(&b.url(&format!("/api/inventory/{id}")), &t).status,
        200
    );
    let gone = list(&a);
    assert_eq!(
        (gone.header("x-edge-cache"), names(&gone)),
        (Some("hit"), vec!["Gin".to_string()])
    );
    assert_eq!(gone.body["pagination"]["total"], 1);

    // A refused write changes nothing, and still retires the pages (it cannot know better).
    let refused = post(&a.url("/api/inventory"), Some(&t), json!({"name": ""}));
    assert_eq!(refused.status, 400, "{}", refused.text);
    let again = list(&b);
    assert_eq!(
        (again.header("x-edge-cache"), names(&again)),
        (Some("miss"), vec!["Gin".to_string()])
    );
}

/// Another write moved the version on between this write's check and its commit (here: a
/// test holding SQLite's write lock while it bumps the version as another instance would).
/// The page this write reads back may lack that other write, so it must not be kept.
#[test]
fn a_write_overtaken_by_another_leaves_no_page_behind() {
    if pg::on_postgres() {
        return; // it writes the SQLite file itself
    }
    let Setup {
        redis,
        state,
        edge,
        t,
    } = setup("race@example.com");
    create(&edge, "/api/inventory", &t, json!({"name": "First"}));
    let (key, _) = page_keys(&redis).remove(0);
    let user = page_user(&key);
    let user_limit = format!("ae:rl:user:u{user}:");
    let charged = || -> i64 {
        redis
            .dump()
            .into_iter()
            .filter(|(k, _)| k.starts_with(&user_limit))
            .map(|(_, v)| v.parse::<i64>().unwrap_or(0))
            .sum()
    };
    let before = charged();

    let db = rusqlite::Connection::open(state.0.join("sqlite_db.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let url = edge.url("/api/inventory");
    let token = t.clone();
    let writer = std::thread::spawn(move || post(&url, Some(&token), json!({"name": "Second"})));
    // The write has passed its check (its user limit was charged) and waits for the lock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while charged() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the write never reached its check"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let overtaken: i64 = data_version(&redis, &user).parse::<i64>().unwrap() + 1000;
    let _: () = redis::cmd("SET")
        .arg(format!("ae:dv:{user}"))
        .arg(overtaken)
        .query(&mut redis.conn())
        .unwrap();
    db.execute_batch("ROLLBACK").unwrap();
    let r = writer.join().unwrap();
    assert_eq!(r.status, 201, "{}", r.text);

    let version = data_version(&redis, &user);
    assert!(version.parse::<i64>().unwrap() > overtaken, "{version}");
    for (_, value) in page_keys(&redis) {
        assert!(!value.starts_with(&format!("{version}:")), "{value}");
    }
    let read = get(&edge.url("/api/inventory"), Some(&t));
    assert_eq!(
        (read.header("x-edge-cache"), names(&read)),
        (
            Some("miss"),
            vec!["Second".to_string(), "First".to_string()]
        )
    );
}

/// Clients of one user write through different instances at once, and each, as soon as its
/// write is answered, reads the list through another instance. However the writes interleave
/// (each hands the cache a page it read back while the others move the version on), no read
/// may miss a write answered before it began.
#[test]
fn concurrent_writers_on_every_instance_read_their_own_writes() {
    let redis = RedisServer::start();
    let state = TempDir::new();
    let edges: Vec<Edge> = (0..3).map(|_| roomy(&redis, &state).start()).collect();
    let t = signup(&edges[0], "writers@example.com");
    let bottles: Vec<i64> = (0..4)
        .map(|w| {
            let r = create(
                &edges[0],
                "/api/inventory",
                &t,
                json!({"name": format!("W{w}")}),
            );
            r.body["data"]["id"].as_i64().unwrap()
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let (edges, t) = (&edges, &t);
    let writes: usize = std::thread::scope(|s| {
        let writers: Vec<_> = bottles
            .iter()
            .enumerate()
            .map(|(w, id)| {
                s.spawn(move || {
                    let mut n = 0;
                    while std::time::Instant::now() < deadline {
                        n += 1;
                        let on = &edges[(w + n) % 3];
                        let r = put(
                            &on.url(&format!("/api/inventory/{id}")),
                            t,
                            json!({"name": format!("W{w}"), "Stock Number": n}),
                        );
                        assert_eq!(r.status, 200, "{}", r.text);
                        let list = get(&edges[(w + n + 1) % 3].url("/api/inventory"), Some(t));
                        let seen = list.body["data"]
                            .as_array()
                            .and_then(|rows| rows.iter().find(|row| row["id"] == *id))
                            .and_then(|row| row["Stock Number"].as_u64());
                        assert_eq!(
                            seen,
                            Some(n as u64),
                            "writer {w}'s write {n} is missing from a later read ({:?}): {}",
                            list.header("x-edge-cache"),
                            list.text
                        );
                    }
                    n
                })
            })
            .collect();
        writers.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(writes >= 8, "only {writes} writes in 3 s");
}

#[test]
fn pages_are_per_user_per_resource_and_per_page() {
    let redis = RedisServer::start();
    let state = TempDir::new();
    let edge = roomy(&redis, &state).start();
    let alice = signup(&edge, "alice@example.com");
    let bob = signup(&edge, "bob@example.com");
    for name in ["A1", "A2", "A3"] {
        create(&edge, "/api/inventory", &alice, json!({"name": name}));
    }
    let page =
        |token: &str, query: &str| get(&edge.url(&format!("/api/inventory{query}")), Some(token));
    assert_eq!(names(&page(&alice, "?limit=2")), ["A3", "A2"]);
    assert_eq!(names(&page(&alice, "?limit=2&page=2")), ["A1"]);
    let again = page(&alice, "?page=2&limit=2");
    assert_eq!(
        (again.header("x-edge-cache"), names(&again)),
        (Some("hit"), vec!["A1".to_string()])
    );
    let other = page(&bob, "?limit=2");
    assert_eq!(
        (other.header("x-edge-cache"), names(&other)),
        (Some("miss"), Vec::<String>::new())
    );
    // Favorites are a list without pages; a write to recipes retires them too.
    let favs = get(&edge.url("/api/favorites"), Some(&alice));
    assert_eq!(favs.header("x-edge-cache"), Some("miss"));
    assert_eq!(
        get(&edge.url("/api/favorites"), Some(&alice)).header("x-edge-cache"),
        Some("hit")
    );
    create(&edge, "/api/recipes", &alice, json!({"name": "Sazerac"}));
    assert_eq!(
        get(&edge.url("/api/favorites"), Some(&alice)).header("x-edge-cache"),
        Some("miss")
    );
    let recipes = get(&edge.url("/api/recipes"), Some(&alice));
    assert_eq!(
        (recipes.header("x-edge-cache"), names(&recipes)),
        (Some("hit"), vec!["Sazerac".to_string()])
    );
    // A refused query caches nothing.
    let bad = page(&alice, "?page=0");
    assert_eq!((bad.status, bad.header("x-edge-cache")), (400, None));
    assert!(page_keys(&redis).iter().all(|(k, _)| !k.ends_with(":0:50")));
}

/// A write reads back at most 100 rows of a list without pages: past that, the next read
/// fills the cache instead (and a long list read back on every write of an import would make
/// the import quadratic).
#[test]
fn a_long_list_without_pages_is_not_read_back_by_writes() {
    if pg::on_postgres() {
        return; // it writes the SQLite file itself
    }
    let Setup {
        redis: _redis,
        state,
        edge,
        t,
    } = setup("long@example.com");
    let favorites = || get(&edge.url("/api/favorites"), Some(&t));
    // One favorite added, then the list read: how it was served, its length, its newest row.
    let add_and_read = |name: &str| {
        create(&edge, "/api/favorites", &t, json!({ "recipe_name": name }));
        let r = favorites();
        let rows = column(&r, "recipe_name");
        let how = r.header("x-edge-cache").unwrap_or_default().to_string();
        (how, rows.len(), rows.first().cloned().unwrap_or_default())
    };
    assert_eq!(add_and_read("First"), ("hit".into(), 1, "First".into()));

    let db = rusqlite::Connection::open(state.0.join("sqlite_db.db")).unwrap();
    let user: i64 = db
        .query_row(
            "SELECT id FROM users WHERE email = 'long@example.com'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    for i in 0..98 {
        db.execute(
            "INSERT INTO favorites (user_id, recipe_name) VALUES (?1, ?2)",
            rusqlite::params![user, format!("F{i}")],
        )
        .unwrap();
    }
    drop(db);
    assert_eq!(
        add_and_read("Hundredth"),
        ("hit".into(), 100, "Hundredth".into())
    );
    assert_eq!(
        add_and_read("Past the cap"),
        ("miss".into(), 101, "Past the cap".into())
    );
    assert_eq!(favorites().header("x-edge-cache"), Some("hit"));
}

#[test]
fn a_cached_page_is_never_served_past_a_limit_or_to_a_revoked_token() {
    let redis = RedisServer::start();
    let state = TempDir::new();
    let limited = |limit: &str| {
        Edge::builder(&redis.url())
            .state_dir(&state.0)
            .var("user_rate_limit", limit)
            .start()
    };
    let edge = limited("3/15m");
    let t = signup(&edge, "limited@example.com");
    let list = || get(&edge.url("/api/inventory"), Some(&t));
    assert_eq!(list().header("x-edge-cache"), Some("miss"));
    assert_eq!(list().header("x-edge-cache"), Some("hit"));
    assert_eq!(list().header("x-edge-cache"), Some("hit"));
    let refused = list();
    assert_eq!(
        (refused.status, refused.header("x-edge-cache")),
        (429, None)
    );
    assert!(
        refused.error().starts_with("Rate limit exceeded"),
        "{}",
        refused.text
    );

    let edge = limited("100/15m");
    let t = login_token(&edge, "limited@example.com");
    let list = || get(&edge.url("/api/inventory"), Some(&t));
    assert_eq!(list().status, 200);
    assert_eq!(list().header("x-edge-cache"), Some("hit"));
    assert_eq!(
        post(&edge.url("/auth/logout"), Some(&t), json!({})).status,
        200
    );
    let revoked = list();
    assert_eq!(
        (
            revoked.status,
            revoked.error(),
            revoked.header("x-edge-cache")
        ),
        (401, "Token has been revoked. Please login again.", None)
    );
}

#[test]
fn only_a_page_tagged_with_the_current_data_version_is_served() {
    let Setup {
        redis,
        state: _state,
        edge,
        t,
    } = setup("tags@example.com");
    create(&edge, "/api/inventory", &t, json!({"name": "Real"}));
    let list = || get(&edge.url("/api/inventory"), Some(&t));
    let real = list();
    let (key, value) = page_keys(&redis).remove(0);
    let (tag, _) = value.split_once(':').unwrap();
    let plant = |value: String| {
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(value)
            .query(&mut redis.conn())
            .unwrap();
    };
    plant(format!(
        "{tag}:{{\"success\":true,\"data\":[{{\"name\":\"Planted\"}}]}}"
    ));
    assert_eq!(names(&list()), ["Planted"]);
    let stale = tag.parse::<i64>().unwrap() - 1;
    plant(format!(
        "{stale}:{{\"success\":true,\"data\":[{{\"name\":\"Planted\"}}]}}"
    ));
    let r = list();
    assert_eq!(
        (r.header("x-edge-cache"), r.body.clone()),
        (Some("miss"), real.body)
    );
}

#[test]
fn with_the_cache_off_every_read_goes_to_the_database() {
    let redis = RedisServer::start();
    let state = TempDir::new();
    let edge = roomy(&redis, &state).var("page_cache", "off").start();
    let t = signup(&edge, "off@example.com");
    let versions = || -> Vec<(String, String)> {
        redis
            .dump()
            .into_iter()
            .filter(|(k, _)| k.starts_with("ae:dv:"))
            .collect()
    };
    let signed_up = versions();
    create(&edge, "/api/inventory", &t, json!({"name": "Uncached"}));
    for _ in 0..2 {
        let r = get(&edge.url("/api/inventory"), Some(&t));
        assert_eq!((r.status, r.header("x-edge-cache")), (200, None));
        assert_eq!(names(&r), ["Uncached"]);
    }
    assert!(page_keys(&redis).is_empty());
    // Writes leave the data version alone: with the cache off, a write is one round trip.
    assert_eq!(versions(), signed_up);
    let embedded = Edge::builder("").start();
    let t = signup(&embedded, "embedded@example.com");
    let r = get(&embedded.url("/api/inventory"), Some(&t));
    assert_eq!((r.status, r.header("x-edge-cache")), (200, None));
}
