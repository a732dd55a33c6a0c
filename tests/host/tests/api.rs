//! The AlcheMix data API behind the edge: CRUD, isolation between users, pagination,
//! validation, CORS, and concurrent writers sharing one database.

mod support;

use std::sync::{Arc, Barrier};

use serde_json::{json, Value};
use support::*;

fn roomy(redis: &RedisServer) -> EdgeBuilder {
    Edge::builder(&redis.url())
        .var("api_rate_limit", "100000/15m")
        .var("user_rate_limit", "100000/15m")
}

fn put(url: &str, token: &str, body: Value) -> Reply {
    send(client().put(url).bearer_auth(token).json(&body))
}

fn delete(url: &str, token: &str) -> Reply {
    send(client().delete(url).bearer_auth(token))
}

#[test]
fn inventory_round_trip_keeps_alchemix_field_names() {
    let redis = RedisServer::start();
    let edge = roomy(&redis).start();
    let t = signup(&edge, "bar@example.com");
    let bottle = json!({
        "name": "Rittenhouse Rye", "Stock Number": 12, "Liquor Type": "Whiskey",
        "ABV (%)": 50, "Profile (Nose)": "baking spice", "Additional Notes": "<b>bold</b> & 'quoted'"
    });
    let r = post(&edge.url("/api/inventory"), Some(&t), bottle);
    assert_eq!(r.status, 201, "{}", r.text);
    let row = &r.body["data"];
    let id = row["id"].as_i64().unwrap();
    assert_eq!(row["name"], "Rittenhouse Rye");
    assert_eq!(row["Stock Number"], 12);
    assert_eq!(row["ABV (%)"], 50.0);
    assert_eq!(row["Additional Notes"], "<b>bold</b> & 'quoted'");
    assert_eq!(row["Palate"], Value::Null);

    // PUT is a full replace: what is left out becomes null.
    let r = put(
        &edge.url(&format!("/api/inventory/{id}")),
        &t,
        json!({"name": "Rye", "Palate": "dry"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["Stock Number"], Value::Null);
    assert_eq!(r.body["data"]["Palate"], "dry");

    let r = get(&edge.url("/api/inventory"), Some(&t));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["pagination"]["total"], 1);

    let r = delete(&edge.url(&format!("/api/inventory/{id}")), &t);
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (200, Some("Bottle deleted successfully"))
    );
    assert_eq!(
        delete(&edge.url(&format!("/api/inventory/{id}")), &t).status,
        404
    );
}

