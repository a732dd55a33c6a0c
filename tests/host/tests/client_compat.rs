//! What AlcheMix's own web client sends, answered as AlcheMix answers it: numbers typed as
//! text, CSV imports, deleting every recipe, 405s that name their methods, 429s that name
//! their policy, bcrypt's 72-byte limit, readable 413s and addresses in any case.

mod support;

use std::io::{Read, Write};

use reqwest::blocking::multipart::{Form, Part};
use serde_json::{json, Value};
use support::*;

fn roomy(redis: &RedisServer) -> EdgeBuilder {
    Edge::builder(&redis.url())
        .var("api_rate_limit", "100000/15m")
        .var("user_rate_limit", "100000/15m")
}

fn csv_form(csv: &str) -> Form {
    Form::new().part(
        "file",
        Part::bytes(csv.as_bytes().to_vec())
            .file_name("bar.csv")
            .mime_str("text/csv")
            .unwrap(),
    )
}

fn upload(url: &str, token: &str, form: Form) -> Reply {
    send(client().post(url).bearer_auth(token).multipart(form))
}

fn list(edge: &Edge, path: &str, token: &str) -> Vec<Value> {
    let r = get(&edge.url(&format!("{path}?limit=100")), Some(token));
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"].as_array().unwrap().clone()
}

