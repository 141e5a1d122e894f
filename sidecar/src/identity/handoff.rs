//! One sign-in across applications (`login.authenticationHost`): the values that travel between
//! an application's host and its authentication host, and the checks on them.
//!
//! The flow (docs/behaviour.md, "One sign-in across hosts"): the application binds a hand-off to
//! the browser with a state cookie on its own host and sends the browser to the authentication
//! host; that host (after a provider sign-in, or with its identity session) sends the browser
//! back to the application's `/.portcullis/handoff` with a **code**: a JWS signed with the
//! application's own session key, addressed to that application (`aud`), carrying the state,
//! valid [`CODE_TTL_SECS`] and redeemable once per process. Nothing crosses sites in a cookie.
//!
//! Owns the claim types, the pure checks and the process-wide memory of redeemed codes and
//! ended identity sessions. Must not do I/O or log values; errors never carry a code or state.

use std::sync::OnceLock;

use portcullis_crds::snapshot::Login;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::decide::route::Router;
use crate::decide::sign_in::{self as rules, ReturnUrlError, MAX_PARAM_BYTES};

/// Where the authentication host starts (or skips) sign-in for an application.
pub const AUTHENTICATE_PATH: &str = "/.portcullis/authenticate";
/// Where an application redeems a code (`decide::sign_in::Endpoint::Handoff`).
pub const HANDOFF_PATH: &str = "/.portcullis/handoff";
/// The application's cookie binding a hand-off to the browser that started it.
pub const HANDOFF_COOKIE: &str = "portcullis_handoff";
/// The authentication host's identity session cookie (on its own host only).
pub const IDENTITY_COOKIE: &str = "portcullis_identity";
/// A code is valid this long after it was minted: one redirect, even on a slow device.
pub const CODE_TTL_SECS: i64 = 60;
/// Clock difference tolerated between the sidecar that mints a code and the one redeeming it.
const CODE_SKEW_SECS: i64 = 30;
/// Longest `state` accepted (ours are 43 characters of base64url).
pub const MAX_STATE_BYTES: usize = 128;
/// Remembered redeemed codes and ended identity sessions (each for at most its lifetime; the
/// bound is documented: beyond it, the oldest entries are forgotten first).
const MEMORY_CAPACITY: usize = 100_000;

/// JWS `typ` of each value, so none can be presented as another.
pub const CODE_TYP: &str = "portcullis-handoff+jwt";
pub const STATE_TYP: &str = "portcullis-handoff-state+jwt";
pub const IDENTITY_TYP: &str = "portcullis-identity+jwt";

/// The `iss` of codes and identity sessions of an authentication host (`host[:port]` as
/// configured): an application accepts codes only from the host it names.
pub fn auth_issuer(authentication_host: &str) -> String {
    format!("portcullis-auth:{authentication_host}")
}

/// The application's state cookie: which hand-off this browser started, and where it goes after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffState {
    /// Random (256 bits), repeated in the code.
    pub st: String,
    /// The return URL, already checked by `decide::sign_in::return_url`.
    pub rd: String,
    /// The application's label: a state of another application is refused.
    pub app: String,
    pub exp: i64,
}

/// The identity a code or an identity session carries: the claims copied from the ID token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub iss: String,
    /// The identity session this came from (random), ended by sign-out.
    pub sid: String,
    /// The identity provider's issuer.
    pub idp: String,
    pub iat: i64,
    pub exp: i64,
    /// `sub`, `email`, `email_verified`, `name`, `preferred_username`, `groups`.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// A hand-off code's claims.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Code {
    /// The application's session issuer (`identity::session_issuer`).
    pub aud: String,
    /// The state the application bound to the browser.
    pub st: String,
    /// Random: the single-use key.
    pub jti: String,
    /// When the identity session ends: the application's session never outlives it.
    #[serde(rename = "sexp")]
    pub session_exp: i64,
    /// `iss`, `iat`, `exp` are the code's; `sid`, `idp` and `claims` the identity's.
    #[serde(flatten)]
    pub identity: Identity,
}

