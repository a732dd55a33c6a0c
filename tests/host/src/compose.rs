//! HTTP middleware chains, composed at load time the way Spin 4.1 composes them: each
//! middleware's `wasi:http/handler@0.3.0` import is wired to the export of the one after it, the
//! last being the trigger's component, and the outermost export is the composed component's.
//!
//! A middleware inherits none of the component's configuration unless its entry says so
//! (`inherit_configuration`); Spin then links its calls of the interfaces it was not given to
//! a deny adapter, so they fail. edge-host refuses to load such a chain instead: stricter than
//! Spin, never kinder.

use anyhow::{bail, Context, Result};
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};

pub const HANDLER: &str = "wasi:http/handler@0.3.0";

/// What a middleware may use of the component it fronts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inherit {
    All,
    /// The named sets only (`variables`, `allowed_outbound_hosts`, ...); empty: none.
    Sets(Vec<String>),
}

impl Inherit {
    fn allows(&self, set: &str) -> bool {
        match self {
            Inherit::All => true,
            Inherit::Sets(sets) => sets.iter().any(|s| s == set),
        }
    }
}

pub struct Middleware {
    /// The manifest's name for it (a component id or a path), for errors.
    pub name: String,
    pub bytes: Vec<u8>,
    pub inherit: Inherit,
}

/// The configuration sets a dependency can inherit, each with the interfaces (by package and
/// name, any version) Spin denies a dependency that does not inherit it. Spin's `environment`
/// and `files` sets are left out: denied, they answer an empty environment and no preopened
/// directory, which is all edge-host gives any component.
const CAPABILITY_SETS: &[(&str, &[&str])] = &[
    ("ai_models", &["fermyon:spin/llm"]),
    (
        "allowed_outbound_hosts",
        &[
            "fermyon:spin/http",
            "fermyon:spin/mysql",
            "fermyon:spin/postgres",
            "fermyon:spin/redis",
            "fermyon:spin/mqtt",
            "spin:mqtt/mqtt",
            "spin:mysql/mysql",
            "spin:postgres/postgres",
            "spin:redis/redis",
            "wasi:http/client",
            "wasi:http/outgoing-handler",
            "wasi:sockets/",
        ],
    ),
    (
        "key_value_stores",
        &[
            "fermyon:spin/key-value",
            "spin:key-value/key-value",
            "wasi:keyvalue/store",
        ],
    ),
    (
        "sqlite_databases",
        &["fermyon:spin/sqlite", "spin:sqlite/sqlite"],
    ),
    (
        "variables",
        &[
            "fermyon:spin/config",
            "fermyon:spin/variables",
            "spin:variables/variables",
            "wasi:config/store",
        ],
    ),
];

/// The configuration set an import belongs to, if Spin gates it.
fn capability_set(import: &str) -> Option<&'static str> {
    let unversioned = import.split('@').next().unwrap_or(import);
    CAPABILITY_SETS
        .iter()
        .find(|(_, names)| {
            names.iter().any(|n| {
                if n.ends_with('/') {
                    unversioned.starts_with(n)
                } else {
                    unversioned == *n
                }
            })
        })
        .map(|(set, _)| *set)
}

/// The trigger's component behind its middleware, outermost first.
pub fn compose(primary: Vec<u8>, chain: &[Middleware]) -> Result<Vec<u8>> {
    if chain.is_empty() {
        return Ok(primary);
    }
    let mut graph = CompositionGraph::new();
    let mut packages = Vec::with_capacity(chain.len() + 1);
    for (index, middleware) in chain.iter().enumerate() {
        let package = Package::from_bytes(
            &format!("middleware{index}"),
            None,
            middleware.bytes.clone(),
            graph.types_mut(),
        )
        .with_context(|| format!("middleware {} is not a component", middleware.name))?;
        let world = &graph.types()[package.ty()];
        if !world.imports.contains_key(HANDLER) || !world.exports.contains_key(HANDLER) {
            bail!(
                "middleware {} must import and export {HANDLER} (a spin-sdk 7 component with \
                 the http-middleware feature)",
                middleware.name
            );
        }
        for import in world.imports.keys() {
            if let Some(set) = capability_set(import) {
                if !middleware.inherit.allows(set) {
                    bail!(
                        "middleware {} imports {import}, which needs the component's {set}: \
                         Spin would deny it; add `inherit_configuration = true` (or [\"{set}\"]) \
                         to its entry",
                        middleware.name
                    );
                }
            }
        }
        packages.push(graph.register_package(package)?);
    }
    let package = Package::from_bytes("primary", None, primary, graph.types_mut())
        .context("the trigger's component is not a component")?;
    if !graph.types()[package.ty()].exports.contains_key(HANDLER) {
        bail!("a component behind middleware must export {HANDLER} (a WASI 0.3 component)");
    }
    packages.push(graph.register_package(package)?);

    let mut outer = packages.iter().rev();
    let innermost = graph.instantiate(*outer.next().context("no component")?);
    let mut handler = graph.alias_instance_export(innermost, HANDLER)?;
    for package in outer {
        let instance = graph.instantiate(*package);
        graph.set_instantiation_argument(instance, HANDLER, handler)?;
        handler = graph.alias_instance_export(instance, HANDLER)?;
    }
    graph.export(handler, HANDLER)?;
    Ok(graph.encode(EncodeOptions::default())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_fall_in_the_sets_spin_gates() {
        assert_eq!(
            capability_set("spin:redis/redis@3.0.0"),
            Some("allowed_outbound_hosts")
        );
        assert_eq!(
            capability_set("wasi:sockets/tcp@0.3.0"),
            Some("allowed_outbound_hosts")
        );
        assert_eq!(
            capability_set("spin:variables/variables@3.0.0"),
            Some("variables")
        );
        assert_eq!(
            capability_set("spin:sqlite/sqlite@3.1.0"),
            Some("sqlite_databases")
        );
        assert_eq!(capability_set("wasi:clocks/monotonic-clock@0.3.0"), None);
        assert_eq!(capability_set(HANDLER), None);
        assert!(Inherit::All.allows("variables"));
        assert!(!Inherit::Sets(Vec::new()).allows("variables"));
        assert!(Inherit::Sets(vec!["variables".into()]).allows("variables"));
    }
}
