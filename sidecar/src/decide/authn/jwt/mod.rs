//! JWT verification: is this token from a trusted issuer, for us, and current?
//!
//! Owns the verification rules of api.md ("JWT" and "Identities"): size cap, header checks
//! (`crit`, `alg` allow-list), issuer choice by the unverified `iss`, key choice only from the
//! configured JWKS (never from the token's `jku`/`jwk`/`x5u`/`x5c`), signature, `aud`,
//! `exp`/`nbf` with the issuer's clock skew, and a bounded cache of verified tokens.
//! Pure: no I/O, no tokio, no clock (`now` is an argument); keys come through [`KeySource`].
//! Never logs, and no error carries a token or a claim value.

mod keys;
mod source;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use portcullis_crds::snapshot::{self, Algorithm};
use serde::Deserialize;

use super::{IdentityHeaderValues, User};
use crate::decide::observe::{Observer, Quiet};
use keys::{jwt_alg, Selection};
pub use keys::{JwksError, KeySet};
use source::token_text;
pub use source::{find_present_token, find_token, Present, TokenSource};

/// Tokens longer than this are refused before any parsing (api.md): bounds the work an
/// anonymous client can cause, and Cloudflare's own tokens are well under it.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Total weight of the verified-token cache (about token bytes × 3 + overhead per entry):
/// ~10 000 typical 1 KiB tokens. A miss costs one signature verification (~16 µs for RS256).
pub const CACHE_WEIGHT_CAPACITY: u64 = 32 * 1024 * 1024;

/// The header the app receives the verified token in (Cloudflare Access's name).
pub const ASSERTION_HEADER: HeaderName = HeaderName::from_static("cf-access-jwt-assertion");
/// The header the app receives the verified email in.
pub const EMAIL_HEADER: HeaderName = HeaderName::from_static("cf-access-authenticated-user-email");

/// Why a JWT was refused. Small and `Copy` for the request path; every variant is a 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtFailure {
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// Not three base64url parts of JSON, or a source holding no usable token.
    Malformed,
    /// The header lists `crit` extensions; we implement none (RFC 7515 §4.1.11).
    UnknownCrit,
    /// `alg` is `none`, HMAC, unknown, or not in the issuer's allow-list.
    AlgorithmNotAllowed,
    /// `iss` missing or not a configured issuer.
    UnknownIssuer,
    /// The issuer's keys are not loaded yet (first JWKS fetch pending or failing).
    NoKeys {
        issuer: usize,
    },
    /// No key with the token's `kid` (or, without `kid`, none of its type): a JWKS refresh
    /// may bring it, so the glue may refresh issuer `issuer` and retry once.
    UnknownKey {
        issuer: usize,
    },
    /// The `kid` names a key of another type or algorithm than `alg`.
    KeyMismatch,
    /// No `kid`, and the issuer has several keys of the type: we do not guess.
    AmbiguousKey,
    BadSignature,
    /// `aud` missing or naming none of the configured audiences.
    WrongAudience,
    MissingExp,
    Expired,
    /// `nbf` is in the future (beyond the clock skew).
    NotYetValid,
    /// A registered claim of the wrong JSON type (`exp` as a string, say).
    InvalidClaims,
}