/// Why a hand-off was refused. Never carries a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    #[error("the hand-off has no code parameter")]
    NoCode,
    #[error("no hand-off was started in this browser (the state cookie is missing); start again from the application")]
    NoStateCookie,
    #[error("the hand-off state cookie is invalid or expired; start again from the application")]
    BadStateCookie,
    #[error("the code is malformed, tampered with, or not signed for this application")]
    BadCode,
    #[error("the code is addressed to another application")]
    WrongAudience,
    #[error("the code has expired")]
    Expired,
    #[error("the code was issued for a sign-in started in another browser")]
    StateMismatch,
    #[error("the code was already used")]
    Replayed,
}

impl HandoffError {
    pub fn reason(&self) -> &'static str {
        match self {
            HandoffError::NoCode => "handoff_code_missing",
            HandoffError::NoStateCookie => "handoff_state_missing",
            HandoffError::BadStateCookie => "handoff_state_invalid",
            HandoffError::BadCode => "handoff_code_invalid",
            HandoffError::WrongAudience => "handoff_code_wrong_audience",
            HandoffError::Expired => "handoff_code_expired",
            HandoffError::StateMismatch => "handoff_state_mismatch",
            HandoffError::Replayed => "handoff_code_replayed",
        }
    }

    /// 400 for a request that is not a hand-off of this browser, 401 for a refused code.
    pub fn status(&self) -> http::StatusCode {
        match self {
            HandoffError::NoCode
            | HandoffError::NoStateCookie
            | HandoffError::BadStateCookie
            | HandoffError::StateMismatch => http::StatusCode::BAD_REQUEST,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }
}

/// Checks the state cookie (already signature-checked): this application's, not expired.
pub fn check_state(state: &HandoffState, app: &str, now: i64) -> Result<(), HandoffError> {
    if state.app != app || now >= state.exp {
        return Err(HandoffError::BadStateCookie);
    }
    Ok(())
}

/// Checks a code (already signature-checked with the application's key) against what the
/// application expects: from its authentication host (`iss`), for itself (`aud`), fresh, and
/// for the hand-off this browser started (`st`, constant time). Single use is the caller's
/// [`first_use`], after these checks.
pub fn check_code(code: &Code, state: &HandoffState, iss: &str, aud: &str, now: i64) -> Result<(), HandoffError> {
    if code.identity.iss != iss {
        return Err(HandoffError::BadCode);
    }
    if code.aud != aud {
        return Err(HandoffError::WrongAudience);
    }
    let (iat, exp) = (code.identity.iat, code.identity.exp);
    if now >= exp || exp.saturating_sub(iat) > CODE_TTL_SECS || iat > now.saturating_add(CODE_SKEW_SECS) {
        return Err(HandoffError::Expired);
    }
    if !bool::from(subtle::ConstantTimeEq::ct_eq(code.st.as_bytes(), state.st.as_bytes())) {
        return Err(HandoffError::StateMismatch);
    }
    Ok(())
}

/// A `state` as the authentication host accepts it: 1 to [`MAX_STATE_BYTES`] base64url characters.
pub fn valid_state(st: &str) -> bool {
    (1..=MAX_STATE_BYTES).contains(&st.len()) && st.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why the authentication host refused a `return` URL (400). Never carries the URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReturnError {
    #[error("return must be an application's {HANDOFF_PATH} URL, without query, fragment or credentials")]
    Invalid,
    #[error("return is not on an application that uses this authentication host")]
    OffDomain,
}

impl ReturnError {
    pub fn reason(&self) -> &'static str {
        match self {
            ReturnError::Invalid => "handoff_return_invalid",
            ReturnError::OffDomain => "handoff_return_off_domain",
        }
    }
}

