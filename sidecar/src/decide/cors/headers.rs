//! One small type per CORS response header, rendered to a `HeaderValue` once per config
//! (tower-http's layout), plus the list grammar of the request headers and the `Vary` merge.
//!
//! Owns: `Access-Control-Allow-Methods`, `-Allow-Headers`, `-Expose-Headers`, `-Max-Age` and
//! `Vary`. Must not: allocate on the request path except to echo a multi-line
//! `Access-Control-Request-Headers` or to merge into an app's `Vary`.

use http::header::{GetAll, VARY};
use http::{HeaderMap, HeaderValue};

use super::CorsConfigError;

/// `Vary` on every response of an application whose CORS the sidecar owns: the answer depends
/// on the request's `Origin` (Fetch §3.2.3 "CORS protocol and HTTP caches").
pub(super) const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");

/// `Vary` on an answered preflight (api.md: the three request headers it depends on).
pub const PREFLIGHT_VARY: HeaderValue =
    HeaderValue::from_static("Origin, Access-Control-Request-Method, Access-Control-Request-Headers");

/// Methods a preflight may always ask for (Fetch §2.2.1 "CORS-safelisted method"); Fetch §4.8
/// step 7.6 accepts them whatever `Access-Control-Allow-Methods` says.
const SAFELISTED_METHODS: [&[u8]; 3] = [b"GET", b"HEAD", b"POST"];

/// Answered when no method is configured: a preflight can then only ask for a safelisted one.
const SAFELISTED_RENDERED: HeaderValue = HeaderValue::from_static("GET, HEAD, POST");

/// RFC 9110 §5.6.2: `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §5.6.2: `token = 1*tchar`.
pub(super) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// The elements of a comma-separated list spread over any number of field lines (RFC 9110
/// §5.3, §5.6.1): optional whitespace around each element removed, empty elements skipped.
pub(super) fn list_elements<'a>(lines: GetAll<'a, HeaderValue>) -> impl Iterator<Item = &'a [u8]> + 'a {
    lines.into_iter().flat_map(|v| v.as_bytes().split(|&b| b == b',')).map(trim_ows).filter(|e| !e.is_empty())
}

/// RFC 9110 §5.6.3: `OWS = *( SP / HTAB )`.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `a, b, c`; `None` for an empty list.
fn render(items: &[String], field: &'static str) -> Result<Option<HeaderValue>, CorsConfigError> {
    if items.is_empty() {
        return Ok(None);
    }
    if let Some(bad) = items.iter().find(|i| !is_token(i.as_bytes())) {
        return Err(CorsConfigError::Token { field, value: bad.clone() });
    }
    HeaderValue::from_str(&items.join(", "))
        .map(Some)
        .map_err(|_| CorsConfigError::Token { field, value: items.join(", ") })
}

/// `Access-Control-Allow-Methods`.
#[derive(Debug)]
pub(super) enum AllowMethods {
    /// `allowAllMethods`: echo the requested method.
    Any,
    /// Fetch-normalised names, compared byte for byte as browsers do (Fetch §4.8 step 7.6).
    List { allowed: Box<[Box<[u8]>]>, rendered: HeaderValue },
}

// === impl AllowMethods ===

impl AllowMethods {
    pub(super) fn new(list: &portcullis_crds::snapshot::AllowList) -> Result<Self, CorsConfigError> {
        use portcullis_crds::snapshot::AllowList;
        match list {
            AllowList::Any => Ok(Self::Any),
            AllowList::List(l) => Ok(Self::List {
                allowed: l.iter().map(|m| m.as_bytes().into()).collect(),
                rendered: render(l, "methods")?.unwrap_or(SAFELISTED_RENDERED),
            }),
        }
    }

    /// `method` is a token already.
    pub(super) fn allows(&self, method: &[u8]) -> bool {
        match self {
            Self::Any => true,
            Self::List { allowed, .. } => {
                SAFELISTED_METHODS.contains(&method) || allowed.iter().any(|m| **m == *method)
            }
        }
    }

    pub(super) fn to_header(&self, requested: &HeaderValue) -> HeaderValue {
        match self {
            Self::Any => requested.clone(),
            Self::List { rendered, .. } => rendered.clone(),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Self::Any => "every method (allowAllMethods)".to_owned(),
            Self::List { rendered, .. } => {
                format!("{} (GET, HEAD and POST always)", String::from_utf8_lossy(rendered.as_bytes()))
            }
        }
    }
}