#[test]
fn recipes_collections_and_favorites() {
    let redis = RedisServer::start();
    let edge = roomy(&redis).start();
    let t = signup(&edge, "mixer@example.com");

    let c = post(
        &edge.url("/api/collections"),
        Some(&t),
        json!({"name": "Classics"}),
    );
    assert_eq!(c.status, 201, "{}", c.text);
    let cid = c.body["data"]["id"].as_i64().unwrap();
    assert_eq!(c.body["data"]["recipe_count"], 0);

    let r = post(
        &edge.url("/api/recipes"),
        Some(&t),
        json!({"name": "Negroni", "ingredients": ["gin", "Campari", "vermouth"], "collection_id": cid}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let rid = r.body["data"]["id"].as_i64().unwrap();
    assert_eq!(
        r.body["data"]["ingredients"],
        json!(["gin", "Campari", "vermouth"])
    );
    // A string holding a JSON list is accepted too; a default is an empty list.
    let r2 = post(
        &edge.url("/api/recipes"),
        Some(&t),
        json!({"name": "Gimlet", "ingredients": "[\"gin\",\"lime\"]"}),
    );
    assert_eq!(r2.body["data"]["ingredients"], json!(["gin", "lime"]));
    let r3 = post(
        &edge.url("/api/recipes"),
        Some(&t),
        json!({"name": "Water"}),
    );
    assert_eq!(r3.body["data"]["ingredients"], json!([]));

    // Partial update: only the fields sent change; an empty body changes nothing.
    let u = put(
        &edge.url(&format!("/api/recipes/{rid}")),
        &t,
        json!({"glass": "rocks"}),
    );
    assert_eq!(u.status, 200, "{}", u.text);
    assert_eq!(u.body["data"]["glass"], "rocks");
    assert_eq!(u.body["data"]["name"], "Negroni");
    let u = put(&edge.url(&format!("/api/recipes/{rid}")), &t, json!({}));
    assert_eq!(u.body["data"]["glass"], "rocks");

    let list = get(&edge.url("/api/collections"), Some(&t));
    assert_eq!(list.body["data"][0]["recipe_count"], 1);

    let f = post(
        &edge.url("/api/favorites"),
        Some(&t),
        json!({"recipe_name": "Negroni", "recipe_id": rid}),
    );
    assert_eq!(f.status, 201, "{}", f.text);
    let fid = f.body["data"]["id"].as_i64().unwrap();
    assert_eq!(
        get(&edge.url("/api/favorites"), Some(&t)).body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Deleting the collection keeps its recipes; deleting a recipe keeps the favorite's name.
    assert_eq!(
        delete(&edge.url(&format!("/api/collections/{cid}")), &t).status,
        200
    );
    let recipes = get(&edge.url("/api/recipes"), Some(&t));
    let negroni = recipes.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == rid)
        .unwrap()
        .clone();
    assert_eq!(negroni["collection_id"], Value::Null);
    assert_eq!(
        delete(&edge.url(&format!("/api/recipes/{rid}")), &t).status,
        200
    );
    let favs = get(&edge.url("/api/favorites"), Some(&t));
    assert_eq!(favs.body["data"][0]["recipe_id"], Value::Null);
    assert_eq!(favs.body["data"][0]["recipe_name"], "Negroni");
    let r = delete(&edge.url(&format!("/api/favorites/{fid}")), &t);
    assert_eq!(r.body["message"], "Favorite removed successfully");

    let u = put(&edge.url("/api/collections/999"), &t, json!({"name": "x"}));
    assert_eq!(u.status, 404);
    let c2 = post(
        &edge.url("/api/collections"),
        Some(&t),
        json!({"name": "Tiki"}),
    );
    let c2 = c2.body["data"]["id"].as_i64().unwrap();
    let u = put(
        &edge.url(&format!("/api/collections/{c2}")),
        &t,
        json!({"unknown": 1}),
    );
    assert_eq!((u.status, u.error()), (400, "No valid fields to update"));
}

#[test]
fn users_cannot_see_change_or_delete_each_others_rows() {
    let redis = RedisServer::start();
    let edge = roomy(&redis).start();
    let alice = signup(&edge, "alice@example.com");
    let bob = signup(&edge, "bob@example.com");
    let mut ids = Vec::new();
    for (res, body) in [
        ("inventory", json!({"name": "Alice's gin"})),
        ("recipes", json!({"name": "Alice's sour"})),
        ("collections", json!({"name": "Alice's list"})),
        ("favorites", json!({"recipe_name": "Alice's fav"})),
    ] {
        let r = post(&edge.url(&format!("/api/{res}")), Some(&alice), body);
        assert_eq!(r.status, 201, "{res}: {}", r.text);
        ids.push((res, r.body["data"]["id"].as_i64().unwrap()));
    }
    for (res, id) in &ids {
        let list = get(&edge.url(&format!("/api/{res}")), Some(&bob));
        assert_eq!(list.body["data"], json!([]), "{res}");
        if *res != "favorites" {
            let body = json!({"name": "stolen"});
            let r = put(&edge.url(&format!("/api/{res}/{id}")), &bob, body);
            assert_eq!(r.status, 404, "{res}: {}", r.text);
        }
        assert_eq!(
            delete(&edge.url(&format!("/api/{res}/{id}")), &bob).status,
            404,
            "{res}"
        );
    }
    // Bob may not point a favorite or a recipe at Alice's rows.
    let recipe = ids[1].1;
    let r = post(
        &edge.url("/api/favorites"),
        Some(&bob),
        json!({"recipe_name": "x", "recipe_id": recipe}),
    );
    assert_eq!((r.status, r.error()), (400, "Invalid recipe ID"));
    let r = post(
        &edge.url("/api/recipes"),
        Some(&bob),
        json!({"name": "x", "collection_id": ids[2].1}),
    );
    assert_eq!(
        (r.status, r.error()),
        (400, "Collection not found or access denied")
    );
    let r = post(
        &edge.url("/api/favorites"),
        Some(&bob),
        json!({"recipe_name": "x", "recipe_id": 999_999}),
    );
    assert_eq!(r.status, 400);
    // Alice still has everything.
    for (res, _) in &ids {
        let list = get(&edge.url(&format!("/api/{res}")), Some(&alice));
        assert_eq!(list.body["data"].as_array().unwrap().len(), 1, "{res}");
    }
}

#[test]
fn pagination_edges() {
    let redis = RedisServer::start();
    let edge = roomy(&redis).start();
    let t = signup(&edge, "pages@example.com");
    for i in 0..7 {
        let r = post(
            &edge.url("/api/inventory"),
            Some(&t),
            json!({"name": format!("bottle {i}")}),
        );
        assert_eq!(r.status, 201);
    }
    let r = get(&edge.url("/api/inventory?page=2&limit=3"), Some(&t));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["pagination"],
        json!({"page": 2, "limit": 3, "total": 7, "totalPages": 3, "hasNextPage": true, "hasPreviousPage": true})
    );
    // Newest first.
    let names: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bottle 3", "bottle 2", "bottle 1"]);
    let r = get(&edge.url("/api/inventory?page=9"), Some(&t));
    assert_eq!((r.status, r.body["data"].clone()), (200, json!([])));
    assert_eq!(r.body["pagination"]["hasNextPage"], false);
    for (q, err) in [
        ("page=0", "Invalid page parameter"),
        ("page=-1", "Invalid page parameter"),
        ("page=abc", "Invalid page parameter"),
        ("limit=0", "Invalid limit parameter"),
        ("limit=101", "Invalid limit parameter"),
        ("limit=1.5", "Invalid limit parameter"),
    ] {
        let r = get(&edge.url(&format!("/api/recipes?{q}")), Some(&t));
        assert_eq!((r.status, r.error()), (400, err), "{q}");
        assert!(r.body["details"].is_array());
    }
}

#[test]
fn validation_names_every_field_and_stores_nothing() {
    let redis = RedisServer::start();
    let edge = roomy(&redis).start();
    let t = signup(&edge, "strict@example.com");
    let url = edge.url("/api/inventory");
    let r = post(
        &url,
        Some(&t),
        json!({
            "name": "x".repeat(256), "Stock Number": 1_000_000, "ABV (%)": "strong", "Palate": "p".repeat(501)
        }),
    );
    assert_eq!(
        (r.status, r.error()),
        (400, "Validation failed"),
        "{}",
        r.text
    );
    let details: Vec<&str> = r.body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(details.len(), 4, "{details:?}");
    for field in ["name", "Stock Number", "ABV (%)", "Palate"] {
        assert!(
            details.iter().any(|d| d.starts_with(field)),
            "{field}: {details:?}"
        );
    }
    for body in [
        json!({}),
        json!({"name": "   "}),
        json!({"name": 42}),
        json!({"name": null}),
    ] {
        assert_eq!(post(&url, Some(&t), body).status, 400);
    }
    let r = send(
        client()
            .post(&url)
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body("{\"name\":"),
    );
    assert_eq!((r.status, r.error()), (400, "Invalid JSON body"));
    let r = post(
        &edge.url("/api/recipes"),
        Some(&t),
        json!({"name": "r", "ingredients": (0..101).map(|i| i.to_string()).collect::<Vec<_>>()}),
    );
    assert_eq!(r.status, 400);
    let r = post(
        &edge.url("/api/recipes"),
        Some(&t),
        json!({"name": "r", "ingredients": "not json"}),
    );
    assert_eq!(r.status, 400);
    for bad in ["abc", "0", "-3", "1.5", "1e3", "99999999999999999999"] {
        let r = put(
            &edge.url(&format!("/api/inventory/{bad}")),
            &t,
            json!({"name": "x"}),
        );
        assert_eq!((r.status, r.error()), (400, "Invalid bottle ID"), "{bad}");
        assert_eq!(
            delete(&edge.url(&format!("/api/recipes/{bad}")), &t).status,
            400,
            "{bad}"
        );
    }
    // Nothing half-done: every refused write left the tables empty.
    assert_eq!(get(&url, Some(&t)).body["pagination"]["total"], 0);
    assert_eq!(
        get(&edge.url("/api/recipes"), Some(&t)).body["pagination"]["total"],
        0
    );

    // SQL- and HTML-looking text is data, stored and returned verbatim.
    for text in [
        "Robert'); DROP TABLE bottles;--",
        "<script>alert(1)</script>",
        "1 OR 1=1",
        "\u{1F378} \"quoted\"",
    ] {
        let r = post(
            &url,
            Some(&t),
            json!({"name": text, "Additional Notes": text}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.body["data"]["name"], text);
        assert_eq!(r.body["data"]["Additional Notes"], text);
    }
    assert_eq!(get(&url, Some(&t)).body["pagination"]["total"], 4);
}

#[test]
fn api_routes_need_a_token_and_are_limited_per_ip_and_user() {
    let redis = RedisServer::start();
    let edge = Edge::builder(&redis.url())
        .var("api_rate_limit", "6/15m")
        .var("user_rate_limit", "3/15m")
        .start();
    let r = get(&edge.url("/api/inventory"), None);
    assert_eq!(
        (r.status, r.error()),
        (401, "No authorization token provided")
    );
    let t = signup(&edge, "busy@example.com");
    let statuses: Vec<u16> = (0..4)
        .map(|_| get(&edge.url("/api/inventory"), Some(&t)).status)
        .collect();
    // The first call without a token spent one unit of the IP budget, not the user's.
    assert_eq!(statuses, [200, 200, 200, 429]);
    let r = get(&edge.url("/api/inventory"), Some(&t));
    assert!(r
        .header("ratelimit-policy")
        .unwrap()
        .contains("\"user\";q=3"));
    assert!(r
        .header("ratelimit-policy")
        .unwrap()
        .contains("\"api\";q=6"));
}

#[test]
fn cors_preflight_is_free_and_refusals_carry_cors_headers() {
    let redis = RedisServer::start();
    let origin = "https://app.example";
    let edge = Edge::builder(&redis.url())
        .var("cors_origins", origin)
        .var("api_rate_limit", "1/15m")
        .start();
    for _ in 0..5 {
        let r = send(
            client()
                .request(reqwest::Method::OPTIONS, edge.url("/api/inventory"))
                .header("origin", origin)
                .header("access-control-request-method", "GET"),
        );
        assert_eq!(r.status, 204);
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
        assert!(r
            .header("access-control-allow-methods")
            .unwrap()
            .contains("PUT"));
        assert!(r.header("ratelimit").is_none());
    }
    assert!(
        redis.dump().is_empty(),
        "preflights touched Redis: {:?}",
        redis.dump()
    );
    let r = send(
        client()
            .request(reqwest::Method::OPTIONS, edge.url("/api/inventory"))
            .header("origin", "https://evil.example"),
    );
    assert_eq!(r.status, 403);
    assert!(r.header("access-control-allow-origin").is_none());

    let t = signup(&edge, "cors@example.com");
    let call = || {
        send(
            client()
                .get(edge.url("/api/inventory"))
                .bearer_auth(&t)
                .header("origin", origin),
        )
    };
    assert_eq!(call().status, 200);
    let r = call();
    assert_eq!(r.status, 429);
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    assert!(r
        .header("access-control-expose-headers")
        .unwrap()
        .contains("Retry-After"));
}

#[test]
fn concurrent_creates_from_three_instances_share_one_database() {
    let redis = RedisServer::start();
    let state = TempDir::new();
    let edges: Arc<Vec<Edge>> = Arc::new(
        (0..3)
            .map(|_| roomy(&redis).state_dir(&state.0).start())
            .collect(),
    );
    let t = Arc::new(signup(&edges[0], "busy.bar@example.com"));
    let n = 60;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (edges, t, barrier) = (edges.clone(), t.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let r = post(
                    &edges[i % 3].url("/api/inventory"),
                    Some(&t),
                    json!({"name": format!("b{i}")}),
                );
                (r.status, r.body["data"]["id"].as_i64())
            })
        })
        .collect();
    let results: Vec<(u16, Option<i64>)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().all(|(s, _)| *s == 201), "{results:?}");
    let mut ids: Vec<i64> = results.iter().filter_map(|(_, id)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n);
    let r = get(&edges[2].url("/api/inventory?limit=100"), Some(&t));
    assert_eq!(r.body["pagination"]["total"], n);
}

#[test]
fn openapi_is_served() {
    let redis = RedisServer::start();
    let edge = Edge::start(&redis);
    let r = get(&edge.url("/openapi.json"), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body["openapi"], "3.1.0");
    assert!(r.body["paths"]["/api/inventory/{id}"]["put"].is_object());
}
