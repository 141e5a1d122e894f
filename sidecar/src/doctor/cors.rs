//! `doctor cors`, the pure half: what a browser sends for a page's cross-origin request (Fetch
//! §3.2, "CORS protocol": the preflight only when the request is not simple, §2.2.2 exactly)
//! and what it makes of the answers (§4.8 CORS-preflight fetch, §4.10 CORS check), as findings
//! naming the AccessApplication field to fix.
//!
//! Owns the Fetch rules from the browser's side and the findings' wording. Must not do I/O (the
//! runner sends the requests) and must never print a cookie value.

use http::header::{
    HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, COOKIE, ORIGIN, SET_COOKIE, VARY,
};
use http::{HeaderMap, Method, Uri};
use serde::Serialize;

/// What the page does: `fetch(url, {method, headers, credentials})` from `origin`.
#[derive(Clone, Debug)]
pub struct Plan {
    pub origin: String,
    pub url: Uri,
    /// Normalised as Fetch does (§2.2.1: DELETE, GET, HEAD, OPTIONS, POST, PUT upper-cased).
    pub method: Method,
    /// Lower-case names with the value the page sets.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `credentials: "include"`.
    pub credentials: bool,
    /// The `Cookie` the browser holds for the URL (sent with credentials only).
    pub cookie: Option<HeaderValue>,
}

/// Why a plan cannot be made (usage error).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("--origin {0:?} is not scheme://host[:port] (e.g. https://example.com)")]
    Origin(String),
    #[error("--url {0:?} is not an absolute http(s) URL")]
    Url(String),
    #[error("--method {0:?} is not an HTTP method")]
    Method(String),
    #[error("--header {0:?} is not `Name` or `Name: value`")]
    Header(String),
    #[error("--cookie is not a valid header value")]
    Cookie,
}

/// A header the page sets without saying its value gets this one.
const DEFAULT_VALUE: &str = "doctor";

// === impl Plan ===

impl Plan {
    pub fn new(
        origin: &str,
        url: &str,
        method: &str,
        headers: &[String],
        credentials: bool,
        cookie: Option<&str>,
    ) -> Result<Self, PlanError> {
        let o: Uri = origin.parse().map_err(|_| PlanError::Origin(origin.to_owned()))?;
        if o.authority().is_none() || o.path() != "/" || o.query().is_some() || origin.ends_with('/') {
            return Err(PlanError::Origin(origin.to_owned()));
        }
        let u: Uri = url.parse().map_err(|_| PlanError::Url(url.to_owned()))?;
        if u.authority().is_none() || !matches!(u.scheme_str(), Some("http" | "https")) {
            return Err(PlanError::Url(url.to_owned()));
        }
        let upper = method.to_ascii_uppercase();
        let normalised = if ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"].contains(&upper.as_str()) {
            upper
        } else {
            method.to_owned()
        };
        let method = Method::from_bytes(normalised.as_bytes()).map_err(|_| PlanError::Method(method.to_owned()))?;
        let mut pairs = Vec::new();
        for h in headers {
            let (name, value) = h.split_once(':').map_or((h.as_str(), DEFAULT_VALUE), |(n, v)| (n, v.trim()));
            let bad = || PlanError::Header(h.clone());
            let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
            pairs.push((name, HeaderValue::from_str(value).map_err(|_| bad())?));
        }
        let cookie = cookie.map(HeaderValue::from_str).transpose().map_err(|_| PlanError::Cookie)?;
        Ok(Self { origin: origin.to_owned(), url: u, method, headers: pairs, credentials, cookie })
    }

    /// Fetch §3.2.5 / §4.1 main fetch: a preflight is needed when the method is not
    /// CORS-safelisted or some header is not a CORS-safelisted request-header.
    pub fn needs_preflight(&self) -> bool {
        !is_safelisted_method(&self.method) || !self.unsafe_header_names().is_empty()
    }

    /// Fetch §2.2.2 "CORS-unsafe request-header names": names of headers that are not
    /// safelisted, plus every safelisted one when their values total more than 1024 bytes;
    /// lower-case, sorted, without duplicates.
    pub fn unsafe_header_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut safelisted_bytes = 0;
        for (name, value) in &self.headers {
            if is_safelisted_header(name, value) {
                safelisted_bytes += value.len();
            } else {
                names.push(name.as_str().to_owned());
            }
        }
        if safelisted_bytes > 1024 {
            names.extend(self.headers.iter().map(|(n, _)| n.as_str().to_owned()));
        }
        names.sort();
        names.dedup();
        names
    }

    /// The preflight a browser sends (Fetch §4.8): no credentials, ever.
    pub fn preflight(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, value(&self.origin));
        h.insert(ACCESS_CONTROL_REQUEST_METHOD, value(self.method.as_str()));
        let names = self.unsafe_header_names();
        if !names.is_empty() {
            h.insert(ACCESS_CONTROL_REQUEST_HEADERS, value(&names.join(",")));
        }
        h.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        h.insert("sec-fetch-mode", HeaderValue::from_static("cors"));
        h
    }

    /// The actual request's headers: the page's, `Origin`, and the cookie with credentials.
    pub fn actual(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in &self.headers {
            h.append(n.clone(), v.clone());
        }
        h.insert(ORIGIN, value(&self.origin));
        h.insert("sec-fetch-mode", HeaderValue::from_static("cors"));
        if let (true, Some(c)) = (self.credentials, &self.cookie) {
            h.insert(COOKIE, c.clone());
        }
        h
    }

    /// Whether the page and the URL are on different sites (cookies with `SameSite` Lax or
    /// Strict are then not sent). Approximates the registrable domain by the last two labels.
    pub fn cross_site(&self) -> bool {
        let site = |host: &str| {
            let labels: Vec<&str> = host.rsplit('.').take(2).collect();
            labels.join(".").to_ascii_lowercase()
        };
        let origin_host = self.origin.parse::<Uri>().ok().and_then(|u| u.host().map(site));
        origin_host != self.url.host().map(site)
    }
}

