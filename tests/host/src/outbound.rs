//! `allowed_outbound_hosts` rules, as Spin applies them to Redis addresses.

use anyhow::{bail, Result};

/// A component's rules once their templates are resolved. Spin parses them only when the
/// component first connects out, so an entry that does not parse (an empty template value
/// included) fails every outbound connection, never startup: an app that does not connect
/// out is unaffected.
#[derive(Debug, Clone)]
pub enum AllowedHosts {
    Rules(Vec<AllowedHost>),
    Invalid(String),
}

impl AllowedHosts {
    pub fn parse(entries: &[String]) -> Self {
        let mut rules = Vec::with_capacity(entries.len());
        for entry in entries {
            match AllowedHost::parse(entry) {
                Ok(rule) => rules.push(rule),
                Err(e) => {
                    return Self::Invalid(format!(
                        "allowed_outbound_hosts entry {:?}: {e}",
                        redact(entry)
                    ))
                }
            }
        }
        Self::Rules(rules)
    }

    /// `Err` carries the reason the rules do not parse.
    pub fn allows(&self, address: &str) -> Result<bool, String> {
        match self {
            Self::Rules(rules) => Ok(rules.iter().any(|r| r.allows(address))),
            Self::Invalid(problem) => Err(problem.clone()),
        }
    }
}

/// An address as it may be shown: scheme and host, without credentials or path.
pub fn redact(address: &str) -> String {
    let (scheme, rest) = address.split_once("://").unwrap_or(("", address));
    let host = bare_authority(rest);
    if scheme.is_empty() {
        host.to_string()
    } else {
        format!("{scheme}://{host}")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AllowedHost {
    scheme: String,
    host: String,
    port: Option<String>,
}

impl AllowedHost {
    pub fn parse(rule: &str) -> Result<Self> {
        let Some((scheme, rest)) = rule.split_once("://") else {
            bail!("needs a scheme, like redis://host:port");
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            bail!("must be scheme://host[:port]");
        }
        let (host, port) = split_host_port(authority);
        if port.is_none() && default_port(scheme).is_none() {
            bail!("no port was provided and the scheme {scheme:?} has no known default port");
        }
        Ok(Self {
            scheme: scheme.to_string(),
            host: host.to_string(),
            port: port.map(str::to_string),
        })
    }

    pub fn allows(&self, address: &str) -> bool {
        let Some((scheme, rest)) = address.split_once("://") else {
            return false;
        };
        let (host, port) = split_host_port(bare_authority(rest));
        let port = port.or_else(|| default_port(scheme));
        let rule_port = self.port.as_deref().or_else(|| default_port(&self.scheme));
        (self.scheme == "*" || self.scheme == scheme)
            && (self.host == "*" || self.host.eq_ignore_ascii_case(host))
            && (rule_port == Some("*") || rule_port == port)
    }
}

/// `host[:port]` of what follows `scheme://`: no credentials, no path.
fn bare_authority(rest: &str) -> &str {
    let authority = rest.split('/').next().unwrap_or_default();
    authority.rsplit('@').next().unwrap_or_default()
}

fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            return (host, tail.strip_prefix(':'));
        }
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

/// Spin's list: a TLS scheme like `rediss` has no default, so its port must be written out.
fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme {
        "redis" => Some("6379"),
        "postgres" => Some("5432"),
        "mysql" => Some("3306"),
        "mqtt" => Some("1883"),
        "http" => Some("80"),
        "https" => Some("443"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let r = AllowedHost::parse("redis://127.0.0.1:6379").unwrap();
        assert!(r.allows("redis://127.0.0.1:6379"));
        assert!(r.allows("redis://127.0.0.1"));
        assert!(r.allows("redis://user:pw@127.0.0.1:6379/0"));
        assert!(!r.allows("redis://127.0.0.1:6380"));
        assert!(!r.allows("rediss://127.0.0.1:6379"));
        let any = AllowedHost::parse("redis://*:*").unwrap();
        assert!(any.allows("redis://10.0.0.1:7000"));
        let v6 = AllowedHost::parse("redis://[::1]:6379").unwrap();
        assert!(v6.allows("redis://[::1]:6379"));
        assert!(AllowedHost::parse("127.0.0.1:6379").is_err());
    }

    #[test]
    fn rediss_has_no_default_port() {
        let problem = AllowedHost::parse("rediss://cache.example.com").unwrap_err();
        assert!(
            problem.to_string().contains("no known default port"),
            "{problem}"
        );
        let r = AllowedHost::parse("rediss://cache.example.com:6380").unwrap();
        assert!(r.allows("rediss://cache.example.com:6380"));
        assert!(!r.allows("rediss://cache.example.com"));
        assert!(!r.allows("redis://cache.example.com:6380"));
    }

    #[test]
    fn a_bad_entry_fails_every_check_without_showing_credentials() {
        let hosts = AllowedHosts::parse(&["redis://h:6379".into(), "".into()]);
        let problem = hosts.allows("redis://h:6379").unwrap_err();
        assert!(problem.contains("needs a scheme"), "{problem}");
        let hosts = AllowedHosts::parse(&["redis://:hunter2@h:6379/0".into()]);
        let problem = hosts.allows("redis://h:6379").unwrap_err();
        assert!(!problem.contains("hunter2"), "{problem}");
        assert_eq!(redact("user:pw@h:1"), "h:1");
        let ok = AllowedHosts::parse(&["redis://h:6379".into()]);
        assert_eq!(ok.allows("redis://:pw@h:6379"), Ok(true));
        assert_eq!(ok.allows("redis://other:6379"), Ok(false));
    }
}
