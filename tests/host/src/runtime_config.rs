//! `runtime-config.toml`, with Spin's keys. Unknown keys are rejected as Spin does, and the
//! keys Spin knows but this host does not implement are refused by name rather than ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    pub state_dir: Option<String>,
    pub log_dir: Option<String>,
    #[serde(default)]
    pub sqlite_database: BTreeMap<String, SqliteDecl>,
    #[serde(default)]
    pub variables_provider: Vec<VariablesProvider>,
    pub outbound_redis: Option<OutboundRedis>,
    pub key_value_store: Option<toml::Table>,
    pub outbound_networking: Option<toml::Table>,
    pub client_tls: Option<Vec<toml::Table>>,
    /// Where the file was read from: relative paths inside it are relative to its folder.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SqliteDecl {
    Spin { path: Option<String> },
    Libsql { url: String, token: String },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VariablesProvider {
    Static {
        values: BTreeMap<String, String>,
    },
    #[serde(other)]
    Unsupported,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundRedis {
    pub max_connections: Option<usize>,
}

impl RuntimeConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read runtime config {}", path.display()))?;
        let mut config: RuntimeConfig = toml::from_str(&text)
            .with_context(|| format!("invalid runtime config {}", path.display()))?;
        config.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        if config.key_value_store.is_some() {
            bail!(
                "[key_value_store] is not implemented by edge-host (the component does not use it)"
            );
        }
        if config
            .variables_provider
            .iter()
            .any(|p| matches!(p, VariablesProvider::Unsupported))
        {
            bail!("edge-host supports only `type = \"static\"` variables providers");
        }
        Ok(config)
    }

    pub fn resolve(&self, path: &str) -> PathBuf {
        self.base_dir.join(path)
    }
}
