//! Who is on the other end of a request: the socket peer, or — when the peer is one of the
//! configured trusted reverse proxies (`server.trusted_proxies`) — the client its
//! `X-Forwarded-For` names. The header is ignored from everyone else, so a client cannot choose
//! the address it is throttled, audited and allow-listed by.

use crate::state::AppState;
use actix_web::{web, HttpRequest};
use shared::netfilter::AllowList;
use std::net::{IpAddr, Ipv6Addr};

/// The client address of `req` (see the module documentation).
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip().to_canonical());
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return peer;
    };
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    resolve(peer, &forwarded.join(","), &state.trusted_proxies)
}

/// The client behind `peer` given the `X-Forwarded-For` value: walking the header from the
/// right (the hop nearest to us), trusted proxies are skipped and the first other address is the
/// client. An entry that is not an address stops the walk at the last trusted hop, so a forged
/// entry can never become the client address.
pub fn resolve(peer: Option<IpAddr>, forwarded: &str, trusted: &AllowList) -> Option<IpAddr> {
    let mut client = peer?;
    if !trusted.allows(client) {
        return Some(client);
    }
    for hop in forwarded
        .rsplit(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        client = ip;
        if !trusted.allows(ip) {
            break;
        }
    }
    Some(client)
}

/// An `X-Forwarded-For` entry: an address, optionally with a port (`[v6]:port`, `v4:port`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    None
}

/// The unit a source is throttled by: an IPv4 address, or the /64 network of an IPv6 address
/// (one subscriber usually holds a whole /64, so single addresses would be free to rotate).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let proxies = AllowList::from_entries(&["10.0.0.0/8".into()]).unwrap();
        // From a proxy: the client it names.
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), "198.51.100.7", &proxies),
            Some(ip("198.51.100.7"))
        );
        // From anyone else: the header is ignored.
        assert_eq!(
            resolve(Some(ip("203.0.113.5")), "198.51.100.7", &proxies),
            Some(ip("203.0.113.5"))
        );
        // A client prepending its own entry does not get it used: the nearest untrusted hop wins.
        assert_eq!(
            resolve(
                Some(ip("10.1.1.1")),
                "127.0.0.1, 198.51.100.7, 10.2.2.2",
                &proxies
            ),
            Some(ip("198.51.100.7"))
        );
        // A forged, unparseable entry stops at the last trusted hop.
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), "evil, 10.2.2.2", &proxies),
            Some(ip("10.2.2.2"))
        );
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), "[2001:db8::1]:4711", &proxies),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), "", &proxies),
            Some(ip("10.1.1.1"))
        );
    }

    #[test]
    fn ipv6_sources_group_by_64() {
        assert_eq!(source_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_key(ip("2001:db8:1:2:ffff::9")),
            source_key(ip("2001:db8:1:2::1"))
        );
        assert_ne!(
            source_key(ip("2001:db8:1:3::1")),
            source_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(source_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }
}
