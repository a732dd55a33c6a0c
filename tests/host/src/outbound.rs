//! `allowed_outbound_hosts` rules, as Spin applies them to Redis addresses.

use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct AllowedHost {
    scheme: String,
    host: String,
    port: Option<String>,
}

impl AllowedHost {
    pub fn parse(rule: &str) -> Result<Self> {
        let Some((scheme, rest)) = rule.split_once("://") else {
            bail!("allowed_outbound_hosts entry {rule:?} needs a scheme, like redis://host:port");
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            bail!("allowed_outbound_hosts entry {rule:?} must be scheme://host[:port]");
        }
        let (host, port) = split_host_port(authority);
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
        let authority = rest.split('/').next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or_default();
        let (host, port) = split_host_port(authority);
        let port = port.or_else(|| default_port(scheme));
        let rule_port = self.port.as_deref().or_else(|| default_port(&self.scheme));
        (self.scheme == "*" || self.scheme == scheme)
            && (self.host == "*" || self.host.eq_ignore_ascii_case(host))
            && (rule_port == Some("*") || rule_port == port)
    }
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

fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme {
        "redis" | "rediss" => Some("6379"),
        _ => None,
    }
}

pub fn any_allows(rules: &[AllowedHost], address: &str) -> bool {
    rules.iter().any(|r| r.allows(address))
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
}
