//! Browser sign-in decisions: which `/.portcullis/` endpoint a path is, whether a request is a
//! browser navigation, whether a return URL (`rd`) is on the application's domains, and the
//! exact URLs and cookies of the OpenID Connect authorization-code flow with PKCE.
//!
//! Pure: no I/O, no clock, no randomness (random values, `now` and keys are arguments). The I/O
//! half (discovery, token exchange, signing) is `crate::identity`; the glue is `http/oidc_steps.rs`.
//! Nothing here logs, and no error carries a token, a code or a cookie value.

use std::borrow::Cow;

use base64::Engine;
use http::header::{HeaderValue, ACCEPT, COOKIE};
use http::{HeaderMap, Method};
use portcullis_crds::v1alpha1::{SameSite, UnauthenticatedResponse};
use sha2::{Digest, Sha256};
use url::Url;

use super::route::Router;

/// The reserved prefix (api.md "Browser sign-in paths"); never forwarded to the app.
pub const PREFIX: &str = "/.portcullis";

/// The cookie binding a sign-in to the browser that started it (state, nonce, PKCE verifier).
pub const STATE_COOKIE: &str = "portcullis_login";
/// The state cookie lives only on the callback path and only as long as a sign-in may take.
pub const STATE_COOKIE_PATH: &str = "/.portcullis/callback";
/// How long a started sign-in may take at the identity provider.
pub const STATE_TTL_SECS: i64 = 600;

/// Longest `rd`, `code`, `state` or other query value we read. Real ones are well under 2 KiB;
/// anything longer is refused before parsing (a 400, not work for an anonymous client).
pub const MAX_PARAM_BYTES: usize = 4096;

/// The reserved endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/.portcullis/login?rd=…`: starts sign-in.
    Login,
    /// `/.portcullis/callback`: the OIDC redirect URI.
    Callback,
    /// `/.portcullis/logout`: clears the session cookie.
    Logout,
    /// `/.portcullis/identity`: the signed-in identity as JSON, or 401.
    Identity,
    /// `/.portcullis/handoff?code=…`: an application with `login.authenticationHost` exchanges
    /// the authentication host's code for its own session.
    Handoff,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Login => "login",
            Endpoint::Callback => "callback",
            Endpoint::Logout => "logout",
            Endpoint::Identity => "identity",
            Endpoint::Handoff => "handoff",
        }
    }
}

/// The endpoint of a (normalised) path under [`PREFIX`]; `None` for any other path under it.
pub fn endpoint(path: &str) -> Option<Endpoint> {
    match path.strip_prefix(PREFIX)? {
        "/login" => Some(Endpoint::Login),
        "/callback" => Some(Endpoint::Callback),
        "/logout" => Some(Endpoint::Logout),
        "/identity" => Some(Endpoint::Identity),
        "/handoff" => Some(Endpoint::Handoff),
        _ => None,
    }
}

/// Whether a request is a browser navigation (api.md `unauthenticatedResponse: Auto`):
/// Whether an unauthenticated request is redirected to sign-in rather than answered 401
/// (api.md `unauthenticatedResponse`): `Redirect` always (with `login`), `Auto` for browser
/// navigations only, `Status401` never; without `login` never.
pub fn redirects_to_sign_in(
    setting: UnauthenticatedResponse,
    has_login: bool,
    method: &Method,
    headers: &HeaderMap,
) -> bool {
    has_login
        && match setting {
            UnauthenticatedResponse::Redirect => true,
            UnauthenticatedResponse::Auto => is_navigation(method, headers),
            UnauthenticatedResponse::Status401 => false,
        }
}

/// `Sec-Fetch-Mode: navigate` (Fetch Metadata), or, when a client sends no Fetch metadata, a
/// GET/HEAD whose `Accept` prefers HTML. `fetch()` and XHR send `Sec-Fetch-Mode: cors` or
/// `no-cors`, so a page's API call never gets a redirect it cannot follow.
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    if let Some(mode) = headers.get("sec-fetch-mode") {
        return mode.as_bytes().eq_ignore_ascii_case(b"navigate");
    }
    headers.get_all(ACCEPT).iter().any(|v| accept_prefers_html(v.as_bytes()))
}

