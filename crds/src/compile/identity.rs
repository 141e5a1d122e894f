//! `spec.identity` and `spec.login` → trusted issuers, token sources and browser sign-in.
//!
//! Owns the validation of everything a sidecar needs to verify a JWT (issuers, key sources,
//! audiences, algorithm allow-lists, clock skew, cookie and header names) and of the OIDC
//! client settings. Must not do I/O: a `jwksUri` is checked for its form, never fetched, and
//! an inline JWKS is checked for its shape only (the sidecar parses the key material).
//! Secret values (client secret, session key) go into the snapshot but never into a message.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::duration::parse_duration_secs;
use super::error::{CompileErrorKind, Diagnostics};
use super::secrets::SecretIndex;
use crate::snapshot::{Algorithm, Identity, Issuer, JwksSource, Login, SecretString};
use crate::v1alpha1::{IdentitySpec, IssuerSpec, LoginCookieSpec, LoginSpec, SameSite, SecretKeyRef};

/// Default session cookie (what Cloudflare Access sets).
pub const DEFAULT_COOKIE_NAME: &str = "CF_Authorization";
/// Default JWT header, lower-case.
pub const DEFAULT_HEADER_NAME: &str = "cf-access-jwt-assertion";
/// Default `clockSkew`: 30 s, enough for NTP-synchronised clocks and short enough that an
/// expired token does not linger.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 30;
/// Default OIDC scopes.
pub const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];

/// Algorithms users might write that we refuse outright, whatever the issuer: HMAC needs a
/// shared secret (and the "HS256 signed with the RSA public key" attack lives here) and `none`
/// is unsigned.
const NEVER_ALLOWED: [&str; 4] = ["none", "HS256", "HS384", "HS512"];

/// Compiles `identity`; problems are reported on `d` under `spec.identity.*`.
pub fn compile_identity(spec: Option<&IdentitySpec>, d: &mut Diagnostics) -> Identity {
    let cookie_name = match spec.and_then(|s| s.cookie_name.as_deref()) {
        None => DEFAULT_COOKIE_NAME.to_owned(),
        Some(name) => {
            if !is_cookie_name(name) {
                d.error(
                    "spec.identity.cookieName",
                    Some(name),
                    "not a valid cookie name: use letters, digits and !#$%&'*+-.^_`|~ only \
                     (RFC 6265 §4.1.1), e.g. CF_Authorization",
                );
            }
            name.to_owned()
        }
    };
    let header_name = match spec.and_then(|s| s.header_name.as_deref()) {
        None => DEFAULT_HEADER_NAME.to_owned(),
        Some(name) => {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                d.error(
                    "spec.identity.headerName",
                    Some(name),
                    "not a valid HTTP header name (RFC 9110 §5.1), e.g. Cf-Access-Jwt-Assertion",
                );
            }
            name.to_ascii_lowercase()
        }
    };
    let mut issuers: Vec<Issuer> = Vec::new();
    for (i, spec) in spec.map(|s| s.issuers.as_slice()).unwrap_or_default().iter().enumerate() {
        let path = format!("spec.identity.issuers[{i}]");
        if let Some(issuer) = compile_issuer(spec, &path, d) {
            if issuers.iter().any(|o| o.issuer == issuer.issuer) {
                d.error(
                    format!("{path}.issuer"),
                    Some(&issuer.issuer),
                    "listed twice; merge the audiences and algorithms into one entry",
                );
                continue;
            }
            issuers.push(issuer);
        }
    }
    Identity { cookie_name, header_name, issuers }
}

/// One issuer; `None` when it has errors (they are on `d`).
fn compile_issuer(spec: &IssuerSpec, path: &str, d: &mut Diagnostics) -> Option<Issuer> {
    let errors_before = d.errors().len();
    if spec.issuer.trim().is_empty() {
        d.error(
            format!("{path}.issuer"),
            None,
            "must not be empty: write the exact `iss` claim of the tokens, e.g. https://team.cloudflareaccess.com",
        );
    }
    let jwks = issuer_keys(spec, path, d);
    if spec.audiences.is_empty() {
        d.error(
            format!("{path}.audiences"),
            None,
            "needs at least one audience, e.g. the Cloudflare Access AUD tag; a token must carry one of them",
        );
    }
    for (j, aud) in spec.audiences.iter().enumerate() {
        if aud.is_empty() {
            d.error(format!("{path}.audiences[{j}]"), None, "must not be empty");
        }
    }
    let algorithms = issuer_algorithms(spec, path, d);
    let clock_skew_secs = match spec.clock_skew.as_deref() {
        None => DEFAULT_CLOCK_SKEW_SECS,
        Some(s) => match parse_duration_secs(s) {
            Ok(v) => v,
            Err(e) => {
                d.error(format!("{path}.clockSkew"), Some(s), e);
                0
            }
        },
    };
    if d.errors().len() != errors_before {
        return None;
    }
    Some(Issuer {
        issuer: spec.issuer.clone(),
        jwks: jwks?,
        audiences: spec.audiences.clone(),
        algorithms,
        clock_skew_secs,
    })
}

