//! Source-address allow-lists: single addresses and CIDR ranges, IPv4 and IPv6, deny by default.
//! The agent checks one on every TCP connection before TLS; the manager on every request once an
//! Admin enables its list.

use std::net::IpAddr;

/// Parses one allow-list entry: an IP address or `address/prefix`.
pub fn parse_allow_entry(entry: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (addr, prefix) = match entry.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (entry, None),
    };
    let ip: std::net::IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| format!("`{entry}` is not an IP address or CIDR range"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("`{entry}` has an invalid prefix length (0 .. {max})"))?,
        None => max,
    };
    Ok((ip, prefix))
}

/// Addresses and CIDR ranges allowed to connect. Empty means nobody (deny by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    nets: Vec<(IpAddr, u8)>,
}

impl AllowList {
    /// Builds the list from configuration entries (already validated by the config loader).
    pub fn from_entries(entries: &[String]) -> Result<Self, String> {
        let nets = entries
            .iter()
            .map(|e| parse_allow_entry(e))
            .collect::<Result<_, _>>()?;
        Ok(Self { nets })
    }

    /// Whether `ip` may connect. IPv4-mapped IPv6 peers are matched as IPv4.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets
            .iter()
            .any(|(net, prefix)| contains(*net, *prefix, ip))
    }
}

fn contains(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(e: &[&str]) -> AllowList {
        AllowList::from_entries(&e.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn deny_by_default() {
        assert!(!AllowList::default().allows("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn hosts_and_ranges() {
        let l = list(&["127.0.0.1", "10.20.0.0/16", "2001:db8::/32"]);
        assert!(l.allows("127.0.0.1".parse().unwrap()));
        assert!(!l.allows("127.0.0.2".parse().unwrap()));
        assert!(l.allows("10.20.255.1".parse().unwrap()));
        assert!(!l.allows("10.21.0.1".parse().unwrap()));
        assert!(l.allows("2001:db8:1::5".parse().unwrap()));
        assert!(!l.allows("2001:db9::1".parse().unwrap()));
        assert!(
            l.allows("::ffff:127.0.0.1".parse().unwrap()),
            "v4-mapped v6 is matched as v4"
        );
        assert!(list(&["0.0.0.0/0"]).allows("192.0.2.1".parse().unwrap()));
        assert!(!list(&["0.0.0.0/0"]).allows("::1".parse().unwrap()));
    }
}
