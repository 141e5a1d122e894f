use envoy_types::pb::envoy::config::core::v3::{address, Address as PbAddress, SocketAddress};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request as AttrRequest};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    h
}

fn parts(method: &str, target: &str, pairs: &[(&str, &str)]) -> Parts {
    let mut req = Request::builder().method(method).uri(target).body(()).unwrap();
    *req.headers_mut() = headers(pairs);
    req.into_parts().0
}

const TRAEFIK: [(&str, &str); 5] = [
    ("x-forwarded-method", "POST"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "api.mysite.com"),
    ("x-forwarded-uri", "/v2/items?x=1"),
    ("host", "authz.internal:9191"),
];

#[test]
fn forward_auth_reads_the_x_forwarded_description() {
    let mut pairs = TRAEFIK.to_vec();
    pairs.push(("cookie", "CF_Authorization=t"));
    pairs.push(("x-forwarded-for", "203.0.113.9"));
    let d = forward_auth(&headers(&pairs)).unwrap();
    assert_eq!(d.parts.method, Method::POST);
    assert_eq!(d.parts.uri.to_string(), "https://api.mysite.com/v2/items?x=1");
    assert_eq!(d.parts.headers[HOST], "api.mysite.com");
    assert_eq!(d.parts.headers["cookie"], "CF_Authorization=t");
    assert_eq!(d.parts.headers["x-forwarded-for"], "203.0.113.9", "kept for --trusted-proxies");
    for gone in ["x-forwarded-method", "x-forwarded-uri", "x-forwarded-host", "x-forwarded-proto"] {
        assert!(!d.parts.headers.contains_key(gone), "{gone} describes, it is not the client's");
    }
    assert_eq!(d.path_and_query(), "/v2/items?x=1");
}

#[test]
fn forward_auth_reads_ingress_nginx() {
    let h = headers(&[
        ("x-original-url", "https://api.mysite.com/a/b?q=1"),
        ("x-original-method", "DELETE"),
        ("host", "authz"),
    ]);
    let d = forward_auth(&h).unwrap();
    assert_eq!(d.parts.method, Method::DELETE);
    assert_eq!(d.parts.uri.to_string(), "https://api.mysite.com/a/b?q=1");
    let bare = forward_auth(&headers(&[("x-original-url", "http://a.test"), ("x-original-method", "GET")])).unwrap();
    assert_eq!(bare.path_and_query(), "/");
}

// Behaviour: B-AUTHZ-3 (docs/behaviour.md).
#[test]
fn missing_malformed_or_contradictory_descriptions_are_refused() {
    let with = |extra: &[(&str, &str)], drop: &str| {
        let mut pairs: Vec<(&str, &str)> = TRAEFIK.iter().copied().filter(|(n, _)| *n != drop).collect();
        pairs.extend_from_slice(extra);
        forward_auth(&headers(&pairs))
    };
    struct Case {
        desc: &'static str,
        got: Result<Described, DescribeError>,
        want: &'static str,
    }
    let cases = [
        Case { desc: "nothing", got: forward_auth(&headers(&[("host", "a")])), want: "description_missing" },
        Case { desc: "no uri", got: with(&[], "x-forwarded-uri"), want: "description_missing" },
        Case { desc: "no method", got: with(&[], "x-forwarded-method"), want: "description_missing" },
        Case { desc: "no host", got: with(&[], "x-forwarded-host"), want: "description_missing" },
        Case { desc: "no proto", got: with(&[], "x-forwarded-proto"), want: "description_missing" },
        Case {
            desc: "two hosts",
            got: with(&[("x-forwarded-host", "evil.test")], ""),
            want: "description_contradictory",
        },
        Case {
            desc: "a host list",
            got: with(&[("x-forwarded-host", "api.mysite.com, evil.test")], "x-forwarded-host"),
            want: "description_contradictory",
        },
        Case {
            desc: "X-Original-URL elsewhere",
            got: with(&[("x-original-url", "https://evil.test/v2/items?x=1")], ""),
            want: "description_contradictory",
        },
        Case {
            desc: "X-Original-Method differs",
            got: with(&[("x-original-method", "GET")], ""),
            want: "description_contradictory",
        },
        Case {
            desc: "X-Original-URL without method",
            got: forward_auth(&headers(&[("x-original-url", "https://a.test/")])),
            want: "description_missing",
        },
        Case {
            desc: "relative uri",
            got: with(&[("x-forwarded-uri", "v2")], "x-forwarded-uri"),
            want: "description_malformed",
        },
        Case {
            desc: "absolute uri",
            got: with(&[("x-forwarded-uri", "https://evil.test/")], "x-forwarded-uri"),
            want: "description_malformed",
        },
        Case {
            desc: "userinfo in host",
            got: with(&[("x-forwarded-host", "a@api.mysite.com")], "x-forwarded-host"),
            want: "description_malformed",
        },
        Case {
            desc: "odd scheme",
            got: with(&[("x-forwarded-proto", "gopher")], "x-forwarded-proto"),
            want: "description_malformed",
        },
        Case {
            desc: "bad method",
            got: with(&[("x-forwarded-method", "GE T")], "x-forwarded-method"),
            want: "description_malformed",
        },
    ];
    for c in cases {
        match c.got {
            Ok(d) => panic!("{}: accepted as {}", c.desc, d.parts.uri),
            Err(e) => assert_eq!(e.reason(), c.want, "{}: {e}", c.desc),
        }
    }
    // Agreeing descriptions are fine.
    assert!(
        with(&[("x-original-url", "https://api.mysite.com/v2/items?x=1"), ("x-original-method", "POST")], "").is_ok()
    );
}