/// Where the issuer's keys come from: `jwksUri` or inline `jwks`, exactly one.
fn issuer_keys(spec: &IssuerSpec, path: &str, d: &mut Diagnostics) -> Option<JwksSource> {
    match (spec.jwks_uri.as_deref(), spec.jwks.as_deref()) {
        (None, None) => {
            d.error(
                path,
                None,
                "needs jwksUri (where the issuer publishes its keys, e.g. \
                 https://team.cloudflareaccess.com/cdn-cgi/access/certs) or jwks (the keys inline)",
            );
            None
        }
        (Some(_), Some(_)) => {
            d.error(path, None, "set either jwksUri or jwks, not both: keys must have one source");
            None
        }
        (Some(uri), None) => {
            let field = format!("{path}.jwksUri");
            check_fetch_url(uri, &field, d).then(|| JwksSource::Uri(uri.to_owned()))
        }
        (None, Some(json)) => {
            let field = format!("{path}.jwks");
            match check_inline_jwks(json) {
                Ok(()) => Some(JwksSource::Inline(json.to_owned())),
                Err(msg) => {
                    // The JWKS is public key material, but it can be long: do not quote it.
                    d.error(field, None, msg);
                    None
                }
            }
        }
    }
}

/// The algorithms the issuer's tokens may use (the defaults when none are listed); symmetric and
/// unsigned ones never.
fn issuer_algorithms(spec: &IssuerSpec, path: &str, d: &mut Diagnostics) -> Vec<Algorithm> {
    let mut algorithms = Vec::new();
    if spec.algorithms.is_empty() {
        algorithms.extend(Algorithm::DEFAULT);
    }
    for (j, name) in spec.algorithms.iter().enumerate() {
        let field = format!("{path}.algorithms[{j}]");
        if NEVER_ALLOWED.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            d.error(
                field,
                Some(name),
                "never allowed: a symmetric or unsigned token can be forged by anyone who knows the key \
                 or by nobody at all; use RS256, ES256 or EdDSA",
            );
        } else if let Some(alg) = Algorithm::from_name(name) {
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        } else {
            let known: Vec<&str> = Algorithm::ALL.iter().map(|(n, _)| *n).collect();
            d.error(field, Some(name), format!("unknown algorithm; use one of {}", known.join(", ")));
        }
    }
    algorithms
}

/// Compiles `login`, reading its Secrets from `namespace`. `None` when absent or invalid (the
/// errors are on `d`).
pub fn compile_login(
    spec: Option<&LoginSpec>,
    session_secs: u64,
    namespace: &str,
    secrets: &SecretIndex<'_>,
    d: &mut Diagnostics,
) -> Option<Login> {
    let spec = spec?;
    let errors_before = d.errors().len();
    let oidc = &spec.oidc;
    check_fetch_url(&oidc.issuer, "spec.login.oidc.issuer", d);
    if oidc.client_id.trim().is_empty() {
        d.error("spec.login.oidc.clientId", None, "must not be empty: the client id registered with the provider");
    }
    let client_secret = oidc.client_secret_ref.as_ref().and_then(|r| {
        read_secret(secrets, namespace, r, "spec.login.oidc.clientSecretRef", "the OIDC client secret", d)
    });
    let scopes = login_scopes(&oidc.scopes, d);
    let (same_site, http_only, secure) = cookie_flags(spec.cookie.clone().unwrap_or_default(), d);
    let session_key_pem = session_key(spec, namespace, secrets, d);
    let authentication_host = authentication_host(spec.authentication_host.as_deref(), d);
    let application_session_secs = application_session_secs(spec, session_secs, d);
    if d.errors().len() != errors_before {
        return None;
    }
    Some(Login {
        issuer: oidc.issuer.clone(),
        client_id: oidc.client_id.clone(),
        client_secret,
        scopes,
        same_site,
        http_only,
        secure,
        session_key_pem,
        allow_unverified_email: oidc.allow_unverified_email.unwrap_or(false),
        authentication_host,
        application_session_secs,
    })
}

