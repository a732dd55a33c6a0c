//! Spin's variables: application variables with defaults, `required` and `secret`, providers
//! (runtime-config static values, then `SPIN_VARIABLE_<NAME>`), and component templates.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};

use crate::manifest::VariableDecl;
use crate::runtime_config::{RuntimeConfig, VariablesProvider};

/// Resolved application variables.
pub struct Resolver {
    values: HashMap<String, String>,
}

impl Resolver {
    /// Resolves every application variable now, so that a required one without a value stops
    /// the host at startup, as Spin does.
    pub fn new(
        decls: &BTreeMap<String, VariableDecl>,
        runtime: &RuntimeConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let mut values = HashMap::new();
        let mut missing = Vec::new();
        for (name, decl) in decls {
            let provided = runtime
                .variables_provider
                .iter()
                .find_map(|p| match p {
                    VariablesProvider::Static { values } => values.get(name).cloned(),
                    VariablesProvider::Unsupported => None,
                })
                .or_else(|| env(&format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())));
            match provided.or_else(|| decl.default.clone()) {
                Some(value) => {
                    values.insert(name.clone(), value);
                }
                None if decl.required => missing.push(name.as_str()),
                None => {}
            }
        }
        if !missing.is_empty() {
            let hint: Vec<String> = missing
                .iter()
                .map(|n| format!("SPIN_VARIABLE_{}", n.to_ascii_uppercase()))
                .collect();
            bail!(
                "required variable(s) {} have no value: set {}",
                missing.join(", "),
                hint.join(", ")
            );
        }
        Ok(Self { values })
    }

    /// Expands `{{ name }}` references in a template.
    pub fn expand(&self, template: &str) -> Result<String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .with_context(|| format!("unclosed '{{{{' in template {template:?}"))?;
            let name = after[..end].trim();
            let value = self
                .values
                .get(name)
                .with_context(|| format!("template {template:?} names unknown variable {name}"))?;
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(default: Option<&str>, required: bool) -> VariableDecl {
        VariableDecl {
            default: default.map(str::to_string),
            required,
            secret: false,
            description: None,
        }
    }

    #[test]
    fn env_overrides_default_and_templates_expand() {
        let mut decls = BTreeMap::new();
        decls.insert("redis_address".into(), decl(Some("redis://a:1"), false));
        decls.insert("jwt_secret".into(), decl(None, true));
        let env = |k: &str| (k == "SPIN_VARIABLE_JWT_SECRET").then(|| "s3cret".to_string());
        let r = Resolver::new(&decls, &RuntimeConfig::default(), &env).unwrap();
        assert_eq!(r.expand("{{ jwt_secret }}").unwrap(), "s3cret");
        assert_eq!(r.expand("x{{redis_address}}y").unwrap(), "xredis://a:1y");
        assert!(r.expand("{{ nope }}").is_err());
    }

    #[test]
    fn missing_required_fails_with_env_name() {
        let mut decls = BTreeMap::new();
        decls.insert("jwt_secret".into(), decl(None, true));
        let err = Resolver::new(&decls, &RuntimeConfig::default(), &|_| None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("SPIN_VARIABLE_JWT_SECRET"), "{err}");
    }
}
