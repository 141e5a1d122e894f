//! Origins: reading a request's `Origin` header without allocating, and the allowed-origin set
//! that is built once per config.
//!
//! Owns: the origin grammar on the request path and the match rules (exact, or `*.suffix` at any
//! depth but never the bare suffix; scheme and port must agree; ASCII case-insensitive). Must not:
//! allocate per request, or accept anything a browser would not send as an origin.

use http::HeaderValue;
use portcullis_crds::snapshot::{AllowedOrigins, OriginHost};

use super::CorsConfigError;
use crate::decide::fast_hash::ConfigMap;

/// Longest `Origin` we read; longer ones are malformed. A DNS name has at most 253 characters
/// (RFC 1035 §2.3.4), and `compile` refuses longer configured origins, so nothing longer could
/// match anyway; the cap bounds the work a hostile header can cause.
pub(super) const MAX_ORIGIN_LEN: usize = 512;

/// `*`, answered for `allowAllOrigins` (Fetch §3.2.3).
const ANY: HeaderValue = HeaderValue::from_static("*");

/// A request origin, borrowed from the header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RequestOrigin<'a> {
    /// An opaque origin (HTML §7.1.1): sandboxed iframes, `file:` and `data:` pages, redirects.
    Null,
    Tuple(Tuple<'a>),
}

/// `scheme://host[:port]` as sent; `port` is `None` for the scheme's default port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Tuple<'a> {
    scheme: &'a [u8],
    host: &'a [u8],
    port: Option<u16>,
    /// The digits of a non-default port, as sent (canonical: no sign, no leading zero).
    port_digits: &'a [u8],
}

/// Parses a serialised origin (RFC 6454 §6.2, HTML §7.1.1). `None` for anything a browser would
/// not send: a path, userinfo, an empty label, a non-canonical port, non-ASCII bytes.
pub(super) fn parse(v: &[u8]) -> Option<RequestOrigin<'_>> {
    if v.eq_ignore_ascii_case(b"null") {
        return Some(RequestOrigin::Null);
    }
    if v.len() > MAX_ORIGIN_LEN {
        return None;
    }
    let colon = v.iter().position(|&b| b == b':')?;
    let (scheme, rest) = (&v[..colon], &v[colon..]);
    let authority = rest.strip_prefix(b"://")?;
    if !is_scheme(scheme) || authority.is_empty() {
        return None;
    }
    let (host, port_digits) = split_port(authority)?;
    let port = match port_digits {
        None => None,
        Some(d) => Some(parse_port(d)?),
    };
    if !(is_ipv6_literal(host) || is_hostname(host)) {
        return None;
    }
    // URL standard §4.4: the default port of a special scheme is never serialised; treat an
    // explicit one as absent so it compares equal to the configured (normalised) origin.
    let (port, port_digits) = match (port, port_digits) {
        (Some(p), _) if Some(p) == default_port(scheme) => (None, &[][..]),
        (p, d) => (p, d.unwrap_or_default()),
    };
    Some(RequestOrigin::Tuple(Tuple { scheme, host, port, port_digits }))
}

/// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &[u8]) -> bool {
    matches!(s.first(), Some(b) if b.is_ascii_alphabetic())
        && s.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Splits `host[:port]`; an IPv6 literal keeps its brackets.
fn split_port(authority: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    if authority.first() == Some(&b'[') {
        let close = authority.iter().position(|&b| b == b']')?;
        let (host, after) = authority.split_at(close + 1);
        return match after {
            [] => Some((host, None)),
            [b':', digits @ ..] => Some((host, Some(digits))),
            _ => None,
        };
    }
    match authority.iter().rposition(|&b| b == b':') {
        Some(i) => Some((&authority[..i], Some(&authority[i + 1..]))),
        None => Some((authority, None)),
    }
}

/// Decimal, 1–5 digits, no leading zero (URL standard §4.4 serialises ports this way).
fn parse_port(d: &[u8]) -> Option<u16> {
    if d.is_empty() || d.len() > 5 || (d.len() > 1 && d[0] == b'0') {
        return None;
    }
    let mut n: u32 = 0;
    for &b in d {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(b - b'0');
    }
    u16::try_from(n).ok()
}