/// `login.oidc.scopes`, [`DEFAULT_SCOPES`] when empty: one scope an entry, `openid` among them.
fn login_scopes(scopes: &[String], d: &mut Diagnostics) -> Vec<String> {
    for (i, s) in scopes.iter().enumerate() {
        if s.is_empty() || s.contains(|c: char| c.is_ascii_whitespace() || c.is_control()) {
            d.error(
                format!("spec.login.oidc.scopes[{i}]"),
                Some(s),
                "one scope per entry, without spaces (RFC 6749 §3.3)",
            );
        }
    }
    let scopes: Vec<String> =
        if scopes.is_empty() { DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect() } else { scopes.to_vec() };
    if !scopes.iter().any(|s| s == "openid") {
        d.error("spec.login.oidc.scopes", None, "must include openid: without it the provider returns no ID token");
    }
    scopes
}

/// `login.cookie` with its defaults: (SameSite, HttpOnly, Secure). SameSite=None needs Secure.
fn cookie_flags(cookie: LoginCookieSpec, d: &mut Diagnostics) -> (SameSite, bool, bool) {
    let same_site = cookie.same_site.unwrap_or(SameSite::Lax);
    let http_only = cookie.http_only.unwrap_or(true);
    let secure = cookie.secure.unwrap_or(true);
    if same_site == SameSite::None && !secure {
        d.error(
            "spec.login.cookie.sameSite",
            Some("None"),
            "SameSite=None needs secure: true (browsers drop such cookies otherwise); use Lax or set secure",
        );
    }
    (same_site, http_only, secure)
}

/// The PEM of `login.sessionKeyRef`, when it names a Secret key holding a private key.
fn session_key(
    spec: &LoginSpec,
    namespace: &str,
    secrets: &SecretIndex<'_>,
    d: &mut Diagnostics,
) -> Option<SecretString> {
    let r = spec.session_key_ref.as_ref()?;
    let pem = read_secret(secrets, namespace, r, "spec.login.sessionKeyRef", "the session signing key", d)?;
    if looks_like_private_key_pem(pem.expose()) {
        return Some(pem);
    }
    d.error(
        "spec.login.sessionKeyRef",
        None,
        format!(
            "key {:?} of Secret {namespace}/{} is not a PEM private key; store a PKCS#8 Ed25519 or \
             ECDSA P-256 key (`openssl genpkey -algorithm ED25519`)",
            r.key, r.name
        ),
    );
    None
}

/// `login.authenticationHost`, parsed (see [`parse_authentication_host`]).
fn authentication_host(raw: Option<&str>, d: &mut Diagnostics) -> Option<String> {
    let raw = raw?;
    match parse_authentication_host(raw) {
        Ok(h) => Some(h),
        Err(e) => {
            d.error("spec.login.authenticationHost", Some(raw), e);
            None
        }
    }
}

/// `login.applicationSessionDuration` in seconds: only with an authentication host (defaulting
/// to [`DEFAULT_APPLICATION_SESSION_SECS`], capped by the identity session `session_secs`), more
/// than 0 and at most `session_secs`.
fn application_session_secs(spec: &LoginSpec, session_secs: u64, d: &mut Diagnostics) -> Option<u64> {
    const FIELD: &str = "spec.login.applicationSessionDuration";
    match (spec.application_session_duration.as_deref(), &spec.authentication_host) {
        (None, None) => None,
        (None, Some(_)) => Some(DEFAULT_APPLICATION_SESSION_SECS.min(session_secs)),
        (Some(raw), None) => {
            let why = "only applies with spec.login.authenticationHost (the lifetime of handed-off sessions)";
            d.error(FIELD, Some(raw), why);
            None
        }
        (Some(raw), Some(_)) => match parse_duration_secs(raw) {
            Ok(0) => {
                d.error(FIELD, Some(raw), "must be longer than 0s");
                None
            }
            Ok(v) if v > session_secs => {
                let why = "must not be longer than spec.sessionDuration (the identity session it is handed from)";
                d.error(FIELD, Some(raw), why);
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                d.error(FIELD, Some(raw), e);
                None
            }
        },
    }
}

/// Default `login.applicationSessionDuration`: how long an application admits a user after
/// they signed out at another application of the same authentication host.
pub const DEFAULT_APPLICATION_SESSION_SECS: u64 = 300;

