//! `spec.cors` → who owns CORS ([`Cors`]), with origins parsed and normalised, methods and
//! headers validated as HTTP tokens.
//!
//! Owns: every judgement about a `cors` section (errors collected, each naming the field and the
//! fix). Must not: decide requests (the sidecar's `decide::cors` does that), do I/O, or stop at the
//! first problem.

use super::error::Diagnostics;
use crate::snapshot::{AllowList, AllowedOrigins, Cors, CorsPolicy, OriginHost, OriginPattern};
use crate::v1alpha1::CorsSpec;

/// Longest origin accepted. A DNS name has at most 253 characters (RFC 1035 §2.3.4); the rest is
/// room for a scheme and a port. The sidecar caps request origins the same way.
const MAX_ORIGIN_LEN: usize = 512;

/// The methods Fetch normalises to upper case (Fetch §2.2.1 "normalize a method"). Browsers send
/// `Access-Control-Request-Method` after this normalisation, and compare
/// `Access-Control-Allow-Methods` byte for byte, so `patch` stays `patch`.
const NORMALISED_METHODS: [&str; 6] = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"];

/// Compiles the `cors` section; problems are reported on `d` under `spec.cors.*`.
pub fn compile_cors(spec: Option<&CorsSpec>, d: &mut Diagnostics) -> Cors {
    let Some(s) = spec else {
        return Cors::Disabled;
    };
    if s.bypass_options_to_origin {
        let ignored = ignored_when_bypassing(s);
        if !ignored.is_empty() {
            d.warn(
                "spec.cors.bypassOptionsToOrigin",
                format!(
                    "with bypassOptionsToOrigin: true the app owns CORS and the sidecar sets no CORS header; \
                     {} ignored (remove them, or set bypassOptionsToOrigin: false)",
                    ignored.join(", ")
                ),
            );
        }
        return Cors::BypassToOrigin;
    }
    Cors::Owned(compile_policy(s, d))
}

fn ignored_when_bypassing(s: &CorsSpec) -> Vec<&'static str> {
    let set = [
        ("allowedOrigins", !s.allowed_origins.is_empty()),
        ("allowAllOrigins", s.allow_all_origins),
        ("allowedMethods", !s.allowed_methods.is_empty()),
        ("allowAllMethods", s.allow_all_methods),
        ("allowedHeaders", !s.allowed_headers.is_empty()),
        ("allowAllHeaders", s.allow_all_headers),
        ("allowCredentials", s.allow_credentials),
        ("maxAge", s.max_age.is_some()),
        ("exposedHeaders", !s.exposed_headers.is_empty()),
        ("allowPrivateNetwork", s.allow_private_network),
    ];
    set.into_iter().filter(|(_, on)| *on).map(|(name, _)| name).collect()
}

