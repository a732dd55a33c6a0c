//! The parts of a Spin manifest (v2) that the host acts on.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub spin_manifest_version: u32,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    pub trigger: Triggers,
    pub component: BTreeMap<String, ComponentDecl>,
}

#[derive(Debug, Deserialize)]
pub struct Application {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
}

#[derive(Debug, Deserialize)]
pub struct HttpTrigger {
    pub route: String,
    pub component: String,
    /// Spin 4.1 allows one kind, `middleware`: the chain in front of the component.
    #[serde(default)]
    pub dependencies: BTreeMap<String, Vec<MiddlewareDecl>>,
}

/// One entry of `dependencies.middleware`, outermost first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiddlewareDecl {
    /// A component of the application (built with it, its own settings ignored)...
    pub component: Option<String>,
    /// ...or a Wasm file, relative to the manifest.
    pub path: Option<String>,
    #[serde(default)]
    pub inherit_configuration: Option<InheritDecl>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum InheritDecl {
    All(bool),
    Sets(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct ComponentDecl {
    pub source: String,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub sqlite_databases: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    pub build: Option<BuildDecl>,
}

#[derive(Debug, Deserialize)]
pub struct BuildDecl {
    pub command: String,
    pub workdir: Option<String>,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        let manifest: Manifest = toml::from_str(&text)
            .with_context(|| format!("invalid manifest {}", path.display()))?;
        if manifest.spin_manifest_version != 2 {
            bail!("only spin_manifest_version = 2 is supported");
        }
        for name in manifest.variables.keys() {
            check_variable_name(name)?;
        }
        for (id, component) in &manifest.component {
            for key in component.variables.keys() {
                check_variable_name(key)
                    .with_context(|| format!("component {id} declares a bad variable"))?;
            }
        }
        Ok(manifest)
    }

    /// The single component served over HTTP, with the routes it answers.
    pub fn http_component(&self) -> Result<(&str, &ComponentDecl, Vec<&str>)> {
        let Some(first) = self.trigger.http.first() else {
            bail!("the manifest has no [[trigger.http]]");
        };
        if self
            .trigger
            .http
            .iter()
            .any(|t| t.component != first.component)
        {
            bail!("edge-host serves one component; the manifest routes to several");
        }
        let component = self
            .component
            .get(&first.component)
            .with_context(|| format!("trigger names unknown component {}", first.component))?;
        let routes = self.trigger.http.iter().map(|t| t.route.as_str()).collect();
        Ok((first.component.as_str(), component, routes))
    }

    /// The middleware in front of the served component, outermost first: the same on every
    /// trigger, since edge-host serves one chain.
    pub fn middleware(&self) -> Result<&[MiddlewareDecl]> {
        let mut chains = self.trigger.http.iter().map(|t| {
            if let Some(kind) = t.dependencies.keys().find(|k| *k != "middleware") {
                bail!("the HTTP trigger's only allowed trigger dependency is `middleware`, not {kind:?}");
            }
            Ok(t.dependencies.get("middleware").map_or(&[][..], Vec::as_slice))
        });
        let first = chains.next().transpose()?.unwrap_or(&[]);
        for chain in chains {
            if chain? != first {
                bail!("edge-host serves one chain; the triggers name different middleware");
            }
        }
        for entry in first {
            if entry.component.is_some() == entry.path.is_some() {
                bail!("a middleware entry names either `component` or `path`");
            }
        }
        Ok(first)
    }
}

/// Spin variable names: lower-case ASCII letters, digits and underscores, starting with a letter.
pub fn check_variable_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        bail!("invalid variable name {name:?}: use lower-case letters, digits and '_'");
    }
    Ok(())
}

/// Whether a trigger route (`/...` wildcard or an exact path) matches a request path.
pub fn route_matches(route: &str, path: &str) -> bool {
    match route.strip_suffix("/...") {
        Some(prefix) => {
            prefix.is_empty()
                || path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        }
        None => path == route,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_and_exact_routes() {
        assert!(route_matches("/...", "/anything/here"));
        assert!(route_matches("/api/...", "/api"));
        assert!(route_matches("/api/...", "/api/inventory"));
        assert!(!route_matches("/api/...", "/apix"));
        assert!(route_matches("/health", "/health"));
        assert!(!route_matches("/health", "/health/x"));
    }

    #[test]
    fn variable_names() {
        assert!(check_variable_name("jwt_secret").is_ok());
        assert!(check_variable_name("JWT").is_err());
        assert!(check_variable_name("1a").is_err());
        assert!(check_variable_name("").is_err());
    }
}