impl JwtFailure {
    /// Stable snake_case label for metrics, logs and the JSON body.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtFailure::TooLarge => "jwt_too_large",
            JwtFailure::Malformed => "jwt_malformed",
            JwtFailure::UnknownCrit => "jwt_unknown_crit",
            JwtFailure::AlgorithmNotAllowed => "jwt_algorithm_not_allowed",
            JwtFailure::UnknownIssuer => "jwt_unknown_issuer",
            JwtFailure::NoKeys { .. } => "jwt_no_keys",
            JwtFailure::UnknownKey { .. } => "jwt_unknown_key",
            JwtFailure::KeyMismatch => "jwt_key_mismatch",
            JwtFailure::AmbiguousKey => "jwt_ambiguous_key",
            JwtFailure::BadSignature => "jwt_bad_signature",
            JwtFailure::WrongAudience => "jwt_wrong_audience",
            JwtFailure::MissingExp => "jwt_missing_exp",
            JwtFailure::Expired => "jwt_expired",
            JwtFailure::NotYetValid => "jwt_not_yet_valid",
            JwtFailure::InvalidClaims => "jwt_invalid_claims",
        }
    }

    /// The issuer whose JWKS should be refreshed before one retry, for [`JwtFailure::UnknownKey`].
    /// The check that failed, as `Observer::check_passed` names the ones that passed.
    pub fn check(&self) -> &'static str {
        match self {
            JwtFailure::TooLarge => "size",
            JwtFailure::Malformed => "format",
            JwtFailure::UnknownCrit => "crit",
            JwtFailure::AlgorithmNotAllowed => "algorithm",
            JwtFailure::UnknownIssuer => "issuer",
            JwtFailure::NoKeys { .. } => "keys",
            JwtFailure::UnknownKey { .. } | JwtFailure::KeyMismatch | JwtFailure::AmbiguousKey => "key",
            JwtFailure::BadSignature => "signature",
            JwtFailure::WrongAudience => "audience",
            JwtFailure::MissingExp | JwtFailure::InvalidClaims => "claims",
            JwtFailure::Expired | JwtFailure::NotYetValid => "expiry",
        }
    }

    pub fn refresh_issuer(&self) -> Option<usize> {
        match self {
            JwtFailure::UnknownKey { issuer } => Some(*issuer),
            _ => None,
        }
    }
}

/// Why an [`snapshot::Identity`] cannot be turned into a [`JwtConfig`]. `compile` already
/// refuses all of these; the sidecar checks again because a push may come from elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtConfigError {
    #[error("identity.headerName {0:?} is not a valid HTTP header name")]
    HeaderName(String),
    #[error("identity.cookieName {0:?} is not a valid cookie name")]
    CookieName(String),
    #[error("issuer {0:?} has no audience; every token would be refused")]
    NoAudience(String),
    #[error("issuer {0:?} allows no algorithm; every token would be refused")]
    NoAlgorithm(String),
}

impl JwtConfigError {
    pub fn reason(&self) -> &'static str {
        match self {
            JwtConfigError::HeaderName(_) => "invalid_header_name",
            JwtConfigError::CookieName(_) => "invalid_cookie_name",
            JwtConfigError::NoAudience(_) => "issuer_without_audience",
            JwtConfigError::NoAlgorithm(_) => "issuer_without_algorithm",
        }
    }
}

/// The keys of each issuer, by the issuer's index in the config. The JWKS store implements it
/// for the live config; tests implement it over fixed key sets.
pub trait KeySource {
    /// The current keys of issuer `issuer_index`; `None` while none are loaded.
    fn keys(&self, issuer_index: usize) -> Option<Arc<KeySet>>;
}

impl KeySource for [Option<Arc<KeySet>>] {
    fn keys(&self, issuer_index: usize) -> Option<Arc<KeySet>> {
        self.get(issuer_index).cloned().flatten()
    }
}

impl KeySource for Vec<Option<Arc<KeySet>>> {
    fn keys(&self, issuer_index: usize) -> Option<Arc<KeySet>> {
        self.as_slice().keys(issuer_index)
    }
}

/// What one trusted issuer requires, ready for the request path.
struct IssuerRule {
    issuer: Box<str>,
    audiences: Box<[Box<str>]>,
    algorithms: Box<[Algorithm]>,
    skew: i64,
}

/// A verification that succeeded, valid for as long as its times and key generation are.
#[derive(Clone)]
struct Verified {
    user: Arc<User>,
    issuer: usize,
    generation: u64,
    exp: i64,
    nbf: Option<i64>,
}

/// Cache weight: the key is the token itself; the claims map takes about twice its size.
#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<TokenKey, Verified> for Weight {
    fn weight(&self, token: &TokenKey, _: &Verified) -> u64 {
        token.0.len() as u64 * 3 + 256
    }
}

/// How many trailing bytes of a token its cache hash reads.
const HASHED_TAIL: usize = 32;

