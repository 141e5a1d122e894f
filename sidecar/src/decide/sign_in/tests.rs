//! Sign-in decisions: navigation detection, return-URL checks (WHATWG parsing), the URLs and
//! cookies of the flow, and the callback's checks.

use super::*;
use portcullis_crds::manifests::Resources;
use proptest::prelude::*;

const APPS: &str = r#"
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: { name: api, namespace: shop }
spec:
  domains: [api.mysite.com, "*.apps.mysite.com", "www.mysite.com/app"]
  policies: [ { name: all, action: Allow, include: [ { everyone: {} } ] } ]
---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: { name: other, namespace: shop }
spec:
  domains: [other.mysite.com, "www.mysite.com/other"]
  policies: [ { name: all, action: Allow, include: [ { everyone: {} } ] } ]
"#;

fn router() -> (Router, usize) {
    let mut r = Resources::default();
    r.add_yaml("t.yaml", APPS).unwrap();
    let compiled = r.compile("default").unwrap();
    let apps = &compiled.snapshot.applications;
    let index = apps.iter().position(|a| a.id.name == "api").unwrap();
    (Router::new(apps), index)
}

fn base() -> Url {
    request_base("https", "api.mysite.com").unwrap()
}

#[test]
fn return_urls() {
    let (router, app) = router();
    struct Case {
        rd: &'static str,
        want: Result<&'static str, ReturnUrlError>,
    }
    let cases = [
        Case { rd: "https://api.mysite.com/data?x=1", want: Ok("https://api.mysite.com/data?x=1") },
        Case { rd: "/data", want: Ok("https://api.mysite.com/data") },
        Case { rd: "https://API.MYSITE.COM./", want: Ok("https://api.mysite.com./") },
        Case { rd: "https://api.mysite.com:8443/", want: Ok("https://api.mysite.com:8443/") },
        Case { rd: "https://x.apps.mysite.com/", want: Ok("https://x.apps.mysite.com/") },
        Case { rd: "https://www.mysite.com/app/x", want: Ok("https://www.mysite.com/app/x") },
        // Another application's path on a shared host.
        Case { rd: "https://www.mysite.com/other", want: Err(ReturnUrlError::OffDomain) },
        Case { rd: "https://www.mysite.com/app/../other", want: Err(ReturnUrlError::OffDomain) },
        Case { rd: "https://evil.test/", want: Err(ReturnUrlError::OffDomain) },
        // WHATWG: a backslash is a slash in special schemes, so this is //evil.test/.
        Case { rd: "/\\evil.test/", want: Err(ReturnUrlError::OffDomain) },
        Case { rd: "//evil.test/", want: Err(ReturnUrlError::OffDomain) },
        Case { rd: "\\\\evil.test", want: Err(ReturnUrlError::OffDomain) },
        Case { rd: "/\t/evil.test/", want: Err(ReturnUrlError::OffDomain) },
        // WHATWG: same scheme as the base without slashes is a relative path, as a browser reads it.
        Case { rd: "https:evil.test", want: Ok("https://api.mysite.com/evil.test") },
        Case { rd: "http:evil.test", want: Err(ReturnUrlError::OffDomain) },
        Case { rd: "https://api.mysite.com.evil.test/", want: Err(ReturnUrlError::OffDomain) },
        Case { rd: "https://api.mysite.com@evil.test/", want: Err(ReturnUrlError::Credentials) },
        Case { rd: "https://user@api.mysite.com/", want: Err(ReturnUrlError::Credentials) },
        Case { rd: "javascript:alert(1)", want: Err(ReturnUrlError::NotAbsolute) },
        Case { rd: "data:text/html,x", want: Err(ReturnUrlError::NotAbsolute) },
        Case { rd: "https://[::1/", want: Err(ReturnUrlError::NotAbsolute) },
    ];
    for c in cases {
        let got = return_url(c.rd, &base(), &router, app).map(String::from);
        assert_eq!(got.as_deref().map_err(|e| *e), c.want, "rd {:?}", c.rd);
    }
    let long = format!("/{}", "a".repeat(MAX_PARAM_BYTES));
    assert_eq!(return_url(&long, &base(), &router, app), Err(ReturnUrlError::TooLong));
}