/// `Access-Control-Allow-Headers`.
#[derive(Debug)]
pub(super) enum AllowHeaders {
    /// `allowAllHeaders`: echo what was asked. Not `*`: Fetch §3.2.3 says `*` never covers
    /// `Authorization`, and it means nothing with credentials.
    Any,
    /// Lower-case names; `rendered` is `None` when the list is empty.
    List { allowed: Box<[Box<[u8]>]>, rendered: Option<HeaderValue> },
}

// === impl AllowHeaders ===

impl AllowHeaders {
    pub(super) fn new(list: &portcullis_crds::snapshot::AllowList) -> Result<Self, CorsConfigError> {
        use portcullis_crds::snapshot::AllowList;
        match list {
            AllowList::Any => Ok(Self::Any),
            AllowList::List(l) => {
                let lower: Vec<String> = l.iter().map(|h| h.to_ascii_lowercase()).collect();
                Ok(Self::List {
                    allowed: lower.iter().map(|h| h.as_bytes().into()).collect(),
                    rendered: render(&lower, "headers")?,
                })
            }
        }
    }

    /// `name` is a token already; header names are case-insensitive (RFC 9110 §5.1). A linear
    /// scan: allow lists are short, and it needs no lower-cased copy of `name`.
    pub(super) fn allows(&self, name: &[u8]) -> bool {
        match self {
            Self::Any => true,
            Self::List { allowed, .. } => allowed.iter().any(|h| h.eq_ignore_ascii_case(name)),
        }
    }

    /// The header for an allowed preflight; `asked` says whether it named any header.
    pub(super) fn to_header(&self, requested: GetAll<'_, HeaderValue>, asked: bool) -> Option<HeaderValue> {
        match self {
            Self::List { rendered, .. } => rendered.clone(),
            Self::Any if !asked => None,
            Self::Any => {
                let mut lines = requested.iter();
                let first = lines.next()?;
                match lines.next() {
                    // One line (what browsers send): share its bytes.
                    None => Some(first.clone()),
                    // Several lines: join them, one allocation on a path browsers do not take.
                    Some(_) => {
                        let joined: Vec<&[u8]> = requested.iter().map(HeaderValue::as_bytes).collect();
                        HeaderValue::from_bytes(&joined.join(&b", "[..])).ok()
                    }
                }
            }
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Self::Any => "every header (allowAllHeaders)".to_owned(),
            Self::List { rendered: None, .. } => "no header".to_owned(),
            Self::List { rendered: Some(r), .. } => String::from_utf8_lossy(r.as_bytes()).into_owned(),
        }
    }
}

/// `Access-Control-Expose-Headers`, rendered once; `None` when nothing is exposed.
pub(super) fn expose_headers(list: &[String]) -> Result<Option<HeaderValue>, CorsConfigError> {
    render(list, "exposedHeaders")
}

/// `Access-Control-Max-Age`, rendered once (Fetch §3.2.3: delta-seconds).
pub(super) fn max_age(secs: Option<u32>) -> Option<HeaderValue> {
    secs.map(HeaderValue::from)
}

/// Adds `Origin` to `Vary` exactly once (RFC 9110 §12.5.5): kept as is when a line already holds
/// `*` (everything varies) or `origin` in any case; otherwise merged into one line, keeping the
/// app's tokens, so readers that look at the first line only still see it.
pub(super) fn merge_vary_origin(headers: &mut HeaderMap) {
    let mut elements = 0;
    for e in list_elements(headers.get_all(VARY)) {
        if e == b"*" || e.eq_ignore_ascii_case(b"origin") {
            return;
        }
        elements += 1;
    }
    if elements == 0 {
        // No `Vary`, or only empty lines: the common case, no allocation.
        headers.insert(VARY, VARY_ORIGIN);
        return;
    }
    let mut merged: Vec<&[u8]> = list_elements(headers.get_all(VARY)).collect();
    merged.push(b"Origin");
    match HeaderValue::from_bytes(&merged.join(&b", "[..])) {
        Ok(v) => {
            headers.insert(VARY, v);
        }
        // Cannot happen (the bytes came from valid values), but appending is still correct.
        Err(_) => {
            headers.append(VARY, VARY_ORIGIN);
        }
    }
}