fn compile_policy(s: &CorsSpec, d: &mut Diagnostics) -> CorsPolicy {
    // Fetch §3.2.5 (CORS check): with credentials a `*` Access-Control-Allow-Origin fails, so the
    // combination cannot work in a browser; echoing every origin instead would hand every site
    // the user's session. Refuse it.
    if s.allow_credentials && s.allow_all_origins {
        d.error(
            "spec.cors.allowCredentials",
            Some("true"),
            "allowCredentials cannot be combined with spec.cors.allowAllOrigins: browsers refuse `*` with \
             credentials; list the origins in spec.cors.allowedOrigins, or drop allowCredentials",
        );
    }
    let origins = if s.allow_all_origins {
        if !s.allowed_origins.is_empty() {
            d.warn("spec.cors.allowedOrigins", "ignored: spec.cors.allowAllOrigins already allows every origin");
        }
        AllowedOrigins::Any
    } else {
        let list = compile_origins(&s.allowed_origins, d);
        if s.allowed_origins.is_empty() {
            d.warn(
                "spec.cors.allowedOrigins",
                "the cors section allows no origin: every preflight is refused (403) and no response carries \
                 Access-Control-Allow-Origin; list origins, or set allowAllOrigins",
            );
        }
        AllowedOrigins::List(list)
    };
    let methods = if s.allow_all_methods {
        if !s.allowed_methods.is_empty() {
            d.warn("spec.cors.allowedMethods", "ignored: spec.cors.allowAllMethods already allows every method");
        }
        AllowList::Any
    } else {
        AllowList::List(compile_tokens(
            "spec.cors.allowedMethods",
            &s.allowed_methods,
            "allowAllMethods",
            normalise_method,
            d,
        ))
    };
    let headers = if s.allow_all_headers {
        if !s.allowed_headers.is_empty() {
            d.warn("spec.cors.allowedHeaders", "ignored: spec.cors.allowAllHeaders already allows every header");
        }
        AllowList::Any
    } else {
        // Header names are case-insensitive (RFC 9110 §5.1); store them lower-case.
        AllowList::List(compile_tokens(
            "spec.cors.allowedHeaders",
            &s.allowed_headers,
            "allowAllHeaders",
            |h| h.to_ascii_lowercase(),
            d,
        ))
    };
    let exposed_headers = compile_exposed(&s.exposed_headers, s.allow_credentials, d);
    CorsPolicy {
        origins,
        methods,
        headers,
        allow_credentials: s.allow_credentials,
        max_age_secs: s.max_age,
        exposed_headers,
        allow_private_network: s.allow_private_network,
    }
}

fn compile_origins(raw: &[String], d: &mut Diagnostics) -> Vec<OriginPattern> {
    let mut out: Vec<OriginPattern> = Vec::with_capacity(raw.len());
    for (i, o) in raw.iter().enumerate() {
        let field = format!("spec.cors.allowedOrigins[{i}]");
        match parse_origin_pattern(o) {
            Ok(p) => match out.iter().position(|q| *q == p) {
                Some(j) => d.error(
                    field,
                    Some(o),
                    format!("duplicate origin: spec.cors.allowedOrigins[{j}] is the same origin ({p}); remove one"),
                ),
                None => out.push(p),
            },
            Err(e) => d.error(field, Some(o), e),
        }
    }
    out
}

/// Validates every entry of a token list (methods or headers), normalises it with `norm`, and
/// reports duplicates after normalisation.
fn compile_tokens(
    path: &str,
    raw: &[String],
    all_field: &str,
    norm: impl Fn(&str) -> String,
    d: &mut Diagnostics,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        let field = format!("{path}[{i}]");
        if t == "*" {
            d.error(field, Some(t), format!("`*` is not a name here; set spec.cors.{all_field}: true instead"));
            continue;
        }
        if let Err(e) = check_token(t) {
            d.error(field, Some(t), e);
            continue;
        }
        let n = norm(t);
        if out.contains(&n) {
            d.warn(field, format!("{n:?} is listed twice"));
            continue;
        }
        out.push(n);
    }
    out
}

fn compile_exposed(raw: &[String], credentials: bool, d: &mut Diagnostics) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (i, h) in raw.iter().enumerate() {
        let field = format!("spec.cors.exposedHeaders[{i}]");
        // Fetch §3.2.3: `*` exposes every header only for requests without credentials; with
        // credentials it names a header called `*`, which is never what was meant.
        if h == "*" && credentials {
            d.error(
                field,
                Some(h),
                "with spec.cors.allowCredentials browsers read `*` as a header named \"*\"; list the headers to expose",
            );
            continue;
        }
        if let Err(e) = check_token(h) {
            d.error(field, Some(h), e);
            continue;
        }
        if out.iter().any(|o| o.eq_ignore_ascii_case(h)) {
            d.warn(field, format!("{h:?} is listed twice"));
            continue;
        }
        out.push(h.clone());
    }
    out
}

/// Fetch §2.2.1: `delete`, `get`, `head`, `options`, `post` and `put` (any case) become upper
/// case; every other method is kept exactly as written, since methods are case-sensitive
/// (RFC 9110 §9.1).
fn normalise_method(m: &str) -> String {
    match NORMALISED_METHODS.iter().find(|n| n.eq_ignore_ascii_case(m)) {
        Some(n) => (*n).to_owned(),
        None => m.to_owned(),
    }
}

