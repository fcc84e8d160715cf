//! The address rule for outbound connections: which addresses are internal (private,
//! loopback, link-local, shared, unique-local …) and which egress rule allows a destination.
//!
//! It lives here, in the lowest crate that knows the `egress` rules, because every place that
//! connects somewhere a config file did not name applies the same rule: a sandboxed server's
//! egress proxy (`gatehouse-runtime`), and URLs learned at run time (registry entries,
//! tenant-admin objects, metadata fetched from a remote server). Pure functions only: nothing
//! here resolves a name or opens a socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::isolation::EgressRule;

/// The internal range `ip` falls in, named for log lines and errors; `None` for a public
/// address. An address in one of these ranges is refused as a destination unless an allow-list
/// names the range, since reaching it from outside is what SSRF and DNS rebinding are after.
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [0, ..] => "this-network (0.0.0.0/8)",
        [10, ..] => "private (10.0.0.0/8)",
        [100, b, ..] if (64..128).contains(&b) => "shared address space (100.64.0.0/10)",
        [127, ..] => "loopback (127.0.0.0/8)",
        [169, 254, ..] => "link-local (169.254.0.0/16, cloud metadata)",
        [172, b, ..] if (16..32).contains(&b) => "private (172.16.0.0/12)",
        [192, 0, 0, _] => "IETF protocol assignments (192.0.0.0/24)",
        [192, 168, ..] => "private (192.168.0.0/16)",
        [198, 18 | 19, ..] => "benchmarking (198.18.0.0/15)",
        [a, ..] if (224..240).contains(&a) => "multicast (224.0.0.0/4)",
        [a, ..] if a >= 240 => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address carried in IPv6 (mapped, NAT64, 6to4) is judged as the IPv4 address:
    // otherwise `::ffff:127.0.0.1` would pass as public.
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_unspecified() => "unspecified (::)",
        _ if ip.is_loopback() => "loopback (::1)",
        x if x & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        x if x & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        x if x & 0xfe00 == 0xfc00 => "unique-local (fc00::/7)",
        x if x & 0xff00 == 0xff00 => "multicast (ff00::/8)",
        _ => return None,
    })
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] => Some(tail()),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(tail()),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

impl EgressRule {
    /// Whether this rule is an address range that contains `ip` (any port).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let EgressRule::Net { addr, prefix, .. } = self else {
            return false;
        };
        let (ip, addr, bits) = match (ip, addr) {
            (IpAddr::V4(ip), IpAddr::V4(a)) => {
                (u128::from(u32::from(ip)), u128::from(u32::from(*a)), 32u32)
            }
            (IpAddr::V6(ip), IpAddr::V6(a)) => (u128::from(ip), u128::from(*a), 128),
            _ => return false,
        };
        let prefix = u32::from(*prefix);
        if prefix == 0 {
            return true;
        }
        let shift = bits - prefix;
        ip >> shift == addr >> shift
    }

    /// The rule's port.
    pub fn port(&self) -> u16 {
        match self {
            EgressRule::Host { port, .. } | EgressRule::Net { port, .. } => *port,
        }
    }
}

/// Why an address may not be connected to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is in the {range} range")]
pub struct AddressRefused {
    /// The refused address.
    pub ip: IpAddr,
    /// The internal range it is in.
    pub range: &'static str,
}

/// A server's `network.egress` list, parsed: what it may connect to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    rules: Vec<EgressRule>,
}

impl EgressPolicy {
    /// Parses every rule; the first invalid one is the error (validation reports all).
    pub fn parse(rules: &[String]) -> Result<EgressPolicy, String> {
        let rules = rules
            .iter()
            .map(|r| EgressRule::parse(r))
            .collect::<Result<_, _>>()?;
        Ok(EgressPolicy { rules })
    }

    /// No rule at all: no network.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in the order written.
    pub fn rules(&self) -> &[EgressRule] {
        &self.rules
    }

    /// The distinct host names the rules allow, in the order written.
    pub fn hosts(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.rules {
            if let EgressRule::Host { host, .. } = r
                && !out.contains(&host.as_str())
            {
                out.push(host);
            }
        }
        out
    }