#[test]
fn numeric_bottle_fields_accept_numbers_as_text() {
    let redis = RedisServer::start();
    let edge = roomy(&redis).start();
    let t = signup(&edge, "forms@example.com");
    let url = edge.url("/api/inventory");

    let r = post(
        &url,
        Some(&t),
        json!({"name": "Chartreuse", "ABV (%)": "47.3", "Stock Number": " 2 "}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["ABV (%)"], json!(47.3));
    assert_eq!(r.body["data"]["Stock Number"], json!(2));

    let r = post(
        &url,
        Some(&t),
        json!({"name": "Empty fields", "ABV (%)": "", "Stock Number": ""}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["ABV (%)"], Value::Null);
    assert_eq!(r.body["data"]["Stock Number"], Value::Null);

    let r = post(
        &url,
        Some(&t),
        json!({"name": "Bad", "ABV (%)": "strong", "Stock Number": "2.5"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.body["details"],
        json!([
            "Stock Number: Must be a whole number",
            "ABV (%): Must be a number"
        ])
    );
    assert_eq!(list(&edge, "/api/inventory", &t).len(), 2, "nothing stored");
}

#[test]
fn csv_imports_store_good_rows_report_bad_ones_and_show_on_every_instance() {
    let redis = RedisServer::start();
    let state = TempDir::new();
    let a = roomy(&redis).state_dir(&state.0).start();
    let b = roomy(&redis).state_dir(&state.0).start();
    let t = signup(&a, "importer@example.com");

    let csv = "Name,ABV,Stock,Liquor Type,Notes\n\
               \"Maker's Mark\",45,2,Bourbon,\"Loretto, KY\"\n\
               ,40,1,Gin,no name\n\
               Campari,\"24\",,Bitter,\n\
               \n\
               Overproof,180,1,Rum,\n";
    let r = upload(&a.url("/api/inventory/import"), &t, csv_form(csv));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["success"], true);
    assert_eq!(
        (r.body["imported"].clone(), r.body["count"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(r.body["failed"], 2);
    assert_eq!(
        r.body["errors"],
        json!([
            {"row": 3, "error": "name: Required"},
            {"row": 6, "error": "ABV (%): Must be at most 100"}
        ])
    );
    // Listed on the other instance: one database, and the page cache retired everywhere.
    let rows = list(&b, "/api/inventory", &t);
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{rows:?}");
    assert!(names.contains(&"Maker's Mark") && names.contains(&"Campari"));
    let mark = rows.iter().find(|r| r["name"] == "Maker's Mark").unwrap();
    assert_eq!(mark["ABV (%)"], json!(45.0));
    assert_eq!(mark["Stock Number"], json!(2));
    assert_eq!(mark["Additional Notes"], "Loretto, KY");

    // Refused whole, nothing stored: too many rows, an empty file, no file, over 5 MB.
    let many = format!("name\n{}", "Gin\n".repeat(1001));
    let r = upload(&b.url("/api/inventory/import"), &t, csv_form(&many));
    assert_eq!((r.status, r.error()), (400, "Too many rows"), "{}", r.text);
    let r = upload(&b.url("/api/inventory/import"), &t, csv_form("name\n"));
    assert_eq!((r.status, r.error()), (400, "CSV file is empty"));
    let r = upload(
        &b.url("/api/inventory/import"),
        &t,
        Form::new().text("note", "no file"),
    );
    assert_eq!((r.status, r.error()), (400, "No file uploaded"));
    let big = format!("name\n{}", "x".repeat(5 * 1024 * 1024));
    let r = upload(&b.url("/api/inventory/import"), &t, csv_form(&big));
    assert_eq!((r.status, r.error()), (400, "File too large"), "{}", r.text);
    let r = post(
        &b.url("/api/inventory/import"),
        Some(&t),
        json!({"name": "x"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(list(&a, "/api/inventory", &t).len(), 2);

    // Exactly 1000 rows is allowed, in one transaction.
    let thousand = format!("name\n{}", "Gin\n".repeat(1000));
    let r = upload(&a.url("/api/inventory/import"), &t, csv_form(&thousand));
    assert_eq!((r.status, r.body["imported"].clone()), (200, json!(1000)));
    let r = get(&b.url("/api/inventory"), Some(&t));
    assert_eq!(r.body["pagination"]["total"], 1002);

    // Without a token it is refused like every /api route.
    let r = send(
        client()
            .post(a.url("/api/inventory/import"))
            .multipart(csv_form(csv)),
    );
    assert_eq!(r.status, 401);
}

#[test]
fn recipe_imports_split_ingredients_and_take_a_collection() {
    let redis = RedisServer::start();
    let edge = roomy(&redis).start();
    let t = signup(&edge, "recipes@example.com");
    let other = signup(&edge, "other@example.com");
    let r = post(
        &edge.url("/api/collections"),
        Some(&t),
        json!({"name": "Classics"}),
    );
    let collection = r.body["data"]["id"].as_i64().unwrap();
    let theirs = post(
        &edge.url("/api/collections"),
        Some(&other),
        json!({"name": "Theirs"}),
    )
    .body["data"]["id"]
        .as_i64()
        .unwrap();

    let csv = "Cocktail,Ingredients,Method,Glass\n\
               Negroni,\"1 oz gin; 1 oz Campari; 1 oz vermouth\",Stir,Rocks\n\
               Daiquiri,\"2 oz rum, 1 oz lime, 0.75 oz syrup\",Shake,Coupe\n";
    let form = csv_form(csv).text("collection_id", collection.to_string());
    let r = upload(&edge.url("/api/recipes/import"), &t, form);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["imported"].clone(), r.body["failed"].clone()),
        (json!(2), json!(0))
    );
    assert!(r.body.get("errors").is_none(), "{}", r.text);
    let recipes = list(&edge, "/api/recipes", &t);
    let negroni = recipes.iter().find(|r| r["name"] == "Negroni").unwrap();
    assert_eq!(
        negroni["ingredients"],
        json!(["1 oz gin", "1 oz Campari", "1 oz vermouth"])
    );
    assert_eq!(negroni["instructions"], "Stir");
    assert_eq!(negroni["collection_id"], collection);
    let daiquiri = recipes.iter().find(|r| r["name"] == "Daiquiri").unwrap();
    assert_eq!(daiquiri["ingredients"].as_array().unwrap().len(), 3);
    let r = get(&edge.url("/api/collections"), Some(&t));
    assert_eq!(r.body["data"][0]["recipe_count"], 2);

    // Another user's collection, or no collection at all, stores nothing.
    for bad in [theirs.to_string(), "abc".into(), "0".into()] {
        let form = csv_form(csv).text("collection_id", bad.clone());
        let r = upload(&edge.url("/api/recipes/import"), &t, form);
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.error(), "Collection not found or access denied");
    }
    assert_eq!(list(&edge, "/api/recipes", &t).len(), 2);
}

#[test]
fn delete_all_recipes_keeps_favorites_without_their_link() {
    let redis = RedisServer::start();
    let edge = roomy(&redis).start();
    let t = signup(&edge, "purge@example.com");
    let other = signup(&edge, "keeper@example.com");
    let mut first = 0;
    for name in ["Negroni", "Boulevardier", "Americano"] {
        let r = post(
            &edge.url("/api/recipes"),
            Some(&t),
            json!({"name": name, "ingredients": ["x"]}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        first = r.body["data"]["id"].as_i64().unwrap();
    }
    post(
        &edge.url("/api/recipes"),
        Some(&other),
        json!({"name": "Theirs"}),
    );
    let r = post(
        &edge.url("/api/favorites"),
        Some(&t),
        json!({"recipe_name": "Americano", "recipe_id": first}),
    );
    assert_eq!(r.status, 201, "{}", r.text);

    let r = send(
        client()
            .delete(edge.url("/api/recipes/all"))
            .bearer_auth(&t),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"success": true, "deleted": 3, "message": "Deleted 3 recipes"})
    );
    assert!(list(&edge, "/api/recipes", &t).is_empty());
    let favorites = list(&edge, "/api/favorites", &t);
    assert_eq!(favorites.len(), 1);
    assert_eq!(favorites[0]["recipe_name"], "Americano");
    assert_eq!(favorites[0]["recipe_id"], Value::Null);
    assert_eq!(list(&edge, "/api/recipes", &other).len(), 1);

    let r = send(
        client()
            .delete(edge.url("/api/recipes/all"))
            .bearer_auth(&t),
    );
    assert_eq!(r.body["message"], "Deleted 0 recipes");
}

#[test]
fn method_not_allowed_names_the_methods() {
    let redis = RedisServer::start();
    let edge = roomy(&redis).start();
    let t = signup(&edge, "methods@example.com");
    let cases = [
        ("DELETE", "/auth/login", "POST"),
        ("POST", "/health", "GET, HEAD"),
        ("PATCH", "/api/inventory", "GET, HEAD, POST"),
        ("PATCH", "/api/inventory/1", "PUT, DELETE"),
        ("PUT", "/api/favorites/1", "DELETE"),
        ("GET", "/api/inventory/import", "POST"),
        ("GET", "/api/recipes/all", "DELETE"),
    ];
    for (method, path, allow) in cases {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = send(client().request(m, edge.url(path)).bearer_auth(&t));
        assert_eq!(r.status, 405, "{method} {path}: {}", r.text);
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(r.body["success"], false);
    }
}

#[test]
fn a_refusal_names_its_policy_and_no_reset_wraps() {
    let redis = RedisServer::start();
    let edge = Edge::builder(&redis.url())
        .var("user_rate_limit", "3/2s")
        .var("api_rate_limit", "100/2s")
        .start();
    let t = signup(&edge, "wrap@example.com");
    let inventory = edge.url("/api/inventory");
    // Start just after a window boundary, so two requests fill the api policy's previous slot.
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    std::thread::sleep(std::time::Duration::from_millis(
        (2000 - now_ms() % 2000) as u64 + 50,
    ));
    for _ in 0..2 {
        assert_eq!(get(&inventory, Some(&t)).status, 200);
    }
    std::thread::sleep(std::time::Duration::from_millis(
        (2000 - now_ms() % 2000) as u64 + 50,
    ));
    let mut refused = None;
    for _ in 0..5 {
        let r = get(&inventory, Some(&t));
        let header = r.header("ratelimit").unwrap_or_default().to_string();
        for item in header.split(", ") {
            let t: u64 = item
                .rsplit_once(";t=")
                .and_then(|(_, t)| t.parse().ok())
                .unwrap_or_else(|| panic!("{header}"));
            assert!(t <= 4, "a reset beyond the windows: {header}");
        }
        if r.status == 429 {
            refused = Some(r);
        }
    }
    let r = refused.expect("the user policy refuses within five requests");
    assert_eq!(r.body["details"]["policy"], "user", "{}", r.text);
    assert_eq!(r.body["details"]["limit"], 3);
    assert_eq!(r.body["details"]["window"], 2);
    let retry = r.body["details"]["retryAfter"].as_u64().unwrap();
    assert!((1..=4).contains(&retry), "{}", r.text);
    assert_eq!(r.header("retry-after"), Some(retry.to_string().as_str()));

    // The login route's policies are named the same way.
    let edge = Edge::builder(&redis.url())
        .var("auth_rate_limit", "1/15m")
        .start();
    login(&edge, "nobody@example.com", "wrong");
    let r = login(&edge, "nobody@example.com", "wrong");
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(
        (
            r.body["details"]["policy"].clone(),
            r.body["details"]["limit"].clone(),
            r.body["details"]["window"].clone()
        ),
        (json!("auth"), json!(1), json!(900))
    );
}

#[test]
fn passwords_past_72_bytes_are_refused_at_signup() {
    let redis = RedisServer::start();
    let edge = Edge::start(&redis);
    let at_limit = format!("Str0ng!Passw0rd{}", "xyz".repeat(19));
    assert_eq!(at_limit.len(), 72);
    let url = edge.url("/auth/signup");

    let r = post(
        &url,
        None,
        json!({"email": "long@example.com", "password": format!("{at_limit}!")}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.body["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap().contains("72 bytes")),
        "{}",
        r.text
    );
    // 40 characters, 82 bytes: the bytes count.
    let r = post(
        &url,
        None,
        json!({"email": "wide@example.com", "password": format!("Aa1!{}", "é".repeat(39))}),
    );
    assert_eq!(r.status, 400, "{}", r.text);

    let r = post(
        &url,
        None,
        json!({"email": "long@example.com", "password": at_limit}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(login(&edge, "long@example.com", &at_limit).status, 200);
    let r = login(&edge, "long@example.com", &format!("{at_limit}anything"));
    assert_eq!(r.status, 401, "the first 72 bytes alone do not log in");
}

#[test]
fn a_large_body_sent_whole_before_reading_still_gets_its_413() {
    let redis = RedisServer::start();
    let edge = Edge::start(&redis);
    let body = vec![b'a'; 11 * 1024 * 1024];
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", edge.port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /api/inventory HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    // Like Python's http.client: everything is written before anything is read.
    stream.write_all(head.as_bytes()).unwrap();
    stream
        .write_all(&body)
        .expect("the edge reads the whole body");
    let mut reply = [0u8; 4096];
    let n = stream.read(&mut reply).unwrap();
    let text = String::from_utf8_lossy(&reply[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("Request body too large"), "{text}");
}

#[test]
fn emails_match_in_any_case_and_stay_one_account() {
    if pg::on_postgres() {
        return; // it writes the SQLite file itself
    }
    let redis = RedisServer::start();
    let state = TempDir::new();
    let edge = Edge::builder(&redis.url()).state_dir(&state.0).start();
    signup(&edge, "Ada@Example.com");
    assert_eq!(login(&edge, "ADA@example.COM", PASSWORD).status, 200);
    let r = login(&edge, "ada@example.com", PASSWORD);
    assert_eq!(r.body["data"]["user"]["email"], "ada@example.com");

    // An address AlcheMix stored as typed, capitals and all.
    signup(&edge, "grace@example.com");
    let db = rusqlite::Connection::open(state.0.join("sqlite_db.db")).unwrap();
    db.execute(
        "UPDATE users SET email = 'Grace@Example.com' WHERE email = 'grace@example.com'",
        [],
    )
    .unwrap();
    drop(db);
    let r = login(&edge, "grace@example.com", PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["user"]["email"], "Grace@Example.com");
    assert_eq!(login(&edge, "GRACE@EXAMPLE.COM", PASSWORD).status, 200);
    let r = post(
        &edge.url("/auth/signup"),
        None,
        json!({"email": "grace@example.com", "password": PASSWORD}),
    );
    assert_eq!(
        (r.status, r.error()),
        (400, "User already exists with this email")
    );
}