proptest! {
    /// Whatever `rd` is, an accepted one is http(s) and routes to this application.
    #[test]
    fn accepted_return_urls_route_to_the_application(rd in "[a-zA-Z0-9:/\\\\.@%?#\\t -]{0,40}") {
        let (router, app) = router();
        if let Ok(url) = return_url(&rd, &base(), &router, app) {
            prop_assert!(matches!(url.scheme(), "http" | "https"));
            let host = url.host_str().unwrap().trim_end_matches('.').to_ascii_lowercase();
            let path = portcullis_crds::paths::canonical_path(url.path()).unwrap().matching;
            prop_assert_eq!(router.route(&host, &path), Some(app));
        }
    }
}

#[test]
fn navigations() {
    let h = |pairs: &[(&'static str, &'static str)]| {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    };
    let browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let cases = [
        (Method::GET, h(&[("sec-fetch-mode", "navigate")]), true),
        (Method::GET, h(&[("sec-fetch-mode", "cors"), ("accept", browser_accept)]), false),
        (Method::GET, h(&[("sec-fetch-mode", "no-cors")]), false),
        (Method::GET, h(&[("accept", browser_accept)]), true),
        (Method::HEAD, h(&[("accept", "text/html")]), true),
        (Method::GET, h(&[("accept", "application/json")]), false),
        (Method::GET, h(&[("accept", "*/*")]), false),
        (Method::GET, h(&[("accept", "application/json, text/html;q=0.5")]), false),
        (Method::GET, h(&[("accept", "text/html;q=0")]), false),
        (Method::GET, h(&[]), false),
        (Method::POST, h(&[("sec-fetch-mode", "navigate")]), false),
    ];
    for (method, headers, want) in cases {
        assert_eq!(is_navigation(&method, &headers), want, "{method} {headers:?}");
    }
}

#[test]
fn unauthenticated_answers() {
    use UnauthenticatedResponse::*;
    let mut nav = HeaderMap::new();
    nav.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
    let mut api = HeaderMap::new();
    api.insert("sec-fetch-mode", HeaderValue::from_static("cors"));
    let cases = [
        (Auto, true, &nav, true),
        (Auto, true, &api, false),
        (Auto, false, &nav, false),
        (Redirect, true, &api, true),
        (Redirect, false, &nav, false),
        (Status401, true, &nav, false),
    ];
    for (setting, login, headers, want) in cases {
        assert_eq!(redirects_to_sign_in(setting, login, &Method::GET, headers), want, "{setting:?} {login}");
    }
}

#[test]
fn endpoints() {
    assert_eq!(endpoint("/.portcullis/login"), Some(Endpoint::Login));
    assert_eq!(endpoint("/.portcullis/callback"), Some(Endpoint::Callback));
    assert_eq!(endpoint("/.portcullis/logout"), Some(Endpoint::Logout));
    assert_eq!(endpoint("/.portcullis/identity"), Some(Endpoint::Identity));
    assert_eq!(endpoint("/.portcullis/identity/x"), None);
    assert_eq!(endpoint("/.portcullis"), None);
    assert_eq!(endpoint("/login"), None);
}

#[test]
fn urls_of_the_flow() {
    assert_eq!(
        login_url(&base(), "https://api.mysite.com/a b?c=d&e"),
        "https://api.mysite.com/.portcullis/login?rd=https%3A%2F%2Fapi.mysite.com%2Fa+b%3Fc%3Dd%26e"
    );
    assert_eq!(
        login_url_for(&base(), "/data?q=1"),
        "https://api.mysite.com/.portcullis/login?rd=https%3A%2F%2Fapi.mysite.com%2Fdata%3Fq%3D1"
    );
    assert_eq!(
        (public_scheme(true, false), public_scheme(false, true), public_scheme(false, false)),
        ("https", "https", "http")
    );
    assert_eq!(redirect_uri("https", "api.mysite.com:8443"), "https://api.mysite.com:8443/.portcullis/callback");
    // RFC 7636 Appendix B.
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    let pending = Pending {
        state: "s".into(),
        nonce: "n".into(),
        verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
        rd: "https://api.mysite.com/".into(),
        redirect_uri: redirect_uri("https", "api.mysite.com"),
        app: "shop/api".into(),
        exp: 100,
    };
    let endpoint = Url::parse("https://idp.test/auth?prompt=login").unwrap();
    let url = authorization_url(&endpoint, "portcullis", &["openid".into(), "email".into()], &pending);
    let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("prompt"), Some("login"));
    assert_eq!(get("response_type"), Some("code"));
    assert_eq!(get("scope"), Some("openid email"));
    assert_eq!(get("redirect_uri"), Some("https://api.mysite.com/.portcullis/callback"));
    assert_eq!(get("code_challenge_method"), Some("S256"));
    assert_eq!(get("code_challenge"), Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
    assert_eq!((get("state"), get("nonce")), (Some("s"), Some("n")));
}

