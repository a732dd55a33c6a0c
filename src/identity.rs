//! Who the client is: the TCP peer Spin reports in `spin-client-addr`, or, behind proxies the
//! operator trusts, the right-most `X-Forwarded-For` hop that is not one of them.

use std::net::{IpAddr, Ipv6Addr};

use crate::config::Config;
use crate::http::Request;

/// An address block such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = text.trim().parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

/// IPv4-mapped IPv6 addresses are IPv4 clients.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses `1.2.3.4:5678`, `[::1]:5678` or a bare address.
pub fn parse_peer(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(sock) = text.parse::<std::net::SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
        .map(canonical)
}

/// The client's address, walking `X-Forwarded-For` right to left only past trusted hops.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for hop in forwarded_for.unwrap_or_default().rsplit(',') {
        match parse_peer(hop) {
            Some(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            // A hop we cannot read ends the chain: everything left of it is unverifiable.
            None => break,
        }
    }
    client
}

/// The rate-limit subject for an address: IPv6 clients are grouped by their `/prefix` network,
/// since one host usually holds a whole /64.
pub fn subject(ip: IpAddr, ipv6_prefix: u8) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let prefix = u32::from(ipv6_prefix.min(128));
            let masked = if prefix == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - prefix))
            };
            format!("{}/{}", Ipv6Addr::from(masked), prefix)
        }
    }
}

/// The client a request comes from as the limits name it: its address (past the trusted
/// proxies), IPv6 grouped by the configured subnet.
pub fn client_subject(req: &Request, config: &Config) -> String {
    let peer = req.header("spin-client-addr").and_then(parse_peer);
    match peer {
        Some(peer) => {
            let ip = client_ip(peer, req.header("x-forwarded-for"), &config.trusted_proxies);
            subject(ip, config.ipv6_subnet)
        }
        // Spin always sets the header; without it every such client shares one budget.
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.1.2.3")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")));
        let c = Cidr::parse("fd00::/8").unwrap();
        assert!(c.contains(ip("fd12::1")));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
        assert_eq!(Cidr::parse("127.0.0.1").unwrap().prefix, 32);
    }

    #[test]
    fn untrusted_peer_ignores_forwarded_for() {
        let client = client_ip(ip("203.0.113.9"), Some("1.2.3.4"), &[]);
        assert_eq!(client, ip("203.0.113.9"));
    }

    #[test]
    fn trusted_hops_are_skipped_right_to_left() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let xff = "6.6.6.6, 198.51.100.7, 10.0.0.2";
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some(xff), &trusted),
            ip("198.51.100.7")
        );
        // Only trusted hops: the left-most is the best we know.
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("10.0.0.3"), &trusted),
            ip("10.0.0.3")
        );
        // No header: the proxy itself.
        assert_eq!(client_ip(ip("10.0.0.1"), None, &trusted), ip("10.0.0.1"));
        // Garbage stops the walk at the last good hop.
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("x, 10.0.0.5"), &trusted),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn peers_and_subjects() {
        assert_eq!(parse_peer("127.0.0.1:5000"), Some(ip("127.0.0.1")));
        assert_eq!(parse_peer("[::1]:5000"), Some(ip("::1")));
        assert_eq!(parse_peer("[::ffff:1.2.3.4]:1"), Some(ip("1.2.3.4")));
        assert_eq!(parse_peer("junk"), None);
        assert_eq!(subject(ip("1.2.3.4"), 64), "1.2.3.4");
        assert_eq!(subject(ip("2001:db8:1:2:aaaa::1"), 64), "2001:db8:1:2::/64");
        assert_eq!(
            subject(ip("2001:db8:1:2:aaaa::1"), 128),
            "2001:db8:1:2:aaaa::1/128"
        );
    }
}