/// RFC 9110 §5.6.2: `tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_"
/// / "`" / "|" / "~" / DIGIT / ALPHA`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_token(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty name".into());
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii() || !is_tchar(*c as u8)) {
        return Err(format!(
            "{c:?} is not allowed in an HTTP token (RFC 9110 §5.6.2: letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    Ok(())
}

/// Parses one `allowedOrigins` entry: `scheme://host[:port]` or `scheme://*.domain[:port]`.
///
/// The result is normalised the way browsers serialise an origin (HTML §7.1.1 "serialization of
/// an origin", URL standard host and port parsing): lower-case scheme and host, no default port.
/// The error says what to write instead.
pub fn parse_origin_pattern(raw: &str) -> Result<OriginPattern, String> {
    if raw == "*" {
        return Err("`*` is not an origin; set spec.cors.allowAllOrigins: true to allow every origin".into());
    }
    if raw.eq_ignore_ascii_case("null") {
        // HTML §7.1.1: opaque origins serialise as `null` — sandboxed iframes, `data:` and `file:`
        // documents, cross-origin redirects. Any site can produce one (`<iframe sandbox>`), so
        // allowing `null` allows everyone while looking like it allows no one.
        return Err("`null` is the origin of sandboxed iframes, data: and file: pages and redirected requests; \
             any site can send it, so allowing it is like allowing every origin with credentials. \
             Remove it (or use allowAllOrigins for public resources)"
            .into());
    }
    if raw.len() > MAX_ORIGIN_LEN {
        return Err(format!("longer than {MAX_ORIGIN_LEN} characters"));
    }
    if raw.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err("an origin contains no spaces or control characters".into());
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err("missing scheme: write scheme://host[:port], e.g. https://example.com".into());
    };
    let scheme = parse_scheme(scheme)?;
    let authority = check_authority(rest)?;
    let (host, port) = split_port(authority)?;
    let port = port.filter(|p| Some(*p) != default_port(&scheme));
    let host = parse_origin_host(host)?;
    Ok(OriginPattern { scheme, host, port })
}

/// RFC 3986 §3.1: `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`, compared case-insensitively.
fn parse_scheme(s: &str) -> Result<String, String> {
    let mut bytes = s.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
        return Err(format!("{s:?} is not a scheme: write scheme://host[:port], e.g. https://example.com"));
    }
    Ok(s.to_ascii_lowercase())
}

/// An origin is only `scheme://host[:port]` (RFC 6454 §6.2): no path, query, fragment or userinfo.
fn check_authority(rest: &str) -> Result<&str, String> {
    if let Some(i) = rest.find(['/', '?', '#']) {
        let what = match rest.as_bytes()[i] {
            b'?' => "a query",
            b'#' => "a fragment",
            _ if i + 1 == rest.len() => "a trailing slash (browsers send the Origin header without one)",
            _ => "a path",
        };
        return Err(format!("an origin has no path, query or fragment; remove {what}: scheme://host[:port]"));
    }
    if rest.contains('@') {
        return Err("an origin has no user name or password; remove the part before '@'".into());
    }
    if rest.is_empty() {
        return Err("empty host: write scheme://host[:port], e.g. https://example.com".into());
    }
    Ok(rest)
}

/// Splits `host[:port]`, minding IPv6 literals (`[::1]:8080`).
fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let port_sep = match authority.rfind(']') {
        Some(close) => authority[close..].find(':').map(|i| close + i),
        None => authority.rfind(':'),
    };
    let Some(i) = port_sep else {
        return Ok((authority, None));
    };
    let (host, port) = (&authority[..i], &authority[i + 1..]);
    // Browsers serialise ports as plain decimal without leading zeros (URL standard §4.4);
    // anything else in the configuration is a typo.
    let canonical = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && !(port.len() > 1 && port.starts_with('0'));
    match port.parse::<u16>() {
        Ok(p) if canonical => Ok((host, Some(p))),
        _ => Err(format!("bad port {port:?}: write a number from 0 to 65535 without leading zeros")),
    }
}