/// `text/html` (or `application/xhtml+xml`) listed with a quality at least that of every other
/// type: what browsers send for navigations (`text/html,application/xhtml+xml,…,*/*;q=0.8`).
fn accept_prefers_html(accept: &[u8]) -> bool {
    let Ok(accept) = std::str::from_utf8(accept) else { return false };
    let mut html = None::<f32>;
    let mut best_other = 0.0f32;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q =
            parts.filter_map(|p| p.trim().strip_prefix("q=")).find_map(|q| q.trim().parse::<f32>().ok()).unwrap_or(1.0);
        if media == "text/html" || media == "application/xhtml+xml" {
            html = Some(html.map_or(q, |h| h.max(q)));
        } else if !media.is_empty() {
            best_other = best_other.max(q);
        }
    }
    html.is_some_and(|h| h > 0.0 && h >= best_other)
}

/// Why a return URL was refused (400). Never carries the URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReturnUrlError {
    #[error("rd is longer than {MAX_PARAM_BYTES} bytes")]
    TooLong,
    #[error("rd is not an absolute http(s) URL")]
    NotAbsolute,
    #[error("rd carries user credentials")]
    Credentials,
    #[error("rd is not on this application's domains")]
    OffDomain,
}

impl ReturnUrlError {
    pub fn reason(&self) -> &'static str {
        match self {
            ReturnUrlError::TooLong => "rd_too_long",
            ReturnUrlError::NotAbsolute => "rd_invalid",
            ReturnUrlError::Credentials => "rd_invalid",
            ReturnUrlError::OffDomain => "rd_off_domain",
        }
    }
}

/// Checks a return URL: parsed by WHATWG URL rules (the `url` crate), exactly as the browser
/// that follows our redirect will parse it, so `/\evil.test/`, `https:evil.test`, tabs and
/// backslashes mean to us what they mean to the browser. It must be `http(s)`, carry no
/// userinfo, and route (host and normalised path) to application `app`. A relative `rd` is
/// resolved against `base` (the request's own origin).
pub fn return_url(rd: &str, base: &Url, router: &Router, app: usize) -> Result<Url, ReturnUrlError> {
    match routed_url(rd, Some(base), router)? {
        (url, i) if i == app => Ok(url),
        _ => Err(ReturnUrlError::OffDomain),
    }
}

/// The checks of [`return_url`] without naming the application: the URL (relative ones
/// resolved against `base`; without a base only absolute URLs are read) and the application
/// it routes to. Used by the authentication host, which sends browsers back to any of the
/// applications that name it.
pub fn routed_url(rd: &str, base: Option<&Url>, router: &Router) -> Result<(Url, usize), ReturnUrlError> {
    if rd.len() > MAX_PARAM_BYTES {
        return Err(ReturnUrlError::TooLong);
    }
    let url = Url::options().base_url(base).parse(rd).map_err(|_| ReturnUrlError::NotAbsolute)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ReturnUrlError::NotAbsolute);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ReturnUrlError::Credentials);
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        None => return Err(ReturnUrlError::NotAbsolute),
    };
    // Routed as a request to it would be: a return URL whose path servers read differently
    // (an encoded slash) is refused rather than guessed at.
    let path = match portcullis_crds::paths::canonical_path(url.path()) {
        Ok(p) if !p.ambiguous => p.matching,
        _ => return Err(ReturnUrlError::NotAbsolute),
    };
    match router.route(&host, &path) {
        Some(i) => Ok((url, i)),
        None => Err(ReturnUrlError::OffDomain),
    }
}

/// The request's own origin as the client addressed it: `scheme://Host` (port included).
pub fn request_base(scheme: &str, authority: &str) -> Option<Url> {
    Url::parse(&format!("{scheme}://{authority}/")).ok()
}

/// The scheme the browser uses to reach the application: `https` on the TLS listener, or when
/// the session cookie is `Secure` (such a cookie only works over https, so a TLS-terminating
/// proxy is in front); `http` only for a plain listener with a non-`Secure` cookie.
pub fn public_scheme(tls_listener: bool, secure_cookie: bool) -> &'static str {
    if tls_listener || secure_cookie {
        "https"
    } else {
        "http"
    }
}

