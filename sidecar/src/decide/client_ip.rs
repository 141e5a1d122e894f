//! The client address that `ipRange` rules see: the connection's peer, or what trusted proxies
//! say in `X-Forwarded-For`.
//!
//! Owns the trust walk over `X-Forwarded-For` (api.md, "Selectors": it counts only from peers in
//! `--trusted-proxies`, none by default). It must not read configuration or the environment (the
//! trusted networks are an argument), allocate, or trust anything a client could have written.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;

/// `X-Forwarded-For` (a de-facto standard; RFC 7239 `Forwarded` is not read).
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The address policies treat as the client's.
///
/// With an untrusted peer (always, when `trusted_proxies` is empty) it is the peer: anyone can
/// write `X-Forwarded-For`. With a trusted peer the header is walked right to left, because each
/// proxy appends the address it received from: entries that are trusted proxies are skipped and
/// the first untrusted one is the client. An entry that is not an address stops the walk, and the
/// last trusted hop is used: everything left of garbage could have been written by anyone.
/// Several header lines are one list in order (RFC 9110 §5.3). IPv4-mapped IPv6 addresses
/// (`::ffff:10.0.0.1`, what a dual-stack socket reports) are compared and returned as IPv4.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !trusted(&client) {
        return client;
    }
    for line in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(line) = line.to_str() else { return client };
        for entry in line.rsplit(',') {
            let Some(ip) = parse_entry(entry) else { return client };
            client = ip.to_canonical();
            if !trusted(&client) {
                return client;
            }
        }
    }
    client
}

/// One list element: an address, optionally with a port (`203.0.113.7:4711`, `[2001:db8::1]:80`),
/// as some proxies write it. `unknown`, obfuscated identifiers and empty elements are garbage.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim_matches([' ', '\t']);
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn walks_only_trusted_chains() {
        struct Case {
            desc: &'static str,
            peer: &'static str,
            xff: &'static [&'static [u8]],
            trusted: &'static [&'static str],
            want: &'static str,
        }
        let cases = [
            Case {
                desc: "no proxies trusted: header ignored",
                peer: "198.51.100.1",
                xff: &[b"10.1.1.1"],
                trusted: &[],
                want: "198.51.100.1",
            },
            Case {
                desc: "untrusted peer: header ignored",
                peer: "198.51.100.1",
                xff: &[b"10.1.1.1"],
                trusted: &["10.0.0.0/8"],
                want: "198.51.100.1",
            },
            Case {
                desc: "trusted peer, no header",
                peer: "10.0.0.2",
                xff: &[],
                trusted: &["10.0.0.0/8"],
                want: "10.0.0.2",
            },
            Case {
                desc: "trusted peer, one hop",
                peer: "10.0.0.2",
                xff: &[b"203.0.113.7"],
                trusted: &["10.0.0.0/8"],
                want: "203.0.113.7",
            },
            Case {
                desc: "rightmost untrusted, spoofed left ignored",
                peer: "10.0.0.2",
                xff: &[b"1.2.3.4, 203.0.113.7, 10.0.0.9"],
                trusted: &["10.0.0.0/8"],
                want: "203.0.113.7",
            },
            Case {
                desc: "several header lines are one list",
                peer: "10.0.0.2",
                xff: &[b"1.2.3.4", b"203.0.113.7, 10.0.0.9"],
                trusted: &["10.0.0.0/8"],
                want: "203.0.113.7",
            },
            Case {
                desc: "all trusted: leftmost",
                peer: "10.0.0.2",
                xff: &[b"10.0.0.5, 10.0.0.9"],
                trusted: &["10.0.0.0/8"],
                want: "10.0.0.5",
            },
            Case {
                desc: "garbage stops at last trusted hop",
                peer: "10.0.0.2",
                xff: &[b"203.0.113.7, unknown, 10.0.0.9"],
                trusted: &["10.0.0.0/8"],
                want: "10.0.0.9",
            },
            Case {
                desc: "garbage right away: the peer",
                peer: "10.0.0.2",
                xff: &[b"203.0.113.7, nonsense"],
                trusted: &["10.0.0.0/8"],
                want: "10.0.0.2",
            },
            Case {
                desc: "empty element is garbage",
                peer: "10.0.0.2",
                xff: &[b"203.0.113.7,,10.0.0.9"],
                trusted: &["10.0.0.0/8"],
                want: "10.0.0.9",
            },
            Case {
                desc: "non-UTF-8 line is garbage",
                peer: "10.0.0.2",
                xff: &[b"203.0.113.7", b"\xff"],
                trusted: &["10.0.0.0/8"],
                want: "10.0.0.2",
            },
            Case {
                desc: "entry with port",
                peer: "10.0.0.2",
                xff: &[b"203.0.113.7:4711"],
                trusted: &["10.0.0.0/8"],
                want: "203.0.113.7",
            },
            Case {
                desc: "IPv6 entry with port",
                peer: "10.0.0.2",
                xff: &[b"[2001:db8::1]:80"],
                trusted: &["10.0.0.0/8"],
                want: "2001:db8::1",
            },
            Case {
                desc: "bracketed IPv6 entry",
                peer: "10.0.0.2",
                xff: &[b"[2001:db8::1]"],
                trusted: &["10.0.0.0/8"],
                want: "2001:db8::1",
            },
            Case {
                desc: "mapped peer is trusted as IPv4",
                peer: "::ffff:10.0.0.2",
                xff: &[b"203.0.113.7"],
                trusted: &["10.0.0.0/8"],
                want: "203.0.113.7",
            },
            Case {
                desc: "mapped peer returned as IPv4",
                peer: "::ffff:198.51.100.1",
                xff: &[],
                trusted: &[],
                want: "198.51.100.1",
            },
            Case {
                desc: "mapped entry returned as IPv4",
                peer: "10.0.0.2",
                xff: &[b"::ffff:203.0.113.7"],
                trusted: &["10.0.0.0/8"],
                want: "203.0.113.7",
            },
            Case {
                desc: "mapped hop skipped as trusted",
                peer: "10.0.0.2",
                xff: &[b"203.0.113.7, ::ffff:10.0.0.3"],
                trusted: &["10.0.0.0/8"],
                want: "203.0.113.7",
            },
            Case {
                desc: "IPv6 proxies",
                peer: "fd00::1",
                xff: &[b"2001:db8::7, fd00::2"],
                trusted: &["fd00::/8"],
                want: "2001:db8::7",
            },
        ];
        for c in cases {
            let mut h = HeaderMap::new();
            for v in c.xff {
                h.append(X_FORWARDED_FOR, HeaderValue::from_bytes(v).unwrap());
            }
            let trusted: Vec<IpNet> = c.trusted.iter().map(|n| n.parse().unwrap()).collect();
            assert_eq!(client_ip(ip(c.peer), &h, &trusted), ip(c.want), "{}", c.desc);
        }
    }
}