/// Port a scheme implies (URL standard §4.1 "special schemes"); an origin never carries it.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        _ => None,
    }
}

fn parse_origin_host(host: &str) -> Result<OriginHost, String> {
    if host.is_empty() {
        return Err("empty host: write scheme://host[:port], e.g. https://example.com".into());
    }
    let host = host.to_ascii_lowercase();
    if let Some(suffix) = host.strip_prefix("*.") {
        check_hostname(suffix)?;
        // `*.com` would allow every site under a top-level domain. We have no public suffix
        // list, so require at least two labels after the wildcard.
        let last = suffix.rsplit('.').next().unwrap_or(suffix);
        if !suffix.contains('.') {
            return Err(format!(
                "*.{suffix} covers a public suffix (every site under .{suffix}); name a domain you own, \
                 e.g. https://*.example.{suffix}"
            ));
        }
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err("a wildcard needs a domain name, not an IP address".into());
        }
        return Ok(OriginHost::SubdomainsOf(suffix.to_owned()));
    }
    if host.contains('*') {
        return Err("a wildcard is only allowed as the whole first label: scheme://*.example.com".into());
    }
    if let Some(inner) = host.strip_prefix('[') {
        // RFC 3986 §3.2.2 IP-literal; serialised compressed and lower-case (RFC 5952), as the
        // URL standard does.
        let addr = inner
            .strip_suffix(']')
            .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
            .ok_or_else(|| format!("{host:?} is not an IPv6 literal like [::1]"))?;
        return Ok(OriginHost::Exact(format!("[{addr}]")));
    }
    check_hostname(&host)?;
    Ok(OriginHost::Exact(host))
}