/// The sign-in URL of an unauthenticated request for `path_and_query` (api.md: the 401's
/// `"login"`, and where a navigation is redirected): it returns the user to that very URL.
pub fn login_url_for(base: &Url, path_and_query: &str) -> String {
    let here = base.join(path_and_query).unwrap_or_else(|_| base.clone());
    login_url(base, here.as_str())
}

/// `<origin>/.portcullis/login?rd=<return url>`: the sign-in URL a 401 names and a navigation
/// is redirected to.
pub fn login_url(base: &Url, rd: &str) -> String {
    let mut url = base.clone();
    url.set_path("/.portcullis/login");
    url.set_query(None);
    url.set_fragment(None);
    url.query_pairs_mut().append_pair("rd", rd);
    url.into()
}

/// The OIDC `redirect_uri` (api.md): `https://<Host as requested, port included>/.portcullis/callback`
/// (`http` only for a plain-HTTP listener whose session cookie is not `Secure`).
pub fn redirect_uri(scheme: &str, authority: &str) -> String {
    format!("{scheme}://{authority}{STATE_COOKIE_PATH}")
}

/// RFC 7636 §4.2: `BASE64URL(SHA256(code_verifier))`.
pub fn pkce_challenge(verifier: &str) -> String {
    b64url(&Sha256::digest(verifier.as_bytes()))
}

/// Unpadded base64url (RFC 4648 §5), the encoding of every random value we put in a URL.
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The values one sign-in attempt is bound to. Random ones are made by the caller (≥ 128 bits,
/// api.md); this type only carries them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    /// `state`, compared with the callback's.
    #[serde(rename = "st")]
    pub state: String,
    /// `nonce`, compared with the ID token's.
    #[serde(rename = "nn")]
    pub nonce: String,
    /// The PKCE `code_verifier`.
    #[serde(rename = "pv")]
    pub verifier: String,
    /// Where the user goes after signing in (already checked by [`return_url`]).
    pub rd: String,
    /// The `redirect_uri` sent, which the token request must repeat (RFC 6749 §4.1.3).
    #[serde(rename = "ru")]
    pub redirect_uri: String,
    /// The application (`namespace/name`): a state from another application is refused.
    pub app: String,
    /// Unix seconds after which the callback is refused.
    pub exp: i64,
}

/// The authorization request (OpenID Connect Core §3.1.2.1, RFC 7636 §4.3).
pub fn authorization_url(endpoint: &Url, client_id: &str, scopes: &[String], pending: &Pending) -> Url {
    let mut url = endpoint.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &pending.redirect_uri)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", &pending.state)
        .append_pair("nonce", &pending.nonce)
        .append_pair("code_challenge", &pkce_challenge(&pending.verifier))
        .append_pair("code_challenge_method", "S256");
    url
}

/// Why a callback was refused. Every variant is a 4xx and mints no session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("no sign-in was started in this browser (the state cookie is missing); start again from the application")]
    NoStateCookie,
    #[error("the sign-in state cookie is invalid or expired; start again from the application")]
    BadStateCookie,
    #[error("the state parameter does not match the sign-in started in this browser")]
    StateMismatch,
    #[error("this sign-in response was already used")]
    Replayed,
    #[error("the callback has no code or state parameter")]
    MissingParams,
    #[error("a callback parameter is too long")]
    ParamTooLong,
    #[error("the identity provider refused the sign-in")]
    ProviderError,
}

impl CallbackError {
    pub fn reason(&self) -> &'static str {
        match self {
            CallbackError::NoStateCookie => "login_state_missing",
            CallbackError::BadStateCookie => "login_state_invalid",
            CallbackError::StateMismatch => "login_state_mismatch",
            CallbackError::Replayed => "login_state_replayed",
            CallbackError::MissingParams => "login_callback_invalid",
            CallbackError::ParamTooLong => "login_callback_invalid",
            CallbackError::ProviderError => "login_provider_error",
        }
    }
}