/// A verified token as the cache's key: compared whole, hashed by its length and its last
/// [`HASHED_TAIL`] bytes — the signature's, which differ between any two tokens an issuer
/// signed — instead of all ~700 bytes on every request. Only verified tokens are inserted, so
/// a client cannot fill a bucket with tokens made to share a tail (and the hasher is seeded).
#[derive(PartialEq, Eq)]
struct TokenKey(Box<str>);

/// A request's token bytes, looked up without copying them into a [`TokenKey`] (and before
/// they are checked to be text: only text was ever inserted, so equal bytes are that text).
struct TokenRef<'a>(&'a [u8]);

fn hash_token<H: std::hash::Hasher>(b: &[u8], state: &mut H) {
    state.write_usize(b.len());
    state.write(&b[b.len().saturating_sub(HASHED_TAIL)..]);
}

impl std::hash::Hash for TokenKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_token(self.0.as_bytes(), state);
    }
}

impl std::hash::Hash for TokenRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_token(self.0, state);
    }
}

impl quick_cache::Equivalent<TokenKey> for TokenRef<'_> {
    fn equivalent(&self, key: &TokenKey) -> bool {
        *self.0 == *key.0.as_bytes()
    }
}

/// The live form of one application's [`snapshot::Identity`]: built once per config, so a
/// reload also empties the verified-token cache.
pub struct JwtConfig {
    header_name: HeaderName,
    cookie_name: Box<str>,
    issuers: Box<[IssuerRule]>,
    cache: quick_cache::sync::Cache<TokenKey, Verified, Weight>,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let issuers: Vec<&str> = self.issuers.iter().map(|i| &*i.issuer).collect();
        f.debug_struct("JwtConfig")
            .field("header_name", &self.header_name)
            .field("cookie_name", &self.cookie_name)
            .field("issuers", &issuers)
            .finish_non_exhaustive()
    }
}

/// The token header, decoded by us rather than by `jsonwebtoken`, so that `crit` is seen and
/// `jku`/`jwk`/`x5u`/`x5c` are never read. A duplicate member is a parse error (serde).
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

// === impl JwtConfig ===

impl JwtConfig {
    pub fn new(identity: &snapshot::Identity) -> Result<JwtConfig, JwtConfigError> {
        Self::with_cache_capacity(identity, CACHE_WEIGHT_CAPACITY)
    }

    /// Like [`new`](Self::new) with a cache of `weight_capacity` (see [`CACHE_WEIGHT_CAPACITY`]).
    pub fn with_cache_capacity(
        identity: &snapshot::Identity,
        weight_capacity: u64,
    ) -> Result<JwtConfig, JwtConfigError> {
        let header_name = HeaderName::from_bytes(identity.header_name.as_bytes())
            .map_err(|_| JwtConfigError::HeaderName(identity.header_name.clone()))?;
        let cookie_ok = !identity.cookie_name.is_empty()
            && identity.cookie_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !cookie_ok {
            return Err(JwtConfigError::CookieName(identity.cookie_name.clone()));
        }
        let mut issuers = Vec::with_capacity(identity.issuers.len());
        for i in &identity.issuers {
            if i.audiences.is_empty() {
                return Err(JwtConfigError::NoAudience(i.issuer.clone()));
            }
            if i.algorithms.is_empty() {
                return Err(JwtConfigError::NoAlgorithm(i.issuer.clone()));
            }
            issuers.push(IssuerRule {
                issuer: i.issuer.as_str().into(),
                audiences: i.audiences.iter().map(|a| a.as_str().into()).collect(),
                algorithms: i.algorithms.iter().copied().collect(),
                skew: i64::try_from(i.clock_skew_secs).unwrap_or(i64::MAX / 4).min(i64::MAX / 4),
            });
        }
        let estimated_items = usize::try_from(weight_capacity / 4096).unwrap_or(1024).max(16);
        Ok(JwtConfig {
            header_name,
            cookie_name: identity.cookie_name.as_str().into(),
            issuers: issuers.into(),
            cache: quick_cache::sync::Cache::with_weighter(estimated_items, weight_capacity, Weight),
        })
    }

    /// The configured token header.
    pub fn header_name(&self) -> &HeaderName {
        &self.header_name
    }