/// `login.authenticationHost`: a host name (no wildcard, no IP literal) with an optional port,
/// returned lower-case without a trailing dot.
pub fn parse_authentication_host(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    if s.contains("://") || s.contains(['/', '?', '#', '@']) {
        return Err("write a host, optionally with :port, without scheme or path (auth.example.com)".into());
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(n) if n > 0 => (h, Some(n)),
            _ => return Err("the port must be a number from 1 to 65535".into()),
        },
        None => (s, None),
    };
    if host.starts_with('[') || host.parse::<Ipv4Addr>().is_ok() {
        return Err("name the authentication host by a DNS name, not an IP address".into());
    }
    let host = match super::routing::parse_host_pattern(host)? {
        crate::snapshot::HostPattern::Exact(h) => h,
        crate::snapshot::HostPattern::Wildcard(_) => {
            return Err("the authentication host is one host, not a wildcard".into());
        }
    };
    Ok(match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

/// Reads a Secret key, reporting a missing Secret or key by name (never by value).
fn read_secret(
    secrets: &SecretIndex<'_>,
    namespace: &str,
    r: &SecretKeyRef,
    field: &str,
    what: &str,
    d: &mut Diagnostics,
) -> Option<SecretString> {
    match secrets.get_str(namespace, &r.name, &r.key) {
        Some(v) if !v.is_empty() => Some(SecretString::new(v)),
        Some(_) => {
            d.error(
                field,
                None,
                format!("key {:?} of Secret {namespace}/{} is empty; it should hold {what}", r.key, r.name),
            );
            None
        }
        None if secrets.contains(namespace, &r.name) => {
            d.error_of(
                CompileErrorKind::SecretMissing,
                field,
                None,
                format!("Secret {namespace}/{} has no key {:?}; it should hold {what}", r.name, r.key),
            );
            None
        }
        None => {
            d.error_of(
                CompileErrorKind::SecretMissing,
                field,
                None,
                format!("Secret {namespace}/{} not found; create it with key {:?} holding {what}", r.name, r.key),
            );
            None
        }
    }
}

fn looks_like_private_key_pem(s: &str) -> bool {
    s.starts_with("-----BEGIN ") && s.contains("PRIVATE KEY-----") && s.trim_end().ends_with("-----")
}

/// A URL the sidecar fetches (JWKS, OIDC discovery): `https`, or `http` only on a loopback
/// host, because keys fetched in clear text over a network could be swapped by anyone on the
/// path. Reports on `field` and returns whether it is acceptable.
fn check_fetch_url(url: &str, field: &str, d: &mut Diagnostics) -> bool {
    match fetch_url_problem(url) {
        None => true,
        Some(msg) => {
            d.error(field, Some(url), msg);
            false
        }
    }
}

fn fetch_url_problem(url: &str) -> Option<&'static str> {
    let (https, rest) = if let Some(rest) = strip_prefix_ignore_case(url, "https://") {
        (true, rest)
    } else if let Some(rest) = strip_prefix_ignore_case(url, "http://") {
        (false, rest)
    } else {
        return Some("must be an https:// URL (http:// is accepted only on 127.0.0.1, ::1 or localhost)");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Some("must not carry credentials (user@host); the keys are public");
    }
    let host = host_of(authority)?;
    if host.is_empty() || host.contains(|c: char| c.is_ascii_whitespace() || c.is_control()) {
        return Some("has no valid host; write e.g. https://team.cloudflareaccess.com/cdn-cgi/access/certs");
    }
    if !https && !is_loopback_host(host) {
        return Some(
            "http:// is accepted only on a loopback host (127.0.0.1, ::1, localhost): keys fetched in clear \
             text could be replaced on the way; use https://",
        );
    }
    None
}

/// The host of `host[:port]` or `[v6]:port`; `None` (an error) for a malformed bracket or port.
fn host_of(authority: &str) -> Option<&str> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))) {
            return Some("");
        }
        return Some(host);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.contains(':') => Some(host),
        Some(_) => Some(""),
        None => Some(authority),
    }
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback())
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// The shape of a JWKS (RFC 7517 §5): an object with a non-empty `keys` array of objects that
/// each name their `kty`. Key material is checked by the sidecar, which skips keys it cannot use.
fn check_inline_jwks(json: &str) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not valid JSON ({e}); paste the issuer's JWKS document"))?;
    let keys = value
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(|k| k.as_array())
        .ok_or_else(|| "must be a JWKS: a JSON object with a \"keys\" array (RFC 7517 §5)".to_owned())?;
    if keys.is_empty() {
        return Err("the \"keys\" array is empty: no token could ever be verified".into());
    }
    for (i, k) in keys.iter().enumerate() {
        if !k.as_object().and_then(|o| o.get("kty")).is_some_and(|t| t.is_string()) {
            return Err(format!("keys[{i}] is not a JWK: every key is an object with a \"kty\" (RSA, EC or OKP)"));
        }
    }
    Ok(())
}

