//! The Fetch rules from the browser's side (which requests are preflighted) and each finding,
//! table-style: present when its cause is, absent in a working setup.

use http::header::HeaderName;

use super::*;

fn plan(method: &str, headers: &[&str], credentials: bool) -> Plan {
    let headers: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
    Plan::new("https://example.com", "https://api.mysite.com/data", method, &headers, credentials, Some("s=1")).unwrap()
}

fn answer(status: u16, headers: &[(&str, &str)]) -> Observed {
    let mut h = HeaderMap::new();
    for (n, v) in headers {
        h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    Observed { status, headers: h, body: bytes::Bytes::new() }
}

fn codes(f: &[Finding]) -> Vec<&'static str> {
    f.iter().map(|f| f.code).collect()
}

#[test]
fn fetch_decides_which_requests_are_preflighted() {
    let cases: [(&str, &[&str], bool); 12] = [
        ("GET", &[], false),
        ("get", &[], false),
        ("POST", &["Content-Type: text/plain;charset=utf-8"], false),
        ("POST", &["Content-Type: application/json"], true),
        ("PUT", &[], true),
        ("patch", &[], true),
        ("GET", &["office"], true),
        ("GET", &["Accept: application/json"], false),
        ("GET", &["Accept-Language: en-US,en;q=0.9"], false),
        ("GET", &["Accept: a(b)"], true),
        ("GET", &["Range: bytes=0-99"], false),
        ("GET", &["Range: bytes=9-1"], true),
    ];
    for (method, headers, want) in cases {
        assert_eq!(plan(method, headers, false).needs_preflight(), want, "{method} {headers:?}");
    }
    let long = format!("Accept-Language: {}", "a".repeat(129));
    assert!(plan("GET", &[&long], false).needs_preflight(), "over 128 bytes");
    let p = plan("PUT", &["X-B: 1", "office", "Accept: x"], false);
    assert_eq!(p.unsafe_header_names(), ["office", "x-b"]);
    assert_eq!(p.preflight()["access-control-request-headers"], "office,x-b");
    assert!(p.preflight().get(COOKIE).is_none(), "a preflight never carries cookies");
    assert!(plan("GET", &[], true).actual().get(COOKIE).is_some());
    assert!(plan("GET", &[], false).actual().get(COOKIE).is_none());
}

const GOOD_PREFLIGHT: &[(&str, &str)] = &[
    ("access-control-allow-origin", "https://example.com"),
    ("access-control-allow-credentials", "true"),
    ("access-control-allow-methods", "PUT"),
    ("access-control-allow-headers", "office"),
];
const GOOD_ACTUAL: &[(&str, &str)] = &[
    ("access-control-allow-origin", "https://example.com"),
    ("access-control-allow-credentials", "true"),
    ("vary", "Origin"),
];

#[test]
fn a_working_setup_has_no_findings() {
    let p = plan("PUT", &["office"], true);
    assert_eq!(codes(&analyze(&p, Some(&answer(200, GOOD_PREFLIGHT)), Some(&answer(200, GOOD_ACTUAL)))), [""; 0]);
}

#[test]
fn each_preflight_finding_appears_when_its_cause_does() {
    let p = plan("PUT", &["office"], true);
    let with = |extra: &[(&str, &str)], without: &str| {
        let mut h: Vec<(&str, &str)> = GOOD_PREFLIGHT.iter().copied().filter(|(n, _)| *n != without).collect();
        h.extend_from_slice(extra);
        codes(&analyze(&p, Some(&answer(200, &h)), None))
    };
    assert_eq!(codes(&analyze(&p, Some(&answer(302, &[])), None)), ["preflight_redirected"]);
    let refused =
        Observed { body: bytes::Bytes::from_static(br#"{"error":"origin_not_allowed"}"#), ..answer(403, &[]) };
    let f = analyze(&p, Some(&refused), None);
    assert_eq!(codes(&f), ["preflight_refused"]);
    assert!(f[0].fix.contains("spec.cors.allowedOrigins"), "{}", f[0].fix);
    assert_eq!(with(&[], "access-control-allow-origin"), ["missing_allow_origin"]);
    assert_eq!(with(&[("access-control-allow-origin", "https://example.com")], ""), ["duplicate_allow_origin"]);
    assert_eq!(
        with(&[("access-control-allow-origin", "*")], "access-control-allow-origin"),
        ["wildcard_with_credentials"]
    );
    assert_eq!(
        with(&[("access-control-allow-origin", "https://o.test")], "access-control-allow-origin"),
        ["allow_origin_mismatch"]
    );
    assert_eq!(with(&[], "access-control-allow-credentials"), ["missing_allow_credentials"]);
    assert_eq!(
        with(&[("access-control-allow-methods", "GET")], "access-control-allow-methods"),
        ["method_not_allowed"]
    );
    assert_eq!(
        with(&[("access-control-allow-headers", "x-other")], "access-control-allow-headers"),
        ["header_not_allowed"]
    );
    // `*` covers headers and methods only without credentials.
    let anon = plan("PUT", &["office"], false);
    let star = [
        ("access-control-allow-origin", "*"),
        ("access-control-allow-methods", "*"),
        ("access-control-allow-headers", "*"),
    ];
    assert!(analyze(&anon, Some(&answer(200, &star)), None).is_empty());
}

#[test]
fn each_actual_finding_appears_when_its_cause_does() {
    let p = plan("GET", &[], true);
    let run = |status: u16, h: &[(&str, &str)]| codes(&analyze(&p, None, Some(&answer(status, h))));
    assert_eq!(run(401, &[("vary", "Origin")]), ["error_without_cors", "response_unreadable"]);
    assert_eq!(run(200, &[("vary", "Origin")]), ["missing_allow_origin", "response_unreadable"]);
    assert_eq!(run(200, &[GOOD_ACTUAL[0], GOOD_ACTUAL[1]]), ["missing_vary_origin"]);
    let mut cookie = GOOD_ACTUAL.to_vec();
    cookie.push(("set-cookie", "session=secret-value; Path=/; SameSite=Lax"));
    let f = analyze(&p, None, Some(&answer(200, &cookie)));
    assert_eq!(codes(&f), ["cookie_not_sent_cross_site"]);
    assert!(!f[0].problem.contains("secret-value"), "a cookie value is never shown");
    cookie.pop();
    cookie.push(("set-cookie", "session=v; SameSite=None; Secure"));
    assert_eq!(run(200, &cookie), [""; 0]);
    // Same site: the cookie is sent whatever its SameSite.
    let same = Plan::new("https://www.mysite.com", "https://api.mysite.com/", "GET", &[], true, None).unwrap();
    let mut h = GOOD_ACTUAL.to_vec();
    h[0] = ("access-control-allow-origin", "https://www.mysite.com");
    h.push(("set-cookie", "session=v; SameSite=Strict"));
    assert!(analyze(&same, None, Some(&answer(200, &h))).is_empty());
}

#[test]
fn bad_flags_are_usage_errors() {
    assert!(Plan::new("example.com", "https://a.test/", "GET", &[], false, None).is_err());
    assert!(Plan::new("https://example.com/", "https://a.test/", "GET", &[], false, None).is_err());
    assert!(Plan::new("https://example.com", "/relative", "GET", &[], false, None).is_err());
    assert!(Plan::new("https://example.com", "https://a.test/", "G E T", &[], false, None).is_err());
}