#[test]
fn callback_checks() {
    assert_eq!(
        callback_params(Some("code=c&state=s")).unwrap(),
        CallbackParams { code: "c".into(), state: "s".into() }
    );
    assert_eq!(callback_params(Some("error=access_denied&state=s")), Err(CallbackError::ProviderError));
    assert_eq!(callback_params(Some("code=c")), Err(CallbackError::MissingParams));
    assert_eq!(callback_params(None), Err(CallbackError::MissingParams));
    assert_eq!(callback_params(Some("code=&state=s")), Err(CallbackError::MissingParams));
    let long = format!("code={}&state=s", "c".repeat(MAX_PARAM_BYTES + 1));
    assert_eq!(callback_params(Some(&long)), Err(CallbackError::ParamTooLong));

    let pending = Pending {
        state: "abc".into(),
        nonce: "n".into(),
        verifier: "v".into(),
        rd: "/".into(),
        redirect_uri: "r".into(),
        app: "shop/api".into(),
        exp: 100,
    };
    assert_eq!(check_pending(&pending, "abc", "shop/api", 99), Ok(()));
    assert_eq!(check_pending(&pending, "abd", "shop/api", 99), Err(CallbackError::StateMismatch));
    assert_eq!(check_pending(&pending, "abc", "shop/other", 99), Err(CallbackError::BadStateCookie));
    assert_eq!(check_pending(&pending, "abc", "shop/api", 100), Err(CallbackError::BadStateCookie));
}

#[test]
fn cookies() {
    let attrs = CookieAttrs { same_site: SameSite::None, http_only: true, secure: true };
    assert_eq!(
        set_cookie("CF_Authorization", "t.o.k", "/", 3600, attrs).unwrap(),
        "CF_Authorization=t.o.k; Path=/; Max-Age=3600; SameSite=None; Secure; HttpOnly"
    );
    let lax = CookieAttrs { same_site: SameSite::Lax, http_only: false, secure: false };
    assert_eq!(set_cookie("a", "", "/", -5, lax).unwrap(), "a=; Path=/; Max-Age=0; SameSite=Lax");
    assert_eq!(state_cookie_attrs(attrs).same_site, SameSite::Lax);
    assert!(set_cookie("a", "x\ny", "/", 1, lax).is_none());

    let mut h = HeaderMap::new();
    h.append(COOKIE, HeaderValue::from_static("a=1; portcullis_login=xyz"));
    h.append(COOKIE, HeaderValue::from_static("b=\"2\""));
    assert_eq!(cookie(&h, STATE_COOKIE), Some("xyz"));
    assert_eq!(cookie(&h, "b"), Some("2"));
    assert_eq!(cookie(&h, "c"), None);
}

#[test]
fn unverified_emails_sign_in_only_when_allowed() {
    let claims = |v: serde_json::Value| match serde_json::json!({ "email": "a@b.c", "email_verified": v }) {
        serde_json::Value::Object(m) => m,
        _ => unreachable!(),
    };
    let absent = serde_json::Map::new();
    // (claims, allowUnverifiedEmail, accepted)
    let cases = [
        (claims(true.into()), false, true),
        (claims(false.into()), false, false),
        (claims("false".into()), false, false),
        (claims("FALSE".into()), false, false),
        (claims("true".into()), false, true),
        (absent, false, true),
        (claims(false.into()), true, true),
    ];
    for (c, allow, want) in cases {
        assert_eq!(email_acceptable(&c, allow), want, "{c:?} allow={allow}");
    }
}