    /// The session cookie name.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// Number of trusted issuers (a [`KeySource`] answers for indexes below it).
    pub fn issuer_count(&self) -> usize {
        self.issuers.len()
    }

    /// Verifies `token` at `now` (Unix seconds) against the keys of `keys`.
    ///
    /// A token verified before is answered from the cache after re-checking `exp`/`nbf`
    /// against `now` and that its issuer's key generation is unchanged. Any other token must be
    /// text (visible ASCII, else `Malformed`) of at most [`MAX_TOKEN_BYTES`] (else `TooLarge`).
    pub fn authenticate<K: KeySource + ?Sized>(
        &self,
        token: &(impl AsRef<[u8]> + ?Sized),
        keys: &K,
        now: i64,
    ) -> Result<Arc<User>, JwtFailure> {
        self.authenticate_with(token, keys, now, &mut Quiet)
    }

    /// [`JwtConfig::authenticate`], reporting each check it passes to `obs`.
    pub fn authenticate_with<K: KeySource + ?Sized, O: Observer>(
        &self,
        token: &(impl AsRef<[u8]> + ?Sized),
        keys: &K,
        now: i64,
        obs: &mut O,
    ) -> Result<Arc<User>, JwtFailure> {
        let raw = token.as_ref();
        // The cache first: a hit is a token that was text and small enough when it was verified
        // (equal bytes), so the text check's two passes over ~700 bytes are not repeated.
        let hit = self.cache.get(&TokenRef(raw)).filter(|hit| {
            let current = keys.keys(hit.issuer).map(|k| k.generation());
            current == Some(hit.generation)
        });
        if let Some(hit) = hit {
            obs.check_passed("size");
            // The index is valid: the entry was made with this config's issuers.
            let skew = self.issuers.get(hit.issuer).map_or(0, |r| r.skew);
            obs.check_passed("cached");
            if let Err(e) = check_times(hit.exp, hit.nbf, now, skew) {
                if e == JwtFailure::Expired {
                    self.cache.remove(&TokenRef(raw));
                }
                return Err(e);
            }
            obs.check_passed("expiry");
            return Ok(hit.user);
        }
        let token = token_text(raw)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtFailure::TooLarge);
        }
        obs.check_passed("size");
        let verified = self.verify(token, keys, now, obs)?;
        let user = verified.user.clone();
        self.cache.insert(TokenKey(token.into()), verified);
        Ok(user)
    }

    fn verify<K: KeySource + ?Sized, O: Observer>(
        &self,
        token: &str,
        keys: &K,
        now: i64,
        obs: &mut O,
    ) -> Result<Verified, JwtFailure> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            // Also refuses JWE (five parts): we verify signatures, we do not decrypt.
            return Err(JwtFailure::Malformed);
        };
        // Both JSON parts are read before any of their fields is judged, so `format` is one
        // check that passed or failed before the others.
        let header: RawHeader = serde_json::from_slice(&b64(header_b64)?).map_err(|_| JwtFailure::Malformed)?;
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&b64(payload_b64)?).map_err(|_| JwtFailure::Malformed)?;
        obs.check_passed("format");
        if header.crit.is_some() {
            // We understand no extension, and an empty `crit` is itself invalid (RFC 7515
            // §4.1.11), so any `crit` refuses the token.
            return Err(JwtFailure::UnknownCrit);
        }
        obs.check_passed("crit");
        // `none` and HS* are not `Algorithm`s at all: refused whatever the configuration says.
        let alg = Algorithm::from_name(&header.alg).ok_or(JwtFailure::AlgorithmNotAllowed)?;

        // The unverified `iss` only chooses whose keys to try; the signature decides.
        let iss = claims.get("iss").and_then(|v| v.as_str()).ok_or(JwtFailure::UnknownIssuer)?;
        let index = self.issuers.iter().position(|r| *r.issuer == *iss).ok_or(JwtFailure::UnknownIssuer)?;
        obs.check_passed("issuer");
        let rule = &self.issuers[index];
        if !rule.algorithms.contains(&alg) {
            return Err(JwtFailure::AlgorithmNotAllowed);
        }
        obs.check_passed("algorithm");
        let key_set = keys.keys(index).ok_or(JwtFailure::NoKeys { issuer: index })?;
        obs.check_passed("keys");
        let key = key_set.select(header.kid.as_deref(), alg).map_err(|s| match s {
            Selection::Unknown => JwtFailure::UnknownKey { issuer: index },
            Selection::Mismatch => JwtFailure::KeyMismatch,
            Selection::Ambiguous => JwtFailure::AmbiguousKey,
        })?;
        obs.check_passed("key");
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        match jsonwebtoken::crypto::verify(signature_b64, signing_input.as_bytes(), &key.decoding, jwt_alg(alg)) {
            Ok(true) => {}
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::Base64(_)) => {
                return Err(JwtFailure::Malformed)
            }
            Ok(false) | Err(_) => return Err(JwtFailure::BadSignature),
        }
        obs.check_passed("signature");

        if !audience_matches(claims.get("aud"), &rule.audiences) {
            return Err(JwtFailure::WrongAudience);
        }
        obs.check_passed("audience");
        let exp = match claims.get("exp") {
            None => return Err(JwtFailure::MissingExp),
            // A fractional NumericDate (RFC 7519 §2) rounds towards refusal on both ends.
            Some(v) => numeric_date(v, f64::floor).ok_or(JwtFailure::InvalidClaims)?,
        };
        let nbf = match claims.get("nbf") {
            None => None,
            Some(v) => Some(numeric_date(v, f64::ceil).ok_or(JwtFailure::InvalidClaims)?),
        };
        obs.check_passed("claims");
        check_times(exp, nbf, now, rule.skew)?;
        obs.check_passed("expiry");

        // A token without `email` is still an identity (api.md "Identities").
        let email = claims.get("email").and_then(|v| v.as_str()).map(str::to_owned);
        let mut user =
            User { issuer: rule.issuer.to_string(), email, claims, expires_at: exp, headers: Default::default() };
        let (assertion, email_header) = identity_header_values(token, &user);
        user.headers = IdentityHeaderValues { assertion, email: email_header };
        Ok(Verified { user: Arc::new(user), issuer: index, generation: key_set.generation(), exp, nbf })
    }
}

