//! Arbitrary requests (the decide target's format) through the cookie and header parsers the
//! request path runs before any decision: the JWT's source (`CF_Authorization` cookie or the
//! assertion header), cookie lookup, the client address from `X-Forwarded-For` behind trusted
//! proxies, the underscore-header rules, and the sign-in callback's query. Invariants: no
//! panic; a token found in a source is a substring of that source; the client address is the
//! peer or a value some `X-Forwarded-For` line holds.

use std::net::{IpAddr, Ipv4Addr};

use http::HeaderName;
use ipnet::IpNet;
use portcullis_sidecar::decide::authn::jwt::find_token;
use portcullis_sidecar::decide::client_headers::{underscore_names, UnderscoreHeaders};
use portcullis_sidecar::decide::client_ip::client_ip;
use portcullis_sidecar::decide::sign_in;

pub fn run(data: &[u8]) {
    let Some((_method, uri, headers)) = crate::request(data) else { return };
    let app = &crate::decide::harness().apps[0];
    if let Some((_, Ok(token))) = find_token(&app.jwt, &headers) {
        // Bytes, not text: a header may hold obs-text (non-ASCII) around an ASCII token.
        let present = headers.iter().any(|(_, v)| v.as_bytes().windows(token.len()).any(|w| w == token));
        assert!(present, "the token found is in some header");
    }
    if let Some(value) = sign_in::cookie(&headers, app.jwt.cookie_name()) {
        assert!(!value.contains(';'), "one cookie's value, not the rest of the header");
    }
    let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
    let trusted: [IpNet; 2] = ["10.0.0.0/8".parse().expect("net"), "fd00::/8".parse().expect("net")];
    let ip = client_ip(peer, &headers, &trusted);
    if ip != peer {
        assert!(forwarded_addresses(&headers).contains(&ip), "the client address {ip} comes from X-Forwarded-For");
    }
    assert_eq!(client_ip(peer, &headers, &[]), peer, "no trusted proxies: the peer, always");
    let configured = HeaderName::from_static("cf-access-jwt-assertion");
    for policy in [UnderscoreHeaders::Allow, UnderscoreHeaders::Drop, UnderscoreHeaders::Reject] {
        if let Ok(names) = underscore_names(&headers, policy, &configured) {
            assert!(names.iter().all(|n| n.as_str().contains('_')), "only underscore names are removed");
        }
    }
    if let Ok(p) = sign_in::callback_params(uri.query()) {
        assert!(!p.code.is_empty() && !p.state.is_empty());
    }
    let _ = sign_in::query_param(uri.query().unwrap_or_default(), "rd");
}

/// Every address written in `X-Forwarded-For` (bare, with a port, or bracketed IPv6), canonical.
fn forwarded_addresses(headers: &http::HeaderMap) -> Vec<IpAddr> {
    let parse = |e: &str| {
        let e = e.trim_matches([' ', '\t']);
        e.parse::<IpAddr>()
            .ok()
            .or_else(|| e.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
            .or_else(|| e.strip_prefix('[')?.strip_suffix(']')?.parse::<IpAddr>().ok())
    };
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(parse)
        .map(|ip| ip.to_canonical())
        .collect()
}
