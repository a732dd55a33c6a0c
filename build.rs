//! Converts `openapi.yaml` to the JSON the component serves at `/openapi.json`, so the YAML file
//! stays the one description of the API.

fn main() {
    println!("cargo:rerun-if-changed=openapi.yaml");
    let yaml = std::fs::read_to_string("openapi.yaml").expect("openapi.yaml at the project root");
    let doc: serde_json::Value = serde_yaml::from_str(&yaml).expect("openapi.yaml is valid YAML");
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("openapi.json");
    std::fs::write(out, serde_json::to_string(&doc).unwrap()).unwrap();
}