/// RFC 6265 §4.1.1 `cookie-name = token` (RFC 9110 §5.6.2 tchar).
fn is_cookie_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::v1alpha1::{LoginCookieSpec, OidcSpec};

    const JWKS: &str = r#"{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}"#;

    fn issuer() -> IssuerSpec {
        IssuerSpec {
            issuer: "https://team.cloudflareaccess.com".into(),
            jwks_uri: Some("https://team.cloudflareaccess.com/cdn-cgi/access/certs".into()),
            jwks: None,
            audiences: vec!["aud-tag".into()],
            algorithms: vec![],
            clock_skew: None,
        }
    }

    fn compile(spec: &IdentitySpec) -> (Identity, Diagnostics) {
        let mut d = Diagnostics::new("AccessApplication", "ns/app");
        let id = compile_identity(Some(spec), &mut d);
        (id, d)
    }

    #[test]
    fn defaults() {
        let mut d = Diagnostics::new("AccessApplication", "ns/app");
        let id = compile_identity(None, &mut d);
        assert_eq!(
            id,
            Identity {
                cookie_name: "CF_Authorization".into(),
                header_name: DEFAULT_HEADER_NAME.into(),
                issuers: vec![]
            }
        );
        let (id, d) = compile(&IdentitySpec { issuers: vec![issuer()], ..Default::default() });
        assert!(!d.has_errors(), "{:?}", d.errors());
        let iss = &id.issuers[0];
        assert_eq!(iss.algorithms, Algorithm::DEFAULT);
        assert_eq!(iss.clock_skew_secs, 30);
        assert_eq!(iss.jwks, JwksSource::Uri("https://team.cloudflareaccess.com/cdn-cgi/access/certs".into()));
    }

    #[test]
    fn accepts_good_issuers() {
        let cases: Vec<(&str, IssuerSpec)> = vec![
            ("http on 127.0.0.1", IssuerSpec { jwks_uri: Some("http://127.0.0.1:8080/certs".into()), ..issuer() }),
            ("http on 127.1.2.3", IssuerSpec { jwks_uri: Some("http://127.1.2.3/certs".into()), ..issuer() }),
            ("http on ::1", IssuerSpec { jwks_uri: Some("http://[::1]:9000/certs".into()), ..issuer() }),
            ("http on localhost", IssuerSpec { jwks_uri: Some("HTTP://LocalHost:9000".into()), ..issuer() }),
            ("inline", IssuerSpec { jwks_uri: None, jwks: Some(JWKS.into()), ..issuer() }),
            ("algs", IssuerSpec { algorithms: vec!["RS256".into(), "PS512".into(), "ES384".into()], ..issuer() }),
            ("skew", IssuerSpec { clock_skew: Some("1m".into()), ..issuer() }),
        ];
        for (desc, spec) in cases {
            let (id, d) = compile(&IdentitySpec { issuers: vec![spec], ..Default::default() });
            assert!(!d.has_errors(), "{desc}: {:?}", d.errors());
            assert_eq!(id.issuers.len(), 1, "{desc}");
        }
    }

    #[test]
    fn rejects_bad_identity_naming_the_field() {
        struct Case {
            desc: &'static str,
            spec: IdentitySpec,
            field: &'static str,
            message: &'static str,
        }
        let one = |i: IssuerSpec| IdentitySpec { issuers: vec![i], ..Default::default() };
        let cases = [
            Case {
                desc: "empty issuer",
                spec: one(IssuerSpec { issuer: " ".into(), ..issuer() }),
                field: "spec.identity.issuers[0].issuer",
                message: "must not be empty",
            },
            Case {
                desc: "duplicate issuer",
                spec: IdentitySpec { issuers: vec![issuer(), issuer()], ..Default::default() },
                field: "spec.identity.issuers[1].issuer",
                message: "listed twice",
            },
            Case {
                desc: "no key source",
                spec: one(IssuerSpec { jwks_uri: None, ..issuer() }),
                field: "spec.identity.issuers[0]",
                message: "needs jwksUri",
            },
            Case {
                desc: "both key sources",
                spec: one(IssuerSpec { jwks: Some(JWKS.into()), ..issuer() }),
                field: "spec.identity.issuers[0]",
                message: "not both",
            },
            Case {
                desc: "http on a network host",
                spec: one(IssuerSpec { jwks_uri: Some("http://idp.example.com/certs".into()), ..issuer() }),
                field: "spec.identity.issuers[0].jwksUri",
                message: "loopback",
            },
            Case {
                desc: "http on 10/8",
                spec: one(IssuerSpec { jwks_uri: Some("http://10.0.0.1/certs".into()), ..issuer() }),
                field: "spec.identity.issuers[0].jwksUri",
                message: "loopback",
            },
            Case {
                desc: "localhost lookalike",
                spec: one(IssuerSpec { jwks_uri: Some("http://localhost.evil.test/certs".into()), ..issuer() }),
                field: "spec.identity.issuers[0].jwksUri",
                message: "loopback",
            },
            Case {
                desc: "other scheme",
                spec: one(IssuerSpec { jwks_uri: Some("ftp://idp.example.com/certs".into()), ..issuer() }),
                field: "spec.identity.issuers[0].jwksUri",
                message: "https://",
            },
            Case {
                desc: "credentials in url",
                spec: one(IssuerSpec { jwks_uri: Some("https://u:p@idp.example.com/".into()), ..issuer() }),
                field: "spec.identity.issuers[0].jwksUri",
                message: "credentials",
            },
            Case {
                desc: "no host",
                spec: one(IssuerSpec { jwks_uri: Some("https:///certs".into()), ..issuer() }),
                field: "spec.identity.issuers[0].jwksUri",
                message: "no valid host",
            },
            Case {
                desc: "jwks not json",
                spec: one(IssuerSpec { jwks_uri: None, jwks: Some("{".into()), ..issuer() }),
                field: "spec.identity.issuers[0].jwks",
                message: "not valid JSON",
            },
            Case {
                desc: "jwks array",
                spec: one(IssuerSpec { jwks_uri: None, jwks: Some("[]".into()), ..issuer() }),
                field: "spec.identity.issuers[0].jwks",
                message: "\"keys\" array",
            },
            Case {
                desc: "jwks no keys",
                spec: one(IssuerSpec { jwks_uri: None, jwks: Some(r#"{"keys":[]}"#.into()), ..issuer() }),
                field: "spec.identity.issuers[0].jwks",
                message: "empty",
            },
            Case {
                desc: "jwks key without kty",
                spec: one(IssuerSpec { jwks_uri: None, jwks: Some(r#"{"keys":[{"kid":"a"}]}"#.into()), ..issuer() }),
                field: "spec.identity.issuers[0].jwks",
                message: "keys[0]",
            },
            Case {
                desc: "no audience",
                spec: one(IssuerSpec { audiences: vec![], ..issuer() }),
                field: "spec.identity.issuers[0].audiences",
                message: "AUD tag",
            },
            Case {
                desc: "empty audience",
                spec: one(IssuerSpec { audiences: vec!["".into()], ..issuer() }),
                field: "spec.identity.issuers[0].audiences[0]",
                message: "empty",
            },
            Case {
                desc: "alg none",
                spec: one(IssuerSpec { algorithms: vec!["RS256".into(), "none".into()], ..issuer() }),
                field: "spec.identity.issuers[0].algorithms[1]",
                message: "never allowed",
            },
            Case {
                desc: "alg HS256",
                spec: one(IssuerSpec { algorithms: vec!["HS256".into()], ..issuer() }),
                field: "spec.identity.issuers[0].algorithms[0]",
                message: "forged",
            },
            Case {
                desc: "alg hs512",
                spec: one(IssuerSpec { algorithms: vec!["hs512".into()], ..issuer() }),
                field: "spec.identity.issuers[0].algorithms[0]",
                message: "never allowed",
            },
            Case {
                desc: "alg unknown",
                spec: one(IssuerSpec { algorithms: vec!["RS999".into()], ..issuer() }),
                field: "spec.identity.issuers[0].algorithms[0]",
                message: "unknown algorithm",
            },
            Case {
                desc: "bad skew",
                spec: one(IssuerSpec { clock_skew: Some("30".into()), ..issuer() }),
                field: "spec.identity.issuers[0].clockSkew",
                message: "unit",
            },
            Case {
                desc: "bad cookie name",
                spec: IdentitySpec { cookie_name: Some("CF Authorization".into()), ..Default::default() },
                field: "spec.identity.cookieName",
                message: "cookie name",
            },
            Case {
                desc: "cookie name with =",
                spec: IdentitySpec { cookie_name: Some("a=b".into()), ..Default::default() },
                field: "spec.identity.cookieName",
                message: "cookie name",
            },
            Case {
                desc: "bad header name",
                spec: IdentitySpec { header_name: Some("X Jwt:".into()), ..Default::default() },
                field: "spec.identity.headerName",
                message: "header name",
            },
        ];
        for c in cases {
            let (_, d) = compile(&c.spec);
            assert!(
                d.errors().iter().any(|e| e.field == c.field && e.message.contains(c.message)),
                "{}: want {} ~ {:?}, got {:?}",
                c.desc,
                c.field,
                c.message,
                d.errors()
            );
        }
    }

    #[test]
    fn an_issuer_with_errors_is_not_compiled() {
        let (id, d) = compile(&IdentitySpec {
            issuers: vec![IssuerSpec { audiences: vec![], ..issuer() }],
            ..Default::default()
        });
        assert!(d.has_errors());
        assert!(id.issuers.is_empty());
    }

    fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("shop".into()), ..Default::default() },
            string_data: Some(data.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>()),
            ..Default::default()
        }
    }

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIB\n-----END PRIVATE KEY-----\n";

    fn login() -> LoginSpec {
        LoginSpec {
            oidc: OidcSpec {
                allow_unverified_email: None,
                issuer: "https://accounts.example.com".into(),
                client_id: "portcullis".into(),
                client_secret_ref: Some(SecretKeyRef { name: "oidc-client".into(), key: "client-secret".into() }),
                scopes: vec![],
            },
            cookie: None,
            session_key_ref: Some(SecretKeyRef { name: "session".into(), key: "key.pem".into() }),
            authentication_host: None,
            application_session_duration: None,
        }
    }

    #[test]
    fn authentication_host_is_normalised_and_gets_a_default_application_session() {
        let spec = LoginSpec { authentication_host: Some("Auth.Example.com.:8443".into()), ..login() };
        let (l, d) = compile_l(&spec, &good_secrets());
        assert!(!d.has_errors(), "{:?}", d.errors());
        let l = l.unwrap();
        assert_eq!(l.authentication_host.as_deref(), Some("auth.example.com:8443"));
        assert_eq!(l.application_session_secs, Some(DEFAULT_APPLICATION_SESSION_SECS));
        let spec = LoginSpec {
            authentication_host: Some("auth.example.com".into()),
            application_session_duration: Some("90s".into()),
            ..login()
        };
        let l = compile_l(&spec, &good_secrets()).0.unwrap();
        assert_eq!(
            (l.authentication_host.as_deref(), l.application_session_secs),
            (Some("auth.example.com"), Some(90))
        );
        // Without an authentication host nothing changes.
        let l = compile_l(&login(), &good_secrets()).0.unwrap();
        assert_eq!((l.authentication_host, l.application_session_secs), (None, None));
    }

    #[test]
    fn rejects_bad_authentication_hosts_and_durations() {
        let host = |h: &str| LoginSpec { authentication_host: Some(h.into()), ..login() };
        let cases: [(LoginSpec, &str, &str); 10] = [
            (host("https://auth.example.com"), "spec.login.authenticationHost", "without scheme"),
            (host("auth.example.com/x"), "spec.login.authenticationHost", "without scheme"),
            (host("*.example.com"), "spec.login.authenticationHost", "not a wildcard"),
            (host("10.0.0.1"), "spec.login.authenticationHost", "DNS name"),
            (host("[::1]:80"), "spec.login.authenticationHost", "DNS name"),
            (host("auth.example.com:0"), "spec.login.authenticationHost", "port"),
            (host("auth.example.com:x"), "spec.login.authenticationHost", "port"),
            (
                LoginSpec { application_session_duration: Some("1m".into()), ..login() },
                "spec.login.applicationSessionDuration",
                "only applies with",
            ),
            (
                LoginSpec { application_session_duration: Some("48h".into()), ..host("auth.example.com") },
                "spec.login.applicationSessionDuration",
                "not be longer than spec.sessionDuration",
            ),
            (
                LoginSpec { application_session_duration: Some("0s".into()), ..host("auth.example.com") },
                "spec.login.applicationSessionDuration",
                "longer than 0s",
            ),
        ];
        for (spec, field, message) in cases {
            let (l, d) = compile_l(&spec, &good_secrets());
            assert!(l.is_none(), "{spec:?}");
            assert!(
                d.errors().iter().any(|e| e.field == field && e.message.contains(message)),
                "{spec:?}: want {field} ~ {message:?}, got {:?}",
                d.errors()
            );
        }
    }

    fn compile_l(spec: &LoginSpec, secrets: &[Secret]) -> (Option<Login>, Diagnostics) {
        let index = SecretIndex::new(secrets, "default");
        let mut d = Diagnostics::new("AccessApplication", "shop/app");
        let l = compile_login(Some(spec), 86_400, "shop", &index, &mut d);
        (l, d)
    }

    fn good_secrets() -> Vec<Secret> {
        vec![secret("oidc-client", &[("client-secret", "s3cr3t-value\n")]), secret("session", &[("key.pem", PEM)])]
    }

    #[test]
    fn login_defaults_and_secrets() {
        let (l, d) = compile_l(&login(), &good_secrets());
        assert!(!d.has_errors(), "{:?}", d.errors());
        let l = l.expect("compiles");
        assert_eq!(l.scopes, ["openid", "email", "profile"]);
        assert_eq!((l.same_site, l.http_only, l.secure), (SameSite::Lax, true, true));
        assert_eq!(l.client_secret.as_ref().map(SecretString::expose), Some("s3cr3t-value"));
        assert_eq!(l.session_key_pem.as_ref().map(|p| p.expose().trim()), Some(PEM.trim()));
        let mut d = Diagnostics::new("AccessApplication", "shop/app");
        assert_eq!(compile_login(None, 86_400, "shop", &SecretIndex::new(&[], "default"), &mut d), None);
        // A public client (PKCE only) and a sidecar-generated session key are fine.
        let spec = LoginSpec {
            oidc: OidcSpec { client_secret_ref: None, issuer: "http://127.0.0.1:5556/dex".into(), ..login().oidc },
            session_key_ref: None,
            ..login()
        };
        let (l, d) = compile_l(&spec, &[]);
        assert!(!d.has_errors(), "{:?}", d.errors());
        assert!(l.is_some_and(|l| l.client_secret.is_none() && l.session_key_pem.is_none()));
    }

    #[test]
    fn rejects_bad_login_naming_the_field() {
        struct Case {
            desc: &'static str,
            spec: LoginSpec,
            secrets: Vec<Secret>,
            field: &'static str,
            message: &'static str,
        }
        let oidc = |f: fn(&mut OidcSpec)| {
            let mut l = login();
            f(&mut l.oidc);
            l
        };
        let cases = [
            Case {
                desc: "http issuer",
                spec: oidc(|o| o.issuer = "http://accounts.example.com".into()),
                secrets: good_secrets(),
                field: "spec.login.oidc.issuer",
                message: "loopback",
            },
            Case {
                desc: "empty client id",
                spec: oidc(|o| o.client_id = "".into()),
                secrets: good_secrets(),
                field: "spec.login.oidc.clientId",
                message: "must not be empty",
            },
            Case {
                desc: "missing secret",
                spec: login(),
                secrets: vec![secret("session", &[("key.pem", PEM)])],
                field: "spec.login.oidc.clientSecretRef",
                message: "Secret shop/oidc-client not found",
            },
            Case {
                desc: "missing secret key",
                spec: login(),
                secrets: vec![secret("oidc-client", &[("other", "x")]), secret("session", &[("key.pem", PEM)])],
                field: "spec.login.oidc.clientSecretRef",
                message: "has no key \"client-secret\"",
            },
            Case {
                desc: "no openid scope",
                spec: oidc(|o| o.scopes = vec!["email".into()]),
                secrets: good_secrets(),
                field: "spec.login.oidc.scopes",
                message: "openid",
            },
            Case {
                desc: "scope with space",
                spec: oidc(|o| o.scopes = vec!["openid email".into()]),
                secrets: good_secrets(),
                field: "spec.login.oidc.scopes[0]",
                message: "without spaces",
            },
            Case {
                desc: "SameSite None without secure",
                spec: LoginSpec {
                    cookie: Some(LoginCookieSpec {
                        same_site: Some(SameSite::None),
                        secure: Some(false),
                        http_only: None,
                    }),
                    ..login()
                },
                secrets: good_secrets(),
                field: "spec.login.cookie.sameSite",
                message: "secure",
            },
            Case {
                desc: "missing session key",
                spec: login(),
                secrets: vec![secret("oidc-client", &[("client-secret", "x")])],
                field: "spec.login.sessionKeyRef",
                message: "Secret shop/session not found",
            },
            Case {
                desc: "session key not PEM",
                spec: login(),
                secrets: vec![
                    secret("oidc-client", &[("client-secret", "x")]),
                    secret("session", &[("key.pem", "hunter2")]),
                ],
                field: "spec.login.sessionKeyRef",
                message: "not a PEM private key",
            },
        ];
        for c in cases {
            let (l, d) = compile_l(&c.spec, &c.secrets);
            assert!(l.is_none(), "{}", c.desc);
            assert!(
                d.errors().iter().any(|e| e.field == c.field && e.message.contains(c.message)),
                "{}: want {} ~ {:?}, got {:?}",
                c.desc,
                c.field,
                c.message,
                d.errors()
            );
            // Secret values never reach a message.
            for e in d.errors() {
                assert!(!e.to_string().contains("s3cr3t") && !e.to_string().contains("hunter2"), "{}: {e}", c.desc);
            }
        }
    }
}