/// Checks the authentication host's `return` parameter: an absolute URL (WHATWG rules, as the
/// browser reads it) whose path is exactly [`HANDOFF_PATH`], with no query, fragment or
/// userinfo, that routes to an application for which `member` holds, in that application's
/// public scheme (`scheme_of`). Returns the URL and the application's index. This is the
/// open-redirect rule of `rd` applied to the hand-off: codes go only to configured applications.
pub fn handoff_return(
    raw: &str,
    router: &Router,
    member: impl Fn(usize) -> bool,
    scheme_of: impl Fn(usize) -> &'static str,
) -> Result<(Url, usize), ReturnError> {
    let (url, app) = rules::routed_url(raw, None, router).map_err(|e| match e {
        ReturnUrlError::OffDomain => ReturnError::OffDomain,
        _ => ReturnError::Invalid,
    })?;
    if url.path() != HANDOFF_PATH || url.query().is_some() || url.fragment().is_some() {
        return Err(ReturnError::Invalid);
    }
    if !member(app) {
        return Err(ReturnError::OffDomain);
    }
    if url.scheme() != scheme_of(app) {
        return Err(ReturnError::Invalid);
    }
    Ok((url, app))
}

/// Where the authentication host sends a browser back to an application (after a sign-out, an
/// `rd`): any URL of an application that uses it, else `None`.
pub fn member_url(raw: &str, router: &Router, member: impl Fn(usize) -> bool) -> Option<Url> {
    rules::routed_url(raw, None, router).ok().filter(|(_, app)| member(*app)).map(|(url, _)| url)
}

/// `<scheme>://<authentication host>/.portcullis/authenticate?return=…&state=…`.
pub fn authenticate_url(scheme: &str, authentication_host: &str, return_to: &str, state: &str) -> Option<Url> {
    let mut url = Url::parse(&format!("{scheme}://{authentication_host}{AUTHENTICATE_PATH}")).ok()?;
    url.query_pairs_mut().append_pair("return", return_to).append_pair("state", state);
    Some(url)
}

/// The two settings every application naming one authentication host must share: one client
/// registration at one provider (the one redirect URI), one verified-email rule.
pub fn same_provider(a: &Login, b: &Login) -> bool {
    a.issuer == b.issuer
        && a.client_id == b.client_id
        && a.client_secret == b.client_secret
        && a.scopes == b.scopes
        && a.allow_unverified_email == b.allow_unverified_email
}

/// A code parameter is refused unread beyond this size (real ones are about 1 KiB).
pub fn code_too_long(code: &str) -> bool {
    code.len() > 2 * MAX_PARAM_BYTES
}

// === process-wide memory ===

/// Redeemed codes and ended identity sessions. One per process, not per configuration: a
/// reload must not let a redeemed code be replayed or an ended session come back. Replicas do
/// not share it (docs/behaviour.md states the bound this leaves).
struct Memory {
    redeemed: quick_cache::sync::Cache<String, ()>,
    ended: quick_cache::sync::Cache<String, ()>,
}

fn memory() -> &'static Memory {
    static MEMORY: OnceLock<Memory> = OnceLock::new();
    MEMORY.get_or_init(|| Memory {
        redeemed: quick_cache::sync::Cache::new(MEMORY_CAPACITY),
        ended: quick_cache::sync::Cache::new(MEMORY_CAPACITY),
    })
}

/// Records a redeemed code; `false` when it was redeemed before in this process.
pub fn first_use(jti: &str) -> bool {
    // Insert-if-absent in one step, so two concurrent replays cannot both pass.
    let mut first = false;
    let _ = memory().redeemed.get_or_insert_with(jti, || -> Result<(), ()> {
        first = true;
        Ok(())
    });
    first
}

/// Ends an identity session: its cookie is refused from now on, even if a copy is presented.
pub fn end_session(sid: &str) {
    memory().ended.insert(sid.to_owned(), ());
}

pub fn session_ended(sid: &str) -> bool {
    memory().ended.get(sid).is_some()
}

#[cfg(test)]
mod tests;
