//! Where a request carries its JWT: the configured header, `Authorization: Bearer`, the cookie.
//!
//! Owns the order of the sources and their parsing. Must not verify anything, and must never
//! fall back to a later source when an earlier one is present but bad (api.md): a client that
//! sends a header token and a cookie token gets the header one judged, so two tokens cannot be
//! played against each other.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use super::{JwtConfig, JwtFailure};

/// Which source a token came from (for logs and metrics; the value never is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// The configured header (default `Cf-Access-Jwt-Assertion`).
    Header,
    /// `Authorization: Bearer <token>` (RFC 6750 §2.1).
    Bearer,
    /// The session cookie (default `CF_Authorization`).
    Cookie,
}

impl TokenSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Header => "header",
            TokenSource::Bearer => "bearer",
            TokenSource::Cookie => "cookie",
        }
    }
}

/// Which of the headers [`find_token`] reads a request has: the configured header,
/// `Authorization`, `Cookie`. Noted from one look at the names present, so that a source whose
/// header is absent costs no hashed lookup (the configured header's custom name is the costly
/// one), and a request naming none of them carries no token (the fast path of
/// `request::authenticate_with`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Present {
    header: bool,
    bearer: bool,
    cookie: bool,
}

// === impl Present ===

impl Present {
    /// Notes `name`, one of the request's header names.
    pub fn note(&mut self, cfg: &JwtConfig, name: &http::HeaderName) {
        self.bearer |= name == AUTHORIZATION;
        self.cookie |= name == COOKIE;
        self.header |= *name == cfg.header_name;
    }

    /// Whether any source's header is present.
    pub fn any(self) -> bool {
        self.header || self.bearer || self.cookie
    }

    /// Every source's header present in `headers`.
    pub fn scan(cfg: &JwtConfig, headers: &HeaderMap) -> Present {
        let mut present = Present::default();
        for name in headers.keys() {
            present.note(cfg, name);
        }
        present
    }
}

/// The token of the first present source, in the order header, bearer, cookie; `None` when
/// the request carries none of them. A present source that cannot hold a token (two values,
/// an empty value) is `Err(Malformed)`, not skipped; a token that is not text (bytes that are
/// not visible ASCII) is refused as `Malformed` when it is verified.
pub fn find_token<'a>(cfg: &JwtConfig, headers: &'a HeaderMap) -> Option<(TokenSource, Result<&'a [u8], JwtFailure>)> {
    find_present_token(cfg, headers, Present::scan(cfg, headers))
}

/// [`find_token`] for a request whose headers `present` describes (exactly: a source marked
/// absent is not looked at).
pub fn find_present_token<'a>(
    cfg: &JwtConfig,
    headers: &'a HeaderMap,
    present: Present,
) -> Option<(TokenSource, Result<&'a [u8], JwtFailure>)> {
    if present.header {
        let mut values = headers.get_all(&cfg.header_name).iter();
        if let Some(first) = values.next() {
            // Two assertion headers are ambiguous: refuse rather than pick one the app might not.
            let token =
                if values.next().is_some() { Err(JwtFailure::Malformed) } else { token_bytes(first.as_bytes()) };
            return Some((TokenSource::Header, token));
        }
    }

    if present.bearer {
        let mut bearer = headers.get_all(AUTHORIZATION).iter().filter_map(|v| bearer_token(v.as_bytes()));
        if let Some(first) = bearer.next() {
            let token = if bearer.next().is_some() { Err(JwtFailure::Malformed) } else { first };
            return Some((TokenSource::Bearer, token));
        }
    }

    if !present.cookie {
        return None;
    }
    // Every Cookie header counts: HTTP/2 clients may split cookies over several (RFC 9113
    // §8.2.3). When a browser sends the cookie twice (set on a parent domain and on the host),
    // the first is the most specific one (RFC 6265 §5.4 orders longer paths first).
    headers
        .get_all(COOKIE)
        .iter()
        .find_map(|v| cookie_value(v.as_bytes(), cfg.cookie_name.as_bytes()))
        .map(|token| (TokenSource::Cookie, token))
}