/// A DNS-style host: 1–63 character labels of letters, digits, `-` and `_`, at most 253 in all
/// (RFC 1035 §2.3.4). Internationalised names must be written as browsers send them: punycode.
fn check_hostname(host: &str) -> Result<(), String> {
    if host.len() > 253 {
        return Err("host longer than 253 characters".into());
    }
    if host.ends_with('.') {
        return Err("remove the trailing dot: browsers send the host without it".into());
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("empty or over-long label in {host:?}: every label has 1 to 63 characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(format!(
                "label {label:?} may only hold letters, digits, '-' and '_' (write internationalised names in punycode, xn--…)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn spec() -> CorsSpec {
        CorsSpec { allowed_origins: vec!["https://example.com".into()], ..CorsSpec::default() }
    }

    fn compile(s: &CorsSpec) -> (Cors, Diagnostics) {
        let mut d = Diagnostics::new("AccessApplication", "shop/api");
        (compile_cors(Some(s), &mut d), d)
    }

    fn owned(s: &CorsSpec) -> CorsPolicy {
        match compile(s) {
            (Cors::Owned(p), d) if !d.has_errors() => p,
            (c, d) => panic!("expected an owned policy, got {c:?} with {:?}", d.errors()),
        }
    }

    fn exact(scheme: &str, host: &str, port: Option<u16>) -> OriginPattern {
        OriginPattern { scheme: scheme.into(), host: OriginHost::Exact(host.into()), port }
    }

    #[test]
    fn who_owns_cors() {
        let mut d = Diagnostics::new("AccessApplication", "shop/api");
        assert_eq!(compile_cors(None, &mut d), Cors::Disabled);
        let bypass = CorsSpec { bypass_options_to_origin: true, ..CorsSpec::default() };
        assert_eq!(compile_cors(Some(&bypass), &mut d), Cors::BypassToOrigin);
        assert!(d.warnings().is_empty() && !d.has_errors());
        assert!(matches!(compile(&spec()).0, Cors::Owned(_)));
    }

    #[test]
    fn bypass_warns_about_ignored_fields() {
        let s = CorsSpec { bypass_options_to_origin: true, allow_credentials: true, max_age: Some(5), ..spec() };
        let (c, d) = compile(&s);
        assert_eq!(c, Cors::BypassToOrigin);
        assert!(!d.has_errors());
        let w = &d.warnings()[0];
        assert_eq!(w.field, "spec.cors.bypassOptionsToOrigin");
        for f in ["allowedOrigins", "allowCredentials", "maxAge"] {
            assert!(w.message.contains(f), "{f} missing from {w}");
        }
    }

    #[test]
    fn normalises() {
        let s = CorsSpec {
            allowed_origins: vec![
                "HTTPS://Example.COM:443".into(),
                "http://localhost:80".into(),
                "http://127.0.0.1:3000".into(),
                "https://*.Example.com:8443".into(),
                "http://[0:0::1]:8080".into(),
                "chrome-extension://abcdef".into(),
            ],
            allowed_methods: vec!["get".into(), "Delete".into(), "patch".into(), "PURGE".into()],
            allowed_headers: vec!["X-Office".into(), "Content-Type".into()],
            exposed_headers: vec!["X-Request-Id".into()],
            max_age: Some(600),
            allow_credentials: true,
            ..CorsSpec::default()
        };
        let p = owned(&s);
        assert_eq!(
            p.origins,
            AllowedOrigins::List(vec![
                exact("https", "example.com", None),
                exact("http", "localhost", None),
                exact("http", "127.0.0.1", Some(3000)),
                OriginPattern {
                    scheme: "https".into(),
                    host: OriginHost::SubdomainsOf("example.com".into()),
                    port: Some(8443)
                },
                exact("http", "[::1]", Some(8080)),
                exact("chrome-extension", "abcdef", None),
            ])
        );
        assert_eq!(p.methods, AllowList::List(vec!["GET".into(), "DELETE".into(), "patch".into(), "PURGE".into()]));
        assert_eq!(p.headers, AllowList::List(vec!["x-office".into(), "content-type".into()]));
        assert_eq!(p.exposed_headers, vec!["X-Request-Id".to_owned()]);
        assert_eq!(p.max_age_secs, Some(600));
        assert!(p.allow_credentials);
    }

    #[test]
    fn allow_all_flags() {
        let s = CorsSpec {
            allowed_origins: vec![],
            allow_all_origins: true,
            allow_all_methods: true,
            allow_all_headers: true,
            allow_private_network: true,
            ..CorsSpec::default()
        };
        let p = owned(&s);
        assert_eq!((p.origins, p.methods, p.headers), (AllowedOrigins::Any, AllowList::Any, AllowList::Any));
        assert!(p.allow_private_network);
    }

    struct Case {
        desc: &'static str,
        spec: CorsSpec,
        /// Field of the first error.
        field: &'static str,
        /// Words the message must contain.
        says: &'static [&'static str],
    }

    fn origin(o: &str) -> CorsSpec {
        CorsSpec { allowed_origins: vec!["https://ok.example".into(), o.into()], ..CorsSpec::default() }
    }

    const O1: &str = "spec.cors.allowedOrigins[1]";

    #[test]
    fn errors() {
        let cases = [
            Case {
                desc: "credentials with every origin",
                spec: CorsSpec { allow_all_origins: true, allow_credentials: true, ..CorsSpec::default() },
                field: "spec.cors.allowCredentials",
                says: &["allowCredentials", "allowAllOrigins"],
            },
            Case { desc: "path", spec: origin("https://a.example/app"), field: O1, says: &["path"] },
            Case { desc: "trailing slash", spec: origin("https://a.example/"), field: O1, says: &["trailing slash"] },
            Case { desc: "query", spec: origin("https://a.example?x=1"), field: O1, says: &["query"] },
            Case { desc: "fragment", spec: origin("https://a.example#x"), field: O1, says: &["fragment"] },
            Case { desc: "userinfo", spec: origin("https://u:p@a.example"), field: O1, says: &["'@'"] },
            Case { desc: "missing scheme", spec: origin("a.example"), field: O1, says: &["missing scheme"] },
            Case { desc: "bad scheme", spec: origin("1http://a.example"), field: O1, says: &["not a scheme"] },
            Case { desc: "empty host", spec: origin("https://"), field: O1, says: &["empty host"] },
            Case { desc: "empty host with port", spec: origin("https://:443"), field: O1, says: &["empty host"] },
            Case { desc: "port not a number", spec: origin("https://a.example:https"), field: O1, says: &["port"] },
            Case { desc: "port too large", spec: origin("https://a.example:65536"), field: O1, says: &["port"] },
            Case { desc: "empty port", spec: origin("https://a.example:"), field: O1, says: &["port"] },
            Case { desc: "signed port", spec: origin("https://a.example:+80"), field: O1, says: &["port"] },
            Case { desc: "leading zero port", spec: origin("https://a.example:0443"), field: O1, says: &["port"] },
            Case { desc: "null", spec: origin("null"), field: O1, says: &["sandboxed", "any site"] },
            Case { desc: "star", spec: origin("*"), field: O1, says: &["allowAllOrigins"] },
            Case { desc: "public suffix", spec: origin("https://*.com"), field: O1, says: &["covers a public suffix"] },
            Case {
                desc: "wildcard in the middle",
                spec: origin("https://a.*.example"),
                field: O1,
                says: &["first label"],
            },
            Case {
                desc: "partial wildcard label",
                spec: origin("https://*a.example"),
                field: O1,
                says: &["first label"],
            },
            Case { desc: "wildcard scheme", spec: origin("*://a.example"), field: O1, says: &["not a scheme"] },
            Case { desc: "wildcard over an IP", spec: origin("http://*.0.0.1"), field: O1, says: &["IP address"] },
            Case { desc: "bare wildcard", spec: origin("https://*"), field: O1, says: &["first label"] },
            Case { desc: "bad label", spec: origin("https://a b.example"), field: O1, says: &["spaces"] },
            Case { desc: "unicode host", spec: origin("https://bücher.example"), field: O1, says: &["punycode"] },
            Case { desc: "empty label", spec: origin("https://a..example"), field: O1, says: &["label"] },
            Case { desc: "trailing dot", spec: origin("https://a.example."), field: O1, says: &["trailing dot"] },
            Case { desc: "bad IPv6", spec: origin("http://[::g]"), field: O1, says: &["IPv6"] },
            Case {
                desc: "duplicate after normalisation",
                spec: origin("HTTPS://OK.example:443"),
                field: O1,
                says: &["duplicate", "allowedOrigins[0]"],
            },
            Case {
                desc: "method not a token",
                spec: CorsSpec { allowed_methods: vec!["GET".into(), "GET POST".into()], ..spec() },
                field: "spec.cors.allowedMethods[1]",
                says: &["token"],
            },
            Case {
                desc: "empty method",
                spec: CorsSpec { allowed_methods: vec!["".into()], ..spec() },
                field: "spec.cors.allowedMethods[0]",
                says: &["empty"],
            },
            Case {
                desc: "star method",
                spec: CorsSpec { allowed_methods: vec!["*".into()], ..spec() },
                field: "spec.cors.allowedMethods[0]",
                says: &["allowAllMethods"],
            },
            Case {
                desc: "header not a token",
                spec: CorsSpec { allowed_headers: vec!["x-ok".into(), "x:bad".into()], ..spec() },
                field: "spec.cors.allowedHeaders[1]",
                says: &["':'", "token"],
            },
            Case {
                desc: "star header",
                spec: CorsSpec { allowed_headers: vec!["*".into()], ..spec() },
                field: "spec.cors.allowedHeaders[0]",
                says: &["allowAllHeaders"],
            },
            Case {
                desc: "exposed header not a token",
                spec: CorsSpec { exposed_headers: vec!["x-id, x-other".into()], ..spec() },
                field: "spec.cors.exposedHeaders[0]",
                says: &["token"],
            },
            Case {
                desc: "exposed star with credentials",
                spec: CorsSpec { exposed_headers: vec!["*".into()], allow_credentials: true, ..spec() },
                field: "spec.cors.exposedHeaders[0]",
                says: &["allowCredentials"],
            },
        ];
        for c in cases {
            let (_, d) = compile(&c.spec);
            let Some(e) = d.errors().first() else {
                panic!("{}: expected an error", c.desc);
            };
            assert_eq!(e.field, c.field, "{}: {e}", c.desc);
            for w in c.says {
                assert!(e.message.contains(w), "{}: {w:?} not in {:?}", c.desc, e.message);
            }
        }
    }

    #[test]
    fn collects_every_error() {
        let s = CorsSpec {
            allowed_origins: vec!["null".into(), "*".into(), "https://ok.example/".into()],
            allowed_methods: vec!["G T".into()],
            allowed_headers: vec!["a b".into()],
            exposed_headers: vec!["c d".into()],
            ..CorsSpec::default()
        };
        let (_, d) = compile(&s);
        let fields: Vec<_> = d.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.cors.allowedOrigins[0]",
                "spec.cors.allowedOrigins[1]",
                "spec.cors.allowedOrigins[2]",
                "spec.cors.allowedMethods[0]",
                "spec.cors.allowedHeaders[0]",
                "spec.cors.exposedHeaders[0]",
            ]
        );
        assert!(d.errors().iter().all(|e| e.value.is_some()));
    }

    #[test]
    fn warnings() {
        let cases: [(&str, CorsSpec, &str); 5] = [
            ("no origin at all", CorsSpec::default(), "spec.cors.allowedOrigins"),
            (
                "origins next to allowAllOrigins",
                CorsSpec { allow_all_origins: true, ..spec() },
                "spec.cors.allowedOrigins",
            ),
            (
                "methods next to allowAllMethods",
                CorsSpec { allow_all_methods: true, allowed_methods: vec!["PUT".into()], ..spec() },
                "spec.cors.allowedMethods",
            ),
            (
                "duplicate method after normalisation",
                CorsSpec { allowed_methods: vec!["put".into(), "PUT".into()], ..spec() },
                "spec.cors.allowedMethods[1]",
            ),
            (
                "duplicate header in another case",
                CorsSpec { allowed_headers: vec!["X-A".into(), "x-a".into()], ..spec() },
                "spec.cors.allowedHeaders[1]",
            ),
        ];
        for (desc, s, field) in cases {
            let (_, d) = compile(&s);
            assert!(!d.has_errors(), "{desc}: {:?}", d.errors());
            assert_eq!(d.warnings().first().map(|w| w.field.as_str()), Some(field), "{desc}");
        }
        let (_, d) = compile(&spec());
        assert!(d.warnings().is_empty());
    }

    proptest! {
        /// What `parse_origin_pattern` accepts prints back to a string it parses to the same pattern.
        #[test]
        fn origin_round_trips(
            scheme in "(?i:https?|ftp|app)",
            host in "(\\*\\.)?[a-zA-Z0-9]{1,10}(\\.[a-zA-Z0-9-]{1,10}){1,3}",
            port in proptest::option::of(any::<u16>()),
        ) {
            let raw = match port { Some(p) => format!("{scheme}://{host}:{p}"), None => format!("{scheme}://{host}") };
            if let Ok(p) = parse_origin_pattern(&raw) {
                let printed = p.to_string();
                prop_assert_eq!(parse_origin_pattern(&printed), Ok(p));
                prop_assert_eq!(printed.clone(), printed.to_ascii_lowercase());
            }
        }

        /// Nothing that is not a plain origin gets through, whatever is appended.
        #[test]
        fn origin_rejects_extra_parts(tail in "[/?#@][ -~]{0,10}") {
            let raw = format!("https://example.com{tail}");
            prop_assert!(parse_origin_pattern(&raw).is_err());
        }
    }
}
