//! Header names the sidecar owns, and the header surgery done before forwarding: hop-by-hop
//! headers removed (RFC 9110 §7.6.1) and client copies of identity headers stripped before ours
//! are set (a client must never be able to claim an identity by sending the header itself).

use std::sync::LazyLock;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, COOKIE, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

// The identity headers are defined where they are decided on: the JWT assertion and email
// (set for the app), the service-token pair (the id reaches the app only when the request
// authenticated as that token; the secret never does).
pub use crate::decide::authn::jwt::{ASSERTION_HEADER as JWT_ASSERTION, EMAIL_HEADER as AUTHENTICATED_USER_EMAIL};
pub use crate::decide::authn::service_token::{CLIENT_ID_HEADER as CLIENT_ID, CLIENT_SECRET_HEADER as CLIENT_SECRET};
pub use crate::decide::client_ip::X_FORWARDED_FOR;

/// Correlates a response with the sidecar's log line (defined beside the preflight answer,
/// which holds its slot).
pub use crate::decide::cors::REQUEST_ID;
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones proxies still see).
const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
];

/// [`HOP_BY_HOP`] and `Upgrade`, for [`NameFilter`].
static HOP_BY_HOP_FILTER: LazyLock<NameFilter> =
    LazyLock::new(|| NameFilter::of(HOP_BY_HOP.iter().chain(std::iter::once(&UPGRADE))));

/// A quick "certainly not one of these names": the lengths and first bytes of a set of header
/// names. Every message's names are scanned for the few a proxy removes; most names fail this
/// test in two bit lookups instead of a comparison with each name of the set.
pub struct NameFilter {
    /// Bit `n`: a name of length `n` (63: 63 or longer).
    lengths: u64,
    /// Bit `b`: a name starting with byte `b` (names are lowercase ASCII).
    first: u128,
}

impl NameFilter {
    pub fn of<'a>(names: impl IntoIterator<Item = &'a HeaderName>) -> Self {
        let mut filter = NameFilter { lengths: 0, first: 0 };
        for name in names {
            let (length, first) = Self::bits(name);
            filter.lengths |= length;
            filter.first |= first;
        }
        filter
    }

    /// False: `name` is none of the set's. True: it may be.
    pub fn may_contain(&self, name: &HeaderName) -> bool {
        let (length, first) = Self::bits(name);
        self.lengths & length != 0 && self.first & first != 0
    }

    /// `name`'s length bit and first-byte bit: the one rule for building a filter and for
    /// testing a name against it.
    fn bits(name: &HeaderName) -> (u64, u128) {
        let s = name.as_str().as_bytes();
        (1 << s.len().min(63), 1 << (s.first().copied().unwrap_or(0) & 0x7f))
    }
}

/// Whether the request asks for a protocol upgrade (WebSocket): `Connection: upgrade` plus an
/// `Upgrade` header.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers and every header named in `Connection`. With `keep_upgrade`
/// the `Upgrade` header and `Connection: upgrade` survive (a WebSocket handshake needs them).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names present (a handful) instead of a hashed removal per name that
    // might be there: most messages carry none of them, and then nothing is allocated.
    let mut doomed: Vec<HeaderName> = Vec::new();
    let filter = &*HOP_BY_HOP_FILTER;
    for name in headers.keys() {
        if filter.may_contain(name) && (HOP_BY_HOP.contains(name) || (!keep_upgrade && name == UPGRADE)) {
            doomed.push(name.clone());
        }
    }
    if doomed.contains(&CONNECTION) {
        let named = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(keep_upgrade && n == UPGRADE));
        doomed.extend(named);
    }
    for name in doomed {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes one cookie (the session cookie) from every `Cookie` header, keeping the others.
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let values: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    headers.remove(COOKIE);
    for v in values {
        let Ok(s) = v.to_str() else {
            continue; // a non-UTF-8 cookie header cannot be filtered safely: drop it
        };
        let kept: Vec<&str> = s
            .split(';')
            .map(str::trim)
            .filter(|c| !c.is_empty() && c.split_once('=').map_or(*c, |(n, _)| n).trim() != name)
            .collect();
        if !kept.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
                headers.append(COOKIE, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-secret-hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-app"));
    }

    #[test]
    fn strips_every_hop_by_hop_spelling_and_repeated_connection_headers() {
        let mut h = HeaderMap::new();
        h.append(CONNECTION, HeaderValue::from_static("close"));
        h.append(CONNECTION, HeaderValue::from_static("X-Named, upgrade"));
        h.insert("x-named", HeaderValue::from_static("1"));
        h.insert("Proxy-Connection", HeaderValue::from_static("keep-alive"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("trailer", HeaderValue::from_static("x-t"));
        h.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
        h.insert(UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-app"], "{h:?}");

        let mut plain = HeaderMap::new();
        plain.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut plain, false);
        assert_eq!(plain.len(), 1, "nothing to strip: nothing stripped");
    }

    #[test]
    fn keeps_upgrade_for_websocket() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade_request(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn name_filters_pass_every_name_of_their_set() {
        let set = [CONNECTION, HeaderName::from_static("x-forwarded-for"), HeaderName::from_static("a")];
        let filter = NameFilter::of(&set);
        for name in &set {
            assert!(filter.may_contain(name), "{name}");
        }
        let long = HeaderName::from_bytes(&[b'x'; 80]).unwrap();
        assert!(NameFilter::of([&long]).may_contain(&HeaderName::from_bytes(&[b'x'; 70]).unwrap()));
        for other in ["host", "accept", "x-forwarded-fox-", "cookie", "b"] {
            assert!(!filter.may_contain(&HeaderName::from_static(other)), "{other}");
        }
        for name in HOP_BY_HOP.iter().chain([&UPGRADE]) {
            assert!(HOP_BY_HOP_FILTER.may_contain(name), "{name}");
        }
    }

    #[test]
    fn removes_only_the_session_cookie() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; CF_Authorization=tok; b=2"));
        h.append(COOKIE, HeaderValue::from_static("CF_Authorization=tok2"));
        remove_cookie(&mut h, "CF_Authorization");
        let all: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2"]);
    }
}