/// Labels of 1–63 letters, digits, `-`, `_`; at most 253 bytes (RFC 1035 §2.3.4, with the `_`
/// browsers accept in hosts).
fn is_hostname(h: &[u8]) -> bool {
    h.len() <= 253
        && h.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `[` IPv6address `]` (RFC 3986 §3.2.2).
fn is_ipv6_literal(h: &[u8]) -> bool {
    h.strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .and_then(|h| std::str::from_utf8(h).ok())
        .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
}

/// Default port of a special scheme (URL standard §4.1); must agree with `compile::cors`.
fn default_port(scheme: &[u8]) -> Option<u16> {
    let is = |s: &str| scheme.eq_ignore_ascii_case(s.as_bytes());
    if is("http") || is("ws") {
        Some(80)
    } else if is("https") || is("wss") {
        Some(443)
    } else if is("ftp") {
        Some(21)
    } else {
        None
    }
}

// === impl Tuple ===

impl Tuple<'_> {
    /// Writes the normalised form (`scheme://host[:port]`, lower-case, no default port) into
    /// `buf` and returns it. It is never longer than the header it came from, which is at most
    /// `MAX_ORIGIN_LEN` bytes, so it always fits.
    fn normalised<'b>(&self, buf: &'b mut [u8; MAX_ORIGIN_LEN]) -> Option<&'b str> {
        let mut n = 0;
        let parts: [&[u8]; 5] =
            [self.scheme, b"://", self.host, if self.port_digits.is_empty() { b"" } else { b":" }, self.port_digits];
        for part in parts {
            let dst = buf.get_mut(n..n + part.len())?;
            for (d, s) in dst.iter_mut().zip(part) {
                *d = s.to_ascii_lowercase();
            }
            n += part.len();
        }
        std::str::from_utf8(&buf[..n]).ok()
    }

    /// Whether the host is a strict subdomain of `dot_suffix` (`.example.com`): at least one
    /// whole label before it, so `example.com` and `evilexample.com` are not.
    fn is_subdomain_of(&self, dot_suffix: &str) -> bool {
        let s = dot_suffix.as_bytes();
        self.host.len() > s.len() && self.host[self.host.len() - s.len()..].eq_ignore_ascii_case(s)
    }
}

/// The allowed origins, built once per config.
#[derive(Debug)]
pub(super) enum AllowOrigin {
    /// `allowAllOrigins`: answer `*`.
    Any,
    List(OriginSet),
}

#[derive(Debug)]
pub(super) struct OriginSet {
    /// The exact origins by lower-case host: the schemes (lower-case) and ports (`None` for the
    /// scheme's default) allowed with it. A lookup hashes the request's host as sent (lower-case
    /// from browsers; copied lower-case into a stack buffer otherwise) and compares the scheme
    /// and port: the same answer as comparing normalised `scheme://host[:port]` strings,
    /// without writing one per request.
    exact: ConfigMap<Box<[u8]>, Vec<SchemePort>>,
    subdomains: Vec<Subdomains>,
    /// The configured patterns, for explanations.
    shown: Vec<String>,
}

/// An exact origin's lower-case scheme and its port (`None` for the scheme's default).
type SchemePort = (Box<[u8]>, Option<u16>);

#[derive(Debug)]
struct Subdomains {
    /// Lower-case.
    scheme: Box<str>,
    /// `.example.com`, lower-case.
    dot_suffix: Box<str>,
    port: Option<u16>,
}

// === impl AllowOrigin ===

impl AllowOrigin {
    /// Re-validates the compiled patterns: each must read back, through the request-path parser,
    /// as exactly the normalised origin it claims to be. A tampered or stale snapshot fails here
    /// instead of matching something unexpected.
    pub(super) fn new(origins: &AllowedOrigins) -> Result<Self, CorsConfigError> {
        let list = match origins {
            AllowedOrigins::Any => return Ok(Self::Any),
            AllowedOrigins::List(list) => list,
        };
        let mut set = OriginSet { exact: ConfigMap::default(), subdomains: Vec::new(), shown: Vec::new() };
        for p in list {
            let shown = p.to_string();
            let invalid = || CorsConfigError::Origin(shown.clone());
            // A wildcard is checked as one of its subdomains.
            let probe = match &p.host {
                OriginHost::Exact(_) => shown.clone(),
                OriginHost::SubdomainsOf(s) => shown.replacen(&format!("*.{s}"), &format!("x.{s}"), 1),
            };
            let Some(RequestOrigin::Tuple(t)) = parse(probe.as_bytes()) else {
                return Err(invalid());
            };
            let mut buf = [0; MAX_ORIGIN_LEN];
            if t.normalised(&mut buf) != Some(probe.as_str()) {
                return Err(invalid());
            }
            match &p.host {
                // `t` reads back as the normalised probe: scheme and host are lower-case already.
                OriginHost::Exact(_) => set.exact.entry(t.host.into()).or_default().push((t.scheme.into(), t.port)),
                OriginHost::SubdomainsOf(s) => set.subdomains.push(Subdomains {
                    scheme: p.scheme.clone().into_boxed_str(),
                    dot_suffix: format!(".{s}").into_boxed_str(),
                    port: p.port,
                }),
            }
            set.shown.push(shown);
        }
        Ok(Self::List(set))
    }

    /// Whether `origin` may read responses. `Any` allows every well-formed origin, `null`
    /// included: `*` is readable by opaque origins too (Fetch §3.2.5), and it is public data.
    /// A list never allows `null` (compile refuses it).
    pub(super) fn allows(&self, origin: &RequestOrigin<'_>) -> bool {
        match (self, origin) {
            (Self::Any, _) => true,
            (Self::List(_), RequestOrigin::Null) => false,
            (Self::List(set), RequestOrigin::Tuple(t)) => set.allows(t),
        }
    }