/// `Bearer <token>` with the scheme compared case-insensitively (RFC 9110 §11.1); another
/// scheme (Basic, …) is not a JWT source, so `None`.
fn bearer_token(value: &[u8]) -> Option<Result<&[u8], JwtFailure>> {
    const SCHEME: &[u8] = b"bearer";
    let value = value.trim_ascii_start();
    if value.len() < SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &value[SCHEME.len()..];
    match rest.first() {
        // `Bearer` alone, or `Bearer<token>`: malformed, and clearly meant as a bearer token.
        None => Some(Err(JwtFailure::Malformed)),
        Some(b' ' | b'\t') => Some(token_bytes(rest)),
        // `Bearerx …` is some other scheme.
        Some(_) => None,
    }
}

/// The value of cookie `name` in one Cookie header (`a=1; b=2`), unquoted (RFC 6265 §4.1.1).
/// The pairs are found with `memchr`: the header is mostly the token itself, so a byte-by-byte
/// split cost more than the whole cached verification.
fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<Result<&'a [u8], JwtFailure>> {
    let mut rest = header;
    loop {
        let (pair, next) = match memchr::memchr(b';', rest) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if let Some(value) = pair_value(pair, name) {
            return Some(token_bytes(value));
        }
        rest = next?;
    }
}

/// The value of one `name=value` pair when its name is `name`, without its quotes.
fn pair_value<'a>(pair: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let pair = pair.trim_ascii();
    let eq = memchr::memchr(b'=', pair)?;
    if pair[..eq].trim_ascii() != name {
        return None;
    }
    let value = pair[eq + 1..].trim_ascii();
    match value {
        [b'"', inner @ .., b'"'] => Some(inner),
        _ => Some(value),
    }
}

/// A token's bytes: trimmed, non-empty. Whether they are text is judged by
/// [`token_text`] when the token is verified: after the verified-token cache, which holds
/// only tokens that were, so a cached token is not scanned again on every request.
fn token_bytes(bytes: &[u8]) -> Result<&[u8], JwtFailure> {
    match bytes.trim_ascii() {
        [] => Err(JwtFailure::Malformed),
        token => Ok(token),
    }
}

/// A token as text: visible ASCII only (a JWS compact serialisation is base64url and dots,
/// RFC 7515 §7.1).
pub(super) fn token_text(bytes: &[u8]) -> Result<&str, JwtFailure> {
    // A fold without early exit, so the check is vectorised (`0x21..=0x7e`, visible ASCII).
    let graphic = bytes.iter().fold(true, |ok, &b| ok & (b.wrapping_sub(0x21) < 0x5e));
    if bytes.is_empty() || !graphic {
        return Err(JwtFailure::Malformed);
    }
    std::str::from_utf8(bytes).map_err(|_| JwtFailure::Malformed)
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue};
    use portcullis_crds::snapshot::Identity;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Looking only at the sources the scan found present finds what looking at every
        /// source finds, whichever names, repeats and values a request has.
        #[test]
        fn present_sources_find_what_every_source_finds(
            lines in prop::collection::vec((0..6usize, 0..6usize), 0..7),
            custom: bool,
        ) {
            let header_name = if custom { "x-token" } else { "cf-access-jwt-assertion" };
            let identity = Identity { cookie_name: "session".into(), header_name: header_name.into(), issuers: vec![] };
            let cfg = JwtConfig::new(&identity).expect("a valid identity");
            let names = ["authorization", "cookie", "cf-access-jwt-assertion", "x-token", "accept", "cookie2"];
            let values = ["a.b.c", "Bearer a.b.c", "Basic x", "session=a.b.c", "x=1; session=\"d.e.f\"", ""];
            let mut headers = HeaderMap::new();
            for (n, v) in lines {
                headers.append(HeaderName::from_static(names[n]), HeaderValue::from_static(values[v]));
            }
            let every = Present { header: true, bearer: true, cookie: true };
            prop_assert_eq!(find_token(&cfg, &headers), find_present_token(&cfg, &headers, every));
        }
    }
}