/// The callback's query, read with size caps.
#[derive(Debug, PartialEq, Eq)]
pub struct CallbackParams<'a> {
    pub code: Cow<'a, str>,
    pub state: Cow<'a, str>,
}

/// Reads `code` and `state` from the callback query; an `error` parameter (RFC 6749 §4.1.2.1)
/// is [`CallbackError::ProviderError`].
pub fn callback_params(query: Option<&str>) -> Result<CallbackParams<'_>, CallbackError> {
    let query = query.unwrap_or_default();
    if query.len() > 4 * MAX_PARAM_BYTES {
        return Err(CallbackError::ParamTooLong);
    }
    if query_param(query, "error").is_some() {
        return Err(CallbackError::ProviderError);
    }
    let (Some(code), Some(state)) = (query_param(query, "code"), query_param(query, "state")) else {
        return Err(CallbackError::MissingParams);
    };
    if code.len() > MAX_PARAM_BYTES || state.len() > MAX_PARAM_BYTES {
        return Err(CallbackError::ParamTooLong);
    }
    if code.is_empty() || state.is_empty() {
        return Err(CallbackError::MissingParams);
    }
    Ok(CallbackParams { code, state })
}

/// Whether an ID token's email may sign in: a token that says `email_verified: false` (a JSON
/// boolean, or the string `"false"` some providers send) is refused unless the application sets
/// `login.oidc.allowUnverifiedEmail`, since anyone can put an unverified address in a profile at
/// many providers and `email` rules would then admit them (api.md, "Browser sign-in paths").
/// A token without the claim is accepted: many providers only issue verified addresses and
/// omit it.
pub fn email_acceptable(claims: &serde_json::Map<String, serde_json::Value>, allow_unverified: bool) -> bool {
    let unverified = match claims.get("email_verified") {
        Some(serde_json::Value::Bool(b)) => !b,
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("false"),
        _ => false,
    };
    allow_unverified || !unverified
}

/// Checks the callback's `state` against the pending sign-in read from this browser's cookie
/// (already signature-checked by the caller): same application, not expired, equal state
/// (constant time).
pub fn check_pending(pending: &Pending, state: &str, app: &str, now: i64) -> Result<(), CallbackError> {
    if pending.app != app || now >= pending.exp {
        return Err(CallbackError::BadStateCookie);
    }
    if !bool::from(subtle::ConstantTimeEq::ct_eq(pending.state.as_bytes(), state.as_bytes())) {
        return Err(CallbackError::StateMismatch);
    }
    Ok(())
}

/// The first value of `name` in a query string, percent-decoded (`+` as space, as forms do).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v)
}

/// The value of cookie `name` across every `Cookie` header (RFC 6265 §5.4; HTTP/2 may split them).
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get_all(COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        v.split(';').find_map(|pair| {
            let (k, val) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| val.trim().trim_matches('"'))
        })
    })
}

/// Cookie attributes (from `spec.login.cookie`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieAttrs {
    pub same_site: SameSite,
    pub http_only: bool,
    pub secure: bool,
}

/// A `Set-Cookie` value (RFC 6265 §4.1). `max_age` 0 deletes the cookie. Values are base64url
/// and dots, names are validated by `compile`, so the header is always valid; `None` otherwise.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, attrs: CookieAttrs) -> Option<HeaderValue> {
    let same_site = match attrs.same_site {
        SameSite::Strict => "Strict",
        SameSite::Lax => "Lax",
        SameSite::None => "None",
    };
    let mut s = format!("{name}={value}; Path={path}; Max-Age={}; SameSite={same_site}", max_age.max(0));
    if attrs.secure {
        s.push_str("; Secure");
    }
    if attrs.http_only {
        s.push_str("; HttpOnly");
    }
    HeaderValue::from_str(&s).ok()
}

/// Attributes of the state cookie: HttpOnly always; `SameSite=Lax`, because the callback is a
/// top-level cross-site navigation from the identity provider, which Lax cookies accompany and
/// Strict ones do not; Secure as the session cookie is.
pub fn state_cookie_attrs(session: CookieAttrs) -> CookieAttrs {
    CookieAttrs { same_site: SameSite::Lax, http_only: true, secure: session.secure }
}

#[cfg(test)]
mod tests;