    /// `Access-Control-Allow-Origin` for an allowed origin: `*` for `Any` (never combined with
    /// credentials: `CorsConfig` refuses that), else the request's own value, byte for byte,
    /// because browsers compare it exactly (Fetch §3.2.5). Cloning a `HeaderValue` shares its
    /// bytes; it does not allocate.
    pub(super) fn to_header(&self, request: &HeaderValue) -> HeaderValue {
        match self {
            Self::Any => ANY,
            Self::List(_) => request.clone(),
        }
    }

    /// The configured patterns, for explanations.
    pub(super) fn describe(&self) -> String {
        match self {
            Self::Any => "every origin (allowAllOrigins)".to_owned(),
            Self::List(s) if s.shown.is_empty() => "no origin".to_owned(),
            Self::List(s) => s.shown.join(", "),
        }
    }
}

// === impl OriginSet ===

impl OriginSet {
    fn allows(&self, t: &Tuple<'_>) -> bool {
        let mut buf;
        let host = if t.host.iter().any(u8::is_ascii_uppercase) {
            buf = [0; MAX_ORIGIN_LEN];
            // `parse` bounds the whole origin, so the host always fits.
            let Some(lower) = buf.get_mut(..t.host.len()) else { return false };
            for (d, s) in lower.iter_mut().zip(t.host) {
                *d = s.to_ascii_lowercase();
            }
            &*lower
        } else {
            t.host
        };
        let exact = self.exact.get(host).is_some_and(|allowed| {
            allowed.iter().any(|(scheme, port)| t.scheme.eq_ignore_ascii_case(scheme) && t.port == *port)
        });
        exact
            || self.subdomains.iter().any(|w| {
                t.scheme.eq_ignore_ascii_case(w.scheme.as_bytes())
                    && t.port == w.port
                    && t.is_subdomain_of(&w.dot_suffix)
            })
    }
}

#[cfg(test)]
mod tests {
    use portcullis_crds::snapshot::OriginPattern;
    use proptest::prelude::*;

    use super::*;

    /// The exact-origin match as it was before the per-host table: both sides written out
    /// normalised (`scheme://host[:port]`, lower-case, no default port) and compared as strings.
    fn normalised_match(configured: &[OriginPattern], request: &[u8]) -> bool {
        let Some(RequestOrigin::Tuple(t)) = parse(request) else { return false };
        let mut buf = [0; MAX_ORIGIN_LEN];
        let Some(want) = t.normalised(&mut buf) else { return false };
        configured.iter().any(|p| p.to_string() == want)
    }

    fn pattern() -> impl Strategy<Value = OriginPattern> {
        (
            "https?|wss|ftp|x-app",
            "[a-c]{1,2}(\\.[a-c]{1,2}){0,2}|\\[::1\\]",
            prop::option::of(prop_oneof![Just(80u16), Just(8080), Just(1)]),
        )
            .prop_filter_map("default ports are stored as none", |(scheme, host, port)| {
                let port = port.filter(|p| default_port(scheme.as_bytes()) != Some(*p));
                Some(OriginPattern { scheme, host: OriginHost::Exact(host), port })
            })
    }

    proptest! {
        /// The host table answers as the normalised-string comparison does, for request origins
        /// in any case, with default, explicit-default and other ports.
        #[test]
        fn host_table_agrees_with_normalised_strings(
            configured in prop::collection::vec(pattern(), 0..5),
            picks in prop::collection::vec((any::<prop::sample::Index>(), any::<u64>(), prop_oneof![Just(""), Just(":80"), Just(":443"), Just(":8080"), Just(":1"), Just(":21")]), 1..8),
            scheme in "https?|HTTP|wss|ftp|x-app",
            host in "[a-cA-C]{1,2}(\\.[a-cA-C]{1,2}){0,2}",
        ) {
            let set = AllowOrigin::new(&AllowedOrigins::List(configured.clone())).expect("valid patterns");
            let mut requests = vec![format!("{scheme}://{host}")];
            for (i, case, port) in picks {
                if configured.is_empty() {
                    break;
                }
                // A configured origin re-spelled: random case, and a port that may be its own.
                let p = &configured[i.index(configured.len())];
                let shown: String = p.to_string().bytes().enumerate()
                    .map(|(k, b)| if case >> (k % 64) & 1 == 1 { b.to_ascii_uppercase() as char } else { b as char })
                    .collect();
                requests.push(format!("{shown}{port}"));
            }
            for r in requests {
                let got = parse(r.as_bytes()).is_some_and(|o| set.allows(&o));
                prop_assert_eq!(got, normalised_match(&configured, r.as_bytes()), "{}", r);
            }
        }
    }
}