#[test]
fn ext_authz_http_strips_the_prefix() {
    let d = ext_authz_http(&parts(
        "OPTIONS",
        "/ext-authz/v2/x?y=1",
        &[("host", "api.mysite.com"), ("origin", "https://a")],
    ))
    .unwrap();
    assert_eq!(d.parts.method, Method::OPTIONS);
    assert_eq!(d.parts.uri.to_string(), "http://api.mysite.com/v2/x?y=1");
    assert_eq!(d.parts.headers["origin"], "https://a");
    assert_eq!(ext_authz_http(&parts("GET", "/ext-authz", &[("host", "a.test")])).unwrap().path_and_query(), "/");
    assert!(ext_authz_http(&parts("GET", "/ext-authzx", &[("host", "a.test")])).is_err());
    assert!(ext_authz_http(&parts("GET", "/ext-authz/", &[])).is_err(), "no Host");
}

#[test]
fn a_direct_preflight_keeps_its_host() {
    let d = direct(
        &parts("OPTIONS", "/preflight/data", &[("host", "api.mysite.com"), ("x-forwarded-host", "api.mysite.com")]),
        PREFLIGHT_PREFIX,
    )
    .unwrap();
    assert_eq!(d.parts.uri.to_string(), "http://api.mysite.com/data");
    let e = direct(
        &parts("OPTIONS", "/preflight/", &[("host", "api.mysite.com"), ("x-forwarded-host", "evil.test")]),
        PREFLIGHT_PREFIX,
    );
    assert_eq!(e.unwrap_err().reason(), "description_contradictory");
    let login = direct(&parts("GET", "/.portcullis/login?rd=/x", &[("host", "api.mysite.com")]), "").unwrap();
    assert_eq!(login.path_and_query(), "/.portcullis/login?rd=/x");
    assert_eq!(login.via, Via::Direct);
}

fn check(host: &str, pairs: &[(&str, &str)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(PbAddress {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: "198.51.100.7".into(),
                        port_specifier: Some(
                            envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(4242),
                        ),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    host: host.into(),
                    path: "/data?x=1".into(),
                    scheme: "https".into(),
                    headers: pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[test]
fn check_requests_carry_the_client_address_and_headers() {
    let d = check_request(&check("api.mysite.com", &[(":authority", "api.mysite.com"), ("cookie", "a=b")])).unwrap();
    assert_eq!(d.parts.uri.to_string(), "https://api.mysite.com/data?x=1");
    assert_eq!(d.peer, Some("198.51.100.7:4242".parse().unwrap()));
    assert_eq!(d.parts.headers["cookie"], "a=b");
    assert!(!d.parts.headers.keys().any(|n| n.as_str().starts_with(':')));
    let e = check_request(&check("api.mysite.com", &[("host", "evil.test")])).unwrap_err();
    assert_eq!(e.reason(), "description_contradictory");
    assert_eq!(check_request(&CheckRequest::default()).unwrap_err().reason(), "description_missing");
}