fn value(s: &str) -> HeaderValue {
    // Only called with an origin and a method that `Plan::new` parsed, and header names:
    // all valid header values; an empty value is the harmless fallback.
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Fetch §2.2.1: GET, HEAD and POST.
pub fn is_safelisted_method(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::POST)
}

/// Fetch §2.2.2 "CORS-safelisted request-header".
pub fn is_safelisted_header(name: &HeaderName, value: &HeaderValue) -> bool {
    let v = value.as_bytes();
    if v.len() > 128 {
        return false;
    }
    match name.as_str() {
        "accept" => !v.iter().any(|b| is_unsafe_byte(*b)),
        "accept-language" | "content-language" => v.iter().all(|b| b.is_ascii_alphanumeric() || b" *,-.;=".contains(b)),
        "content-type" => {
            if v.iter().any(|b| is_unsafe_byte(*b)) {
                return false;
            }
            // The MIME type's essence (type/subtype, before parameters), ASCII case-insensitive.
            let essence = std::str::from_utf8(v).ok().and_then(|s| s.split(';').next()).map(str::trim);
            essence.is_some_and(|e| {
                ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"]
                    .iter()
                    .any(|ok| e.eq_ignore_ascii_case(ok))
            })
        }
        "range" => is_simple_range(v),
        _ => false,
    }
}

/// Fetch §2.2.2 "CORS-unsafe request-header byte".
fn is_unsafe_byte(b: u8) -> bool {
    (b < 0x20 && b != 0x09) || b == 0x7f || b"\"():<>?@[\\]{}".contains(&b)
}

/// Fetch "simple range header value": `bytes=` start `-` [end], digits only, start ≤ end.
fn is_simple_range(v: &[u8]) -> bool {
    let Some(rest) = v.strip_prefix(b"bytes=") else { return false };
    let Some(dash) = rest.iter().position(|b| *b == b'-') else { return false };
    let (start, end) = (&rest[..dash], &rest[dash + 1..]);
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    let num = |s: &[u8]| std::str::from_utf8(s).ok().and_then(|s| s.parse::<u64>().ok());
    digits(start) && (end.is_empty() || (digits(end) && num(start) <= num(end)))
}

/// One answer as the browser saw it.
#[derive(Clone, Debug)]
pub struct Observed {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

/// A problem a browser would hit, with the fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable code (docs/explain.md lists them).
    pub code: &'static str,
    /// `preflight` or `actual`.
    pub step: &'static str,
    pub problem: String,
    pub fix: String,
}

/// Every problem in the answers to `plan`. `preflight` is `None` when none was needed.
pub fn analyze(plan: &Plan, preflight: Option<&Observed>, actual: Option<&Observed>) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(p) = preflight {
        analyze_preflight(plan, p, &mut out);
        if !out.is_empty() {
            // The browser stops at a failed preflight: the actual request is never sent.
            return out;
        }
    }
    if let Some(a) = actual {
        analyze_actual(plan, a, &mut out);
    }
    out
}

fn finding(code: &'static str, step: &'static str, problem: String, fix: impl Into<String>) -> Finding {
    Finding { code, step, problem, fix: fix.into() }
}

