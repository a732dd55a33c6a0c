//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the regression test that
//! replays their kept corpus in the normal test run. Each must return for any input.

use crate::config::{Config, RoutePattern};
use crate::http::{json_object, Request};
use crate::identity::{self, Cidr};
use crate::policy::{parse_duration_ms, Policy};
use crate::routes::resources::{self, Resource};
use crate::token::{self, Keys};
use crate::validate;

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret!";

/// Authorization headers and tokens: bearer parsing, verification, digests.
pub fn jwt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let keys = Keys::new(SECRET);
    if let Ok(raw) = token::bearer(Some(&text)) {
        let _ = keys.verify(raw, 1_800_000_000);
        let _ = token::digest(raw);
    }
    let _ = keys.verify(&text, 1_800_000_000);
}

/// Peer addresses, forwarded-for chains and CIDR lists.
pub fn identity(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let peer = lines.next().unwrap_or_default();
    let forwarded = lines.next();
    let trusted: Vec<Cidr> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .filter_map(Cidr::parse)
        .chain(Cidr::parse("127.0.0.0/8"))
        .collect();
    let prefix = data.first().copied().unwrap_or(64) % 129;
    if let Some(ip) = identity::parse_peer(peer) {
        let client = identity::client_ip(ip, forwarded, &trusted);
        let _ = identity::subject(client, prefix.max(1));
    }
}

/// Rate-limit policies, durations, route patterns and whole configurations.
pub fn policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = Policy::parse("fuzz", &text);
    let _ = parse_duration_ms(&text);
    let _ = RoutePattern::parse(&text);
    let values: Vec<&str> = text.split('\n').collect();
    let _ = Config::load(&|name| {
        let i = crate::config::VARIABLES
            .iter()
            .position(|(n, _)| *n == name)?;
        values.get(i).copied()
    });
}

/// Request bodies and query strings as the API reads them.
pub fn body(data: &[u8]) {
    let req = Request {
        method: "GET".into(),
        path: "/api/inventory".into(),
        query: String::from_utf8_lossy(data).into_owned(),
        headers: Vec::new(),
        body: data.to_vec(),
    };
    let _ = resources::page(&req);
    let _ = crate::guard::account_key(&req);
    if let Some(body) = json_object(data) {
        for resource in [
            Resource::Inventory,
            Resource::Recipes,
            Resource::Favorites,
            Resource::Collections,
        ] {
            let _ = validate::check_body(resources::fields(resource), &body, true);
            let _ = validate::check_body(resources::fields(resource), &body, false);
        }
    }
    let _ = validate::id(&req.query);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Replays every input the fuzzers kept (corpus and fixed crashes) through its target.
    #[test]
    fn kept_fuzz_inputs_still_pass() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 4] = [
            ("jwt", super::jwt),
            ("identity", super::identity),
            ("policy", super::policy),
            ("body", super::body),
        ];
        let mut replayed = 0;
        for (name, target) in targets {
            for dir in ["corpus", "regressions"] {
                let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                    continue;
                };
                for entry in entries.flatten() {
                    target(&std::fs::read(entry.path()).unwrap());
                    replayed += 1;
                }
            }
        }
        assert!(replayed > 0, "no kept fuzz inputs under {}", root.display());
    }
}