/// `exp` is the first instant the token is refused (RFC 7519 §4.1.4); both ends get the skew.
fn check_times(exp: i64, nbf: Option<i64>, now: i64, skew: i64) -> Result<(), JwtFailure> {
    if now >= exp.saturating_add(skew) {
        return Err(JwtFailure::Expired);
    }
    if nbf.is_some_and(|nbf| now.saturating_add(skew) < nbf) {
        return Err(JwtFailure::NotYetValid);
    }
    Ok(())
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3); one configured value must be in it.
fn audience_matches(aud: Option<&serde_json::Value>, allowed: &[Box<str>]) -> bool {
    let ok = |s: &str| allowed.iter().any(|a| **a == *s);
    match aud {
        Some(serde_json::Value::String(s)) => ok(s),
        Some(serde_json::Value::Array(items)) => items.iter().any(|v| v.as_str().is_some_and(ok)),
        _ => false,
    }
}

fn numeric_date(v: &serde_json::Value, round: fn(f64) -> f64) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = round(v.as_f64()?);
    // Beyond ±2^53 s the value is nonsense anyway; refuse instead of saturating.
    (f.is_finite() && f.abs() < 9.0e15).then_some(f as i64)
}

/// Strict base64url without padding (RFC 7515 §2), as every JWS part is.
fn b64(part: &str) -> Result<Vec<u8>, JwtFailure> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtFailure::Malformed)
}

/// Values for the identity headers the app receives (`Cf-Access-Jwt-Assertion`,
/// `Cf-Access-Authenticated-User-Email`) for a token that [`JwtConfig::authenticate`] accepted.
/// `None` when a value cannot be a header (an email with control characters): omit that header.
pub fn identity_header_values(token: &str, user: &User) -> (Option<HeaderValue>, Option<HeaderValue>) {
    let assertion = HeaderValue::from_str(token).ok();
    let email = user.email.as_deref().and_then(|e| HeaderValue::from_bytes(e.as_bytes()).ok());
    (assertion, email)
}
