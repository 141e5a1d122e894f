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

/// Whether `name` is a header [`find_token`] reads: the configured header, `Authorization`,
/// `Cookie`. A request naming none of them carries no token (the fast path of
/// `request::authenticate_with`).
pub fn reads(cfg: &JwtConfig, name: &http::HeaderName) -> bool {
    name == AUTHORIZATION || name == COOKIE || *name == cfg.header_name
}

/// The token of the first present source, in the order header, bearer, cookie; `None` when
/// the request carries none of them. A present source that cannot hold a token (two values,
/// an empty value, bytes that are not visible ASCII) is `Err(Malformed)`, not skipped.
pub fn find_token<'a>(cfg: &JwtConfig, headers: &'a HeaderMap) -> Option<(TokenSource, Result<&'a str, JwtFailure>)> {
    let mut values = headers.get_all(&cfg.header_name).iter();
    if let Some(first) = values.next() {
        // Two assertion headers are ambiguous: refuse rather than pick one the app might not.
        let token = if values.next().is_some() { Err(JwtFailure::Malformed) } else { token_text(first.as_bytes()) };
        return Some((TokenSource::Header, token));
    }

    let mut bearer = headers.get_all(AUTHORIZATION).iter().filter_map(|v| bearer_token(v.as_bytes()));
    if let Some(first) = bearer.next() {
        let token = if bearer.next().is_some() { Err(JwtFailure::Malformed) } else { first };
        return Some((TokenSource::Bearer, token));
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
fn bearer_token(value: &[u8]) -> Option<Result<&str, JwtFailure>> {
    const SCHEME: &[u8] = b"bearer";
    let value = value.trim_ascii_start();
    if value.len() < SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &value[SCHEME.len()..];
    match rest.first() {
        // `Bearer` alone, or `Bearer<token>`: malformed, and clearly meant as a bearer token.
        None => Some(Err(JwtFailure::Malformed)),
        Some(b' ' | b'\t') => Some(token_text(rest)),
        // `Bearerx …` is some other scheme.
        Some(_) => None,
    }
}

/// The value of cookie `name` in one Cookie header (`a=1; b=2`), unquoted (RFC 6265 §4.1.1).
/// The pairs are found with `memchr`: the header is mostly the token itself, so a byte-by-byte
/// split cost more than the whole cached verification.
fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<Result<&'a str, JwtFailure>> {
    let mut rest = header;
    loop {
        let (pair, next) = match memchr::memchr(b';', rest) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if let Some(value) = pair_value(pair, name) {
            return Some(token_text(value));
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

/// A token as text: trimmed, non-empty, visible ASCII only (a JWS compact serialisation is
/// base64url and dots, RFC 7515 §7.1).
fn token_text(bytes: &[u8]) -> Result<&str, JwtFailure> {
    let bytes = bytes.trim_ascii();
    // A fold without early exit, so the check is vectorised (`0x21..=0x7e`, visible ASCII).
    let graphic = bytes.iter().fold(true, |ok, &b| ok & (b.wrapping_sub(0x21) < 0x5e));
    if bytes.is_empty() || !graphic {
        return Err(JwtFailure::Malformed);
    }
    std::str::from_utf8(bytes).map_err(|_| JwtFailure::Malformed)
}