fn analyze_preflight(plan: &Plan, p: &Observed, out: &mut Vec<Finding>) {
    const STEP: &str = "preflight";
    if (300..400).contains(&p.status) {
        out.push(finding(
            "preflight_redirected",
            STEP,
            format!("the preflight was answered with a redirect ({}); browsers fail a redirected preflight", p.status),
            "answer preflights on this URL: add a `cors` section to the AccessApplication whose spec.domains cover it \
             (the sidecar then answers them), or make the app answer OPTIONS without redirecting",
        ));
        return;
    }
    if !(200..300).contains(&p.status) {
        let reason = serde_json::from_slice::<serde_json::Value>(&p.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
        let fix = match reason.as_deref() {
            Some("cors_not_configured") => format!(
                "add spec.cors with allowedOrigins: [\"{}\"] (or set spec.cors.bypassOptionsToOrigin to let the app answer)",
                plan.origin
            ),
            Some("origin_not_allowed") => format!("add \"{}\" to spec.cors.allowedOrigins", plan.origin),
            Some("method_not_allowed") => format!("add {} to spec.cors.allowedMethods", plan.method),
            Some("header_not_allowed") => {
                format!("add {} to spec.cors.allowedHeaders", plan.unsafe_header_names().join(", "))
            }
            Some("private_network_not_allowed") => "set spec.cors.allowPrivateNetwork: true".to_owned(),
            _ => format!(
                "make the preflight succeed: spec.cors.allowedOrigins must hold \"{}\", spec.cors.allowedMethods {}{}",
                plan.origin,
                plan.method,
                headers_clause(plan)
            ),
        };
        let why = reason.map(|r| format!(" ({r})")).unwrap_or_default();
        out.push(finding("preflight_refused", STEP, format!("the preflight was refused with {}{why}", p.status), fix));
        return;
    }
    if !cors_check(plan, p, STEP, out) {
        return;
    }
    // Fetch §4.8 steps 7.5–7.8: the method and every unsafe header must be allowed.
    let wildcard_ok = !plan.credentials;
    let methods = list(&p.headers, &ACCESS_CONTROL_ALLOW_METHODS);
    let method_ok = is_safelisted_method(&plan.method)
        || methods.iter().any(|m| m == plan.method.as_str())
        || (wildcard_ok && methods.iter().any(|m| m == "*"));
    if !method_ok {
        out.push(finding(
            "method_not_allowed",
            STEP,
            format!(
                "the preflight answer does not allow method {} (Access-Control-Allow-Methods: {})",
                plan.method,
                methods.join(", ")
            ),
            format!("add {} to spec.cors.allowedMethods", plan.method),
        ));
    }
    let allowed: Vec<String> =
        list(&p.headers, &ACCESS_CONTROL_ALLOW_HEADERS).iter().map(|h| h.to_ascii_lowercase()).collect();
    let wildcard = wildcard_ok && allowed.iter().any(|h| h == "*");
    for name in plan.unsafe_header_names() {
        // `*` never covers Authorization (Fetch §4.8 step 7.7).
        let ok = allowed.contains(&name) || (wildcard && name != "authorization");
        if !ok {
            out.push(finding(
                "header_not_allowed",
                STEP,
                format!("the preflight answer does not allow request header {name}"),
                format!("add {name} to spec.cors.allowedHeaders"),
            ));
        }
    }
}

fn headers_clause(plan: &Plan) -> String {
    let names = plan.unsafe_header_names();
    if names.is_empty() {
        String::new()
    } else {
        format!(" and spec.cors.allowedHeaders {}", names.join(", "))
    }
}

/// Fetch §4.10 CORS check. Returns whether it passed.
fn cors_check(plan: &Plan, r: &Observed, step: &'static str, out: &mut Vec<Finding>) -> bool {
    let values: Vec<&HeaderValue> = r.headers.get_all(ACCESS_CONTROL_ALLOW_ORIGIN).iter().collect();
    let several = values.len() > 1 || values.first().is_some_and(|v| v.as_bytes().contains(&b','));
    if values.is_empty() {
        let (code, problem) = if matches!(r.status, 401 | 403) {
            (
                "error_without_cors",
                format!(
                    "the {} answer carries no Access-Control-Allow-Origin: the page sees a network error, not the {}",
                    r.status, r.status
                ),
            )
        } else {
            ("missing_allow_origin", format!("the answer ({}) carries no Access-Control-Allow-Origin", r.status))
        };
        out.push(finding(
            code,
            step,
            problem,
            format!(
                "add \"{}\" to spec.cors.allowedOrigins (and leave spec.cors.bypassOptionsToOrigin unset, so the sidecar \
                 sets CORS headers on every answer, its own 401/403 included)",
                plan.origin
            ),
        ));
        return false;
    }
    if several {
        out.push(finding(
            "duplicate_allow_origin",
            step,
            format!("the answer carries Access-Control-Allow-Origin more than once ({} values)", values.len().max(2)),
            "let one party set CORS headers: with spec.cors (without bypassOptionsToOrigin) the sidecar replaces the \
             app's; or remove them from the app (or a proxy in front) that adds them again",
        ));
        return false;
    }
    let got = values[0].as_bytes();
    if got == b"*" && plan.credentials {
        out.push(finding(
            "wildcard_with_credentials",
            step,
            "the answer allows origin `*`, which browsers refuse for a request with credentials".to_owned(),
            format!(
                "replace spec.cors.allowAllOrigins with spec.cors.allowedOrigins: [\"{}\"] (credentials need the origin itself)",
                plan.origin
            ),
        ));
        return false;
    }
    if got != b"*" && got != plan.origin.as_bytes() {
        out.push(finding(
            "allow_origin_mismatch",
            step,
            format!(
                "Access-Control-Allow-Origin is {:?}, not the page's origin {:?}",
                String::from_utf8_lossy(got),
                plan.origin
            ),
            format!("add \"{}\" to spec.cors.allowedOrigins, and stop the app from setting its own value", plan.origin),
        ));
        return false;
    }
    if plan.credentials && r.headers.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none_or(|v| v != "true") {
        out.push(finding(
            "missing_allow_credentials",
            step,
            "the page sends credentials but the answer lacks Access-Control-Allow-Credentials: true".to_owned(),
            "set spec.cors.allowCredentials: true",
        ));
        return false;
    }
    true
}

fn analyze_actual(plan: &Plan, a: &Observed, out: &mut Vec<Finding>) {
    const STEP: &str = "actual";
    let readable = cors_check(plan, a, STEP, out);
    if !readable {
        out.push(finding(
            "response_unreadable",
            STEP,
            format!("the page cannot read the {} answer: fetch() rejects with a TypeError", a.status),
            "fix the finding above; the browser console shows only a generic CORS error",
        ));
    }
    let acao = a.headers.get(ACCESS_CONTROL_ALLOW_ORIGIN);
    let varies_by_origin = a
        .headers
        .get_all(VARY)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("origin") || t.trim() == "*");
    // An answer echoing the page's origin varies by Origin; one that fails the CORS check is
    // already reported.
    if readable && acao.is_some_and(|v| v != "*") && !varies_by_origin {
        out.push(finding(
            "missing_vary_origin",
            STEP,
            "the answer depends on Origin but lacks Vary: Origin; a cache may serve it to another origin".to_owned(),
            "let the sidecar own CORS (spec.cors without bypassOptionsToOrigin), which merges Vary: Origin, or add it in the app",
        ));
    }
    if plan.credentials && plan.cross_site() {
        for cookie in a.headers.get_all(SET_COOKIE) {
            if let Some(f) = cookie_finding(cookie) {
                out.push(f);
            }
        }
    }
}