    /// The distinct ports any rule allows (for Landlock's connect rule).
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.rules.iter().map(EgressRule::port).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Whether a `host:port` rule allows `host` (lower-case) on `port`.
    pub fn allows_name(&self, host: &str, port: u16) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r, EgressRule::Host { host: h, port: p } if h == host && *p == port))
    }

    /// Whether a range rule allows a connection to the raw address `ip:port`.
    pub fn allows_address(&self, ip: IpAddr, port: u16) -> bool {
        self.rules
            .iter()
            .any(|r| r.port() == port && r.contains(ip))
    }

    /// The address rule for an address a host name resolved to: public addresses pass; an
    /// internal one only when a range rule (on any port) names it — the operator wrote that
    /// range down, so a name pointing into it is intended.
    pub fn check_resolved(&self, ip: IpAddr) -> Result<(), AddressRefused> {
        match forbidden_range(ip) {
            Some(range) if !self.rules.iter().any(|r| r.contains(ip)) => {
                Err(AddressRefused { ip, range })
            }
            _ => Ok(()),
        }
    }
}

/// The address rule for a URL that did not come from the platform's own config file
/// (registry entries, tenant-admin objects, metadata learned at run time): an internal
/// address is refused. A URL written in the config file is the operator's choice and is
/// not checked with this.
pub fn check_fetched_address(ip: IpAddr) -> Result<(), AddressRefused> {
    EgressPolicy::default().check_resolved(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_named_and_public_addresses_pass() {
        for (addr, range) in [
            ("127.0.0.1", "loopback"),
            ("10.231.2.2", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.100.100.200", "shared"),
            ("0.0.0.0", "this-network"),
            ("198.18.0.1", "benchmarking"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd00:ec2::254", "unique-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
        ] {
            let got = forbidden_range(ip(addr));
            assert!(
                got.is_some_and(|g| g.starts_with(range)),
                "{addr}: {got:?}, expected {range}"
            );
        }
        for addr in [
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "203.0.113.9",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(forbidden_range(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn rules_allow_names_ports_and_ranges_and_a_named_range_lifts_the_address_rule() {
        let p = EgressPolicy::parse(&[
            "api.example.com:443".into(),
            "10.231.1.0/24:8080".into(),
            "[fd00::/8]:5432".into(),
        ])
        .unwrap();
        assert_eq!(p.hosts(), ["api.example.com"]);
        assert_eq!(p.ports(), [443, 5432, 8080]);
        assert!(p.allows_name("api.example.com", 443));
        assert!(!p.allows_name("api.example.com", 80));
        assert!(!p.allows_name("example.com", 443));
        assert!(p.allows_address(ip("10.231.1.77"), 8080));
        assert!(!p.allows_address(ip("10.231.1.77"), 8081));
        assert!(!p.allows_address(ip("10.231.2.2"), 8080));
        assert!(p.allows_address(ip("fd12::1"), 5432));
        assert!(!p.allows_address(ip("::ffff:10.231.1.2"), 5432));
        // A name resolving into a named range is fine, into another internal range not.
        assert_eq!(p.check_resolved(ip("10.231.1.2")), Ok(()));
        assert_eq!(p.check_resolved(ip("93.184.215.14")), Ok(()));
        let e = p.check_resolved(ip("10.231.2.2")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "10.231.2.2 is in the private (10.0.0.0/8) range"
        );
        assert!(p.check_resolved(ip("127.0.0.1")).is_err());
        assert!(check_fetched_address(ip("169.254.169.254")).is_err());
        assert!(check_fetched_address(ip("203.0.113.9")).is_ok());
    }

    #[test]
    fn prefix_edges_match_exactly() {
        let all = EgressRule::parse("0.0.0.0/0:443").unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        let one = EgressRule::parse("10.0.0.5:22").unwrap();
        assert!(one.contains(ip("10.0.0.5")) && !one.contains(ip("10.0.0.4")));
        let r = EgressRule::parse("172.16.0.0/12:1").unwrap();
        assert!(r.contains(ip("172.31.0.1")) && !r.contains(ip("172.32.0.1")));
    }
}
