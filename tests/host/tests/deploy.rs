//! The SpinKube deployment in `deploy/` names what the component needs: every required and
//! every secret variable (secrets only from Kubernetes Secrets), the image `deploy/push` makes,
//! a Redis that never evicts.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_yaml::Value;
use support::root;

fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("deploy").join(file)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}")))
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The application variables of a manifest: name → (required, secret).
fn manifest_variables(file: &str) -> BTreeMap<String, (bool, bool)> {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    manifest["variables"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(name, decl)| {
            let flag = |key: &str| decl.get(key).and_then(toml::Value::as_bool) == Some(true);
            (name.clone(), (flag("required"), flag("secret")))
        })
        .collect()
}

#[test]
fn the_spinapp_names_every_required_and_secret_variable_and_the_pushed_image() {
    let app = &documents("spinapp.yaml")[0];
    assert_eq!(app["kind"], "SpinApp");
    assert_eq!(app["spec"]["replicas"], 3);
    assert_eq!(app["spec"]["executor"], "containerd-shim-spin");

    // The image is the one `deploy/push` pushes, tagged with the manifest's version.
    let push = std::fs::read_to_string(root().join("deploy/push")).unwrap();
    let image = app["spec"]["image"].as_str().unwrap();
    assert!(
        push.contains(&format!("IMAGE:-{image}}}")),
        "deploy/push makes {image}"
    );
    assert!(
        push.contains("-f spin-wasip2.toml"),
        "SpinKube runs the WASI 0.2 build"
    );
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root().join("spin-wasip2.toml")).unwrap()).unwrap();
    let version = manifest["application"]["version"].as_str().unwrap();
    assert!(
        image.ends_with(&format!(":{version}")),
        "{image} vs {version}"
    );

    let secrets = documents("secrets.example.yaml");
    let runtime = app["spec"]["runtimeConfig"]["loadFromSecret"]
        .as_str()
        .unwrap();
    assert!(kind(&secrets, "Secret", runtime)["stringData"]["runtime-config.toml"].is_string());

    let declared = manifest_variables("spin-wasip2.toml");
    assert_eq!(declared, manifest_variables("spin.toml"));
    let mut named = BTreeSet::new();
    for var in app["spec"]["variables"].as_sequence().unwrap() {
        let name = var["name"].as_str().unwrap().to_string();
        let (_, secret) = *declared
            .get(&name)
            .unwrap_or_else(|| panic!("{name} is no variable of the manifests"));
        let from = &var["valueFrom"]["secretKeyRef"];
        if secret {
            assert!(var.get("value").is_none(), "{name} must come from a Secret");
            let store = kind(&secrets, "Secret", from["name"].as_str().unwrap());
            let key = from["key"].as_str().unwrap();
            assert!(store["stringData"][key].is_string(), "{name}: no key {key}");
        } else {
            assert!(var["value"].is_string(), "{name} has a value");
        }
        named.insert(name);
    }
    for (name, (required, secret)) in &declared {
        if *required || *secret {
            assert!(named.contains(name), "the SpinApp must name {name}");
        }
    }
    for name in [
        "redis_address",
        "database_address",
        "database_name",
        "database_user",
    ] {
        assert!(named.contains(name), "the SpinApp must name {name}");
    }
}

#[test]
fn the_redis_never_evicts_and_is_the_one_the_spinapp_uses() {
    let redis = documents("redis.yaml");
    let deployment = kind(&redis, "Deployment", "alchemix-edge-redis");
    let args: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let policy = args
        .iter()
        .position(|a| *a == "--maxmemory-policy")
        .unwrap();
    assert_eq!(args[policy + 1], "noeviction");
    let service = kind(&redis, "Service", "alchemix-edge-redis");
    let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
    let app = &documents("spinapp.yaml")[0];
    let address = app["spec"]["variables"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "redis_address")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(address, format!("redis://alchemix-edge-redis:{port}"));
}