/// A `Set-Cookie` that a browser will not send back from a page on another site.
fn cookie_finding(v: &HeaderValue) -> Option<Finding> {
    let text = v.to_str().ok()?;
    let mut parts = text.split(';');
    // The name only: the value may be a session token.
    let name = parts.next()?.split('=').next()?.trim().to_owned();
    let mut same_site = None;
    let mut secure = false;
    for attr in parts {
        let (k, val) = attr.split_once('=').map_or((attr.trim(), ""), |(k, v)| (k.trim(), v.trim()));
        if k.eq_ignore_ascii_case("samesite") {
            same_site = Some(val.to_ascii_lowercase());
        } else if k.eq_ignore_ascii_case("secure") {
            secure = true;
        }
    }
    let problem = match same_site.as_deref() {
        Some("none") if secure => return None,
        Some("none") => format!("cookie {name} has SameSite=None without Secure: browsers reject it"),
        Some(s) => format!("cookie {name} has SameSite={s}: browsers do not send it from a page on another site"),
        None => format!(
            "cookie {name} has no SameSite (browsers default to Lax): it is not sent from a page on another site"
        ),
    };
    Some(finding(
        "cookie_not_sent_cross_site",
        "actual",
        problem,
        "set spec.login.cookie.sameSite: None and spec.login.cookie.secure: true (served over https), or serve the page \
         and the API on the same site; browsers that block third-party cookies still will not send it (see README)",
    ))
}

/// The elements of a comma-separated list header (RFC 9110 §5.6.1), over every line.
fn list(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests;
