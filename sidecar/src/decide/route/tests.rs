//! Routing tables: request targets, most-specific-wins, forward routes, and a property check of
//! `Router::route` against a naive reference.

use super::*;
use http::{HeaderValue, Version};
use portcullis_crds::snapshot::{Cors, Identity, ResourceId, RouteCredentials, Upstream};
use portcullis_crds::v1alpha1::{Mode, UnauthenticatedResponse};
use proptest::prelude::*;

fn domain(s: &str) -> DomainPattern {
    let (host, prefix) = match s.find('/') {
        Some(i) => (&s[..i], Some(s[i..].trim_end_matches('/').to_owned()).filter(|p| !p.is_empty())),
        None => (s, None),
    };
    let host = match host.strip_prefix("*.") {
        Some(suffix) => HostPattern::Wildcard(suffix.to_owned()),
        None => HostPattern::Exact(host.to_owned()),
    };
    DomainPattern { host, path_prefix: prefix }
}

fn app(name: &str, domains: &[&str]) -> Application {
    Application {
        id: ResourceId { namespace: "ns".into(), name: name.into() },
        domains: domains.iter().map(|d| domain(d)).collect(),
        session_duration_secs: 3600,
        identity: Identity {
            cookie_name: "CF_Authorization".into(),
            header_name: "cf-access-jwt-assertion".into(),
            issuers: vec![],
        },
        login: None,
        policies: vec![],
        service_tokens: vec![],
        cors: Cors::Disabled,
        forward_routes: vec![],
        unauthenticated_response: UnauthenticatedResponse::Auto,
        mode: Mode::Enforce,
        escaped_slashes: Default::default(),
    }
}

fn headers(hosts: &[&[u8]]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in hosts {
        h.append(HOST, HeaderValue::from_bytes(v).unwrap());
    }
    h
}

#[test]
fn request_targets() {
    struct Case {
        desc: &'static str,
        uri: &'static str,
        hosts: &'static [&'static [u8]],
        want: Result<(&'static str, &'static str), TargetError>,
    }
    let cases = [
        Case {
            desc: "origin form with Host",
            uri: "/x",
            hosts: &[b"api.example.com"],
            want: Ok(("api.example.com", "/x")),
        },
        Case {
            desc: "Host with port",
            uri: "/",
            hosts: &[b"api.example.com:8443"],
            want: Ok(("api.example.com", "/")),
        },
        Case { desc: "Host upper-case", uri: "/", hosts: &[b"API.Example.COM"], want: Ok(("api.example.com", "/")) },
        Case { desc: "Host trailing dot", uri: "/", hosts: &[b"api.example.com."], want: Ok(("api.example.com", "/")) },
        Case {
            desc: "Host trailing dot and port",
            uri: "/",
            hosts: &[b"api.example.com.:80"],
            want: Ok(("api.example.com", "/")),
        },
        Case { desc: "Host empty port", uri: "/", hosts: &[b"api.example.com:"], want: Ok(("api.example.com", "/")) },
        Case { desc: "IPv6 literal with port", uri: "/", hosts: &[b"[::1]:8080"], want: Ok(("[::1]", "/")) },
        Case { desc: "IPv6 literal upper-case", uri: "/", hosts: &[b"[FE80::1]"], want: Ok(("[fe80::1]", "/")) },
        Case { desc: "IPv4 literal", uri: "/", hosts: &[b"10.0.0.1:80"], want: Ok(("10.0.0.1", "/")) },
        Case { desc: "missing Host", uri: "/", hosts: &[], want: Err(TargetError::MissingHost) },
        Case {
            desc: "duplicate Host",
            uri: "/",
            hosts: &[b"a.example.com", b"a.example.com"],
            want: Err(TargetError::DuplicateHost),
        },
        Case { desc: "empty Host", uri: "/", hosts: &[b""], want: Err(TargetError::InvalidHost) },
        Case { desc: "Host userinfo", uri: "/", hosts: &[b"user@a.example.com"], want: Err(TargetError::InvalidHost) },
        Case { desc: "Host bad port", uri: "/", hosts: &[b"a.example.com:80x"], want: Err(TargetError::InvalidHost) },
        Case {
            desc: "Host long port",
            uri: "/",
            hosts: &[b"a.example.com:123456"],
            want: Err(TargetError::InvalidHost),
        },
        Case { desc: "Host two colons", uri: "/", hosts: &[b"a:b:c"], want: Err(TargetError::InvalidHost) },
        Case { desc: "Host space", uri: "/", hosts: &[b"a example.com"], want: Err(TargetError::InvalidHost) },
        Case { desc: "Host percent", uri: "/", hosts: &[b"a%2eexample.com"], want: Err(TargetError::InvalidHost) },
        Case { desc: "Host empty label", uri: "/", hosts: &[b"a..example.com"], want: Err(TargetError::InvalidHost) },
        Case { desc: "Host only a dot", uri: "/", hosts: &[b"."], want: Err(TargetError::InvalidHost) },
        Case {
            desc: "Host non-UTF-8",
            uri: "/",
            hosts: &[b"caf\xc3\xa9.example"],
            want: Err(TargetError::InvalidHost),
        },
        Case { desc: "Host bad IPv6", uri: "/", hosts: &[b"[::g]"], want: Err(TargetError::InvalidHost) },
        Case {
            desc: "Host IPv6 junk after bracket",
            uri: "/",
            hosts: &[b"[::1]x"],
            want: Err(TargetError::InvalidHost),
        },
        Case {
            desc: "absolute form wins over Host",
            uri: "http://API.example.com:8080/a",
            hosts: &[b"other.example.com"],
            want: Ok(("api.example.com", "/a")),
        },
        Case {
            desc: "absolute form without Host (HTTP/2 :authority)",
            uri: "https://api.example.com/a",
            hosts: &[],
            want: Ok(("api.example.com", "/a")),
        },
        Case {
            desc: "absolute form empty path",
            uri: "http://api.example.com",
            hosts: &[],
            want: Ok(("api.example.com", "/")),
        },
        Case { desc: "absolute form IPv6", uri: "http://[::1]:8080/", hosts: &[], want: Ok(("[::1]", "/")) },
        Case {
            desc: "absolute form userinfo",
            uri: "http://u:p@api.example.com/",
            hosts: &[b"api.example.com"],
            want: Err(TargetError::InvalidHost),
        },
        Case {
            desc: "absolute form, duplicate Host still 400",
            uri: "http://api.example.com/",
            hosts: &[b"a", b"b"],
            want: Err(TargetError::DuplicateHost),
        },
        Case {
            desc: "absolute form, invalid Host still 400",
            uri: "http://api.example.com/",
            hosts: &[b"a b"],
            want: Err(TargetError::InvalidHost),
        },
        Case {
            desc: "traversal normalised",
            uri: "/public/../admin",
            hosts: &[b"a.example.com"],
            want: Ok(("a.example.com", "/admin")),
        },
        Case {
            desc: "escaped traversal normalised",
            uri: "/public/%2e%2e/admin",
            hosts: &[b"a.example.com"],
            want: Ok(("a.example.com", "/admin")),
        },
        Case {
            desc: "query is not path",
            uri: "/a?b=/../c",
            hosts: &[b"a.example.com"],
            want: Ok(("a.example.com", "/a")),
        },
        Case {
            desc: "bad percent-encoding",
            uri: "/%zz",
            hosts: &[b"a.example.com"],
            want: Err(TargetError::InvalidPath),
        },
        Case { desc: "asterisk form", uri: "*", hosts: &[b"a.example.com"], want: Err(TargetError::InvalidPath) },
    ];
    for c in cases {
        let uri: Uri = c.uri.parse().unwrap();
        let h = headers(c.hosts);
        let got = request_target(Version::HTTP_11, &uri, &h);
        let got = got.as_ref().map(|t| (t.host.as_ref(), t.path.matching.as_ref())).map_err(|e| *e);
        assert_eq!(got, c.want, "{}", c.desc);
    }
}

#[test]
fn request_target_borrows_when_already_normal() {
    let uri: Uri = "/a/b".parse().unwrap();
    let h = headers(&[b"api.example.com:8080"]);
    let t = request_target(Version::HTTP_11, &uri, &h).unwrap();
    assert!(matches!(t.host, Cow::Borrowed(_)));
    assert!(matches!(t.authority, Cow::Borrowed("api.example.com:8080")));
    assert!(matches!(t.path.forward, Cow::Borrowed(_)));
    assert!(matches!(t.path.matching, Cow::Borrowed(_)));
}

#[test]
fn the_authority_forwarded_is_the_one_routed() {
    // (version, uri, Host headers, want: authority forwarded or the error)
    type Case = (Version, &'static str, &'static [&'static [u8]], Result<&'static str, TargetError>);
    let cases: [Case; 10] = [
        (Version::HTTP_11, "/", &[b"API.Example.com"], Ok("api.example.com")),
        (Version::HTTP_11, "/", &[b"api.example.com.:8443"], Ok("api.example.com:8443")),
        (Version::HTTP_11, "/", &[b"api.example.com:"], Ok("api.example.com")),
        (Version::HTTP_11, "/", &[b"[::1]:8080"], Ok("[::1]:8080")),
        // RFC 9112 §3.2.2: the absolute form's authority replaces a conflicting Host.
        (Version::HTTP_11, "http://public.example.com/x", &[b"admin.example.com"], Ok("public.example.com")),
        (Version::HTTP_11, "http://public.example.com:81/x", &[], Ok("public.example.com:81")),
        // RFC 9113 §8.3.1: over HTTP/2 a host that disagrees with :authority is a 400.
        (Version::HTTP_2, "https://public.example.com/x", &[b"admin.example.com"], Err(TargetError::ConflictingHost)),
        (Version::HTTP_2, "https://public.example.com/x", &[b"Public.Example.com."], Ok("public.example.com")),
        (
            Version::HTTP_2,
            "https://public.example.com:443/x",
            &[b"public.example.com"],
            Err(TargetError::ConflictingHost),
        ),
        (Version::HTTP_2, "/x", &[b"public.example.com"], Ok("public.example.com")),
    ];
    for (version, uri, hosts, want) in cases {
        let uri: Uri = uri.parse().unwrap();
        let h = headers(hosts);
        let got = request_target(version, &uri, &h);
        assert_eq!(got.as_ref().map(|t| t.authority.as_ref()).map_err(|e| *e), want, "{version:?} {uri} {hosts:?}");
    }
}

#[test]
fn ambiguous_paths_route_only_where_every_reading_agrees() {
    let mut keeps = app("files", &["api.example.com/files"]);
    keeps.escaped_slashes = portcullis_crds::v1alpha1::EscapedSlashes::KeepUnchanged;
    let apps = [app("public", &["api.example.com"]), app("admin", &["api.example.com/admin"]), keeps];
    let router = Router::new(&apps);
    let route = |path: &str| {
        let uri: Uri = path.parse().unwrap();
        let h = headers(&[b"api.example.com"]);
        let t = request_target(Version::HTTP_11, &uri, &h).unwrap();
        router.route_target(&t).map(|a| a.map(|i| apps[i].id.name.as_str()))
    };
    // Default: refused, whatever the app.
    assert_eq!(route("/admin%2Fx"), Err(TargetError::AmbiguousPath));
    assert_eq!(route("/public/..%2Fadmin/x"), Err(TargetError::AmbiguousPath));
    assert_eq!(route("/a\\b"), Err(TargetError::AmbiguousPath));
    // Kept by the application that opted in, when the decoded reading stays there.
    assert_eq!(route("/files/a%2Fb.txt"), Ok(Some("files")));
    // ... but never when decoding would leave it for another application.
    assert_eq!(route("/files/..%2Fadmin/x"), Err(TargetError::AmbiguousPath));
    // A decoded backslash is a slash to some servers and a byte to others: each reading counts
    // (found by tests/canonical.rs: `/files/%5C/..%2F` is `/files/` with `\` as a byte, `/` with
    // `\` as a slash).
    assert_eq!(route("/files/%5C/..%2F"), Err(TargetError::AmbiguousPath));
    assert_eq!(route("/files/%5C..%2Fadmin"), Err(TargetError::AmbiguousPath));
    assert_eq!(route("/files/a%5Cb.txt"), Ok(Some("files")));
    // The readings start from the path the app receives, `;parameters` included: an app that
    // decodes before it strips them reads `a;x%2F..%2F..%2Fadmin` as `/admin`.
    assert_eq!(route("/files/a;x%2F..%2F..%2Fadmin"), Err(TargetError::AmbiguousPath));
    assert_eq!(route("/files/a;v=1%2F2"), Ok(Some("files")));
    // Plain paths are unaffected.
    assert_eq!(route("/admin/x"), Ok(Some("admin")));
    assert_eq!(route("//admin/x"), Ok(Some("admin")));
    assert_eq!(route("/admin;jsessionid=1/x"), Ok(Some("admin")));
}

#[test]
fn target_error_reasons_are_distinct() {
    let all = [
        TargetError::MissingHost,
        TargetError::DuplicateHost,
        TargetError::InvalidHost,
        TargetError::ConflictingHost,
        TargetError::InvalidPath,
        TargetError::AmbiguousPath,
    ];
    let mut reasons: Vec<_> = all.iter().map(|e| e.reason()).collect();
    reasons.sort();
    reasons.dedup();
    assert_eq!(reasons.len(), all.len());
}

// Behaviour: B-ROUTE-3, B-ROUTE-4, B-ROUTE-5 (docs/behaviour.md).
#[test]
fn routes_most_specific() {
    let apps = [
        app("exact", &["api.example.com"]),
        app("v2", &["api.example.com/v2"]),
        app("wild", &["*.example.com"]),
        app("deep-wild", &["*.eu.example.com"]),
        app("only-prefixed", &["docs.example.com/public", "docs.example.com/guide/"]),
        app("wild-prefixed", &["*.shop.test/api"]),
        app("apex", &["example.com"]),
        app("ip", &["10.0.0.1", "[::1]"]),
        app("wild-ip", &["*.0.0.1"]),
    ];
    let router = Router::new(&apps);
    struct Case {
        desc: &'static str,
        host: &'static str,
        path: &'static str,
        want: Option<&'static str>,
    }
    let cases = [
        Case { desc: "exact host", host: "api.example.com", path: "/", want: Some("exact") },
        Case { desc: "path prefix beats bare exact host", host: "api.example.com", path: "/v2", want: Some("v2") },
        Case { desc: "path prefix below", host: "api.example.com", path: "/v2/items", want: Some("v2") },
        Case { desc: "segment boundary", host: "api.example.com", path: "/v2beta", want: Some("exact") },
        Case { desc: "wildcard one level", host: "www.example.com", path: "/", want: Some("wild") },
        Case { desc: "wildcard any depth", host: "a.b.c.example.com", path: "/x", want: Some("wild") },
        Case { desc: "longer wildcard suffix wins", host: "fr.eu.example.com", path: "/", want: Some("deep-wild") },
        Case { desc: "longer wildcard at depth", host: "a.b.eu.example.com", path: "/", want: Some("deep-wild") },
        Case { desc: "wildcard never its own apex", host: "eu.example.com", path: "/", want: Some("wild") },
        Case { desc: "apex is its own exact domain", host: "example.com", path: "/", want: Some("apex") },
        Case { desc: "exact beats wildcard", host: "api.example.com", path: "/other", want: Some("exact") },
        Case {
            desc: "only-prefixed host matches its prefix",
            host: "docs.example.com",
            path: "/public/a",
            want: Some("only-prefixed"),
        },
        Case { desc: "trailing slash prefix", host: "docs.example.com", path: "/guide", want: Some("only-prefixed") },
        Case {
            desc: "only-prefixed host falls to wildcard elsewhere",
            host: "docs.example.com",
            path: "/admin",
            want: Some("wild"),
        },
        Case { desc: "traversal already normalised", host: "docs.example.com", path: "/admin", want: Some("wild") },
        Case { desc: "wildcard with prefix", host: "x.shop.test", path: "/api/v1", want: Some("wild-prefixed") },
        Case { desc: "wildcard with prefix, other path", host: "x.shop.test", path: "/apix", want: None },
        Case { desc: "wildcard apex not covered", host: "shop.test", path: "/api", want: None },
        Case { desc: "unknown host", host: "example.org", path: "/", want: None },
        Case { desc: "suffix without dot boundary", host: "badexample.com", path: "/", want: None },
        Case { desc: "IPv4 exact", host: "10.0.0.1", path: "/", want: Some("ip") },
        Case { desc: "IPv6 exact", host: "[::1]", path: "/", want: Some("ip") },
        Case { desc: "IPv4 never under a wildcard", host: "192.0.0.1", path: "/", want: None },
    ];
    for c in cases {
        let got = router.route(c.host, c.path).map(|i| apps[i].id.name.as_str());
        assert_eq!(got, c.want, "{}", c.desc);
    }
}

#[test]
fn routes_through_request_target() {
    // Case, port and trailing dot reach the router already normalised.
    let apps = [app("a", &["api.example.com"]), app("public", &["api.example.com/public"])];
    let router = Router::new(&apps);
    for (host, uri, want) in [
        ("API.Example.com:8443", "/", Some(0)),
        ("api.example.com.", "/public/x", Some(1)),
        ("api.example.com", "/public/../admin", Some(0)),
        ("api.example.com", "/public/%2E%2E/admin", Some(0)),
        ("api.example.com", "/%70ublic", Some(1)),
    ] {
        let uri: Uri = uri.parse().unwrap();
        let h = headers(&[host.as_bytes()]);
        let t = request_target(Version::HTTP_11, &uri, &h).unwrap();
        assert_eq!(router.route(&t.host, &t.path.matching), want, "{host} {uri}");
    }
}

#[test]
fn candidates_explain_a_miss() {
    let apps = [app("docs", &["docs.example.com/public"]), app("wild", &["*.example.com/api"])];
    let router = Router::new(&apps);
    assert_eq!(router.route("docs.example.com", "/admin"), None);
    let c = router.walk("docs.example.com", "/admin").collect::<Vec<_>>();
    assert_eq!(c.len(), 2);
    assert_eq!((c[0].app, c[0].wildcard_suffix, c[0].path_prefix), (0, None, "/public"));
    assert_eq!((c[1].app, c[1].wildcard_suffix), (1, Some("example.com")));
    assert!(c.iter().all(|c| !c.path_matches));
    assert!(router.walk("docs.example.com", "/public/x").next().unwrap().path_matches);
}

#[test]
fn forward_routes_longest_prefix_on_segments() {
    let route = |p: &str| ForwardRoute {
        path_prefix: p.into(),
        upstream: Upstream { scheme: "https".into(), authority: "api.example.com".into(), base_path: String::new() },
        strip_prefix: false,
        credentials: RouteCredentials::None,
        strip_set_cookie: true,
    };
    let routes = [route("/api/v2/"), route("/api/"), route("/x")];
    for (path, want) in [
        ("/api/v2/items", Some("/api/v2/")),
        ("/api/v2", Some("/api/v2/")),
        ("/api/v20", Some("/api/")),
        ("/api", Some("/api/")),
        ("/api/items", Some("/api/")),
        ("/apix", None),
        ("/x/y", Some("/x")),
        ("/xy", None),
        ("/", None),
    ] {
        assert_eq!(forward_route(&routes, path).map(|r| r.path_prefix.as_str()), want, "{path}");
    }
}

// === property: Router agrees with a naive reference ===

const HOSTS: &[&str] =
    &["example.com", "a.example.com", "b.a.example.com", "c.b.a.example.com", "example.org", "a.example.org"];
const PATTERNS: &[&str] = &[
    "example.com",
    "a.example.com",
    "b.a.example.com",
    "*.example.com",
    "*.a.example.com",
    "*.b.a.example.com",
    "example.org",
    "*.example.org",
];
const PREFIXES: &[&str] = &["", "/v2", "/v2/a", "/v", "/a", "/a/b/c"];
const PATHS: &[&str] = &["/", "/v2", "/v2/", "/v2/a", "/v2/ab", "/v2beta", "/v", "/a/b", "/a/b/c/d", "/x"];

/// Rank of a host pattern for `host` (higher is more specific), or None when it does not cover it.
fn host_rank(pattern: &HostPattern, host: &str) -> Option<usize> {
    match pattern {
        HostPattern::Exact(h) => (h == host).then_some(usize::MAX),
        HostPattern::Wildcard(s) => {
            (host.len() > s.len() + 1 && host.ends_with(s.as_str()) && host[..host.len() - s.len()].ends_with('.'))
                .then_some(s.len())
        }
    }
}

fn naive_route(apps: &[Application], host: &str, path: &str) -> Option<usize> {
    let mut best: Option<((usize, usize), usize)> = None;
    for (i, a) in apps.iter().enumerate() {
        for d in &a.domains {
            let Some(rank) = host_rank(&d.host, host) else { continue };
            let prefix = d.path_prefix.as_deref().unwrap_or("");
            if !prefix_matches(prefix, path) {
                continue;
            }
            let key = (rank, prefix.len());
            // Strictly greater: on a tie the earlier application keeps the route.
            if best.is_none_or(|(k, _)| key > k) {
                best = Some((key, i));
            }
        }
    }
    best.map(|(_, i)| i)
}

proptest! {
    #[test]
    fn route_agrees_with_naive_reference(
        spec in prop::collection::vec(prop::collection::vec((0..PATTERNS.len(), 0..PREFIXES.len()), 1..4), 0..6),
        requests in prop::collection::vec((0..HOSTS.len(), 0..PATHS.len()), 1..20),
    ) {
        let apps: Vec<Application> = spec
            .iter()
            .enumerate()
            .map(|(i, doms)| {
                let ds: Vec<String> = doms.iter().map(|(h, p)| format!("{}{}", PATTERNS[*h], PREFIXES[*p])).collect();
                let refs: Vec<&str> = ds.iter().map(String::as_str).collect();
                app(&format!("app{i}"), &refs)
            })
            .collect();
        let router = Router::new(&apps);
        for (h, p) in requests {
            let (host, path) = (HOSTS[h], PATHS[p]);
            prop_assert_eq!(router.route(host, path), naive_route(&apps, host, path), "{} {}", host, path);
        }
    }
}

/// `parse_authority` as it was written before the one-pass scan (one `str` pass per rule): the
/// oracle of `parse_authority_agrees_with_rule_by_rule_reference`.
fn rule_by_rule_authority(authority: &str) -> Result<(String, String), TargetError> {
    if authority.contains('@') {
        return Err(TargetError::InvalidHost);
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']').ok_or(TargetError::InvalidHost)?;
        let (host, rest) = authority.split_at(end + 1);
        host[1..end].parse::<Ipv6Addr>().map_err(|_| TargetError::InvalidHost)?;
        match rest.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if rest.is_empty() => (host, None),
            None => return Err(TargetError::InvalidHost),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = port.filter(|p| !p.is_empty());
    if port.is_some_and(|p| p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(TargetError::InvalidHost);
    }
    let host = if host.starts_with('[') { host } else { host.strip_suffix('.').unwrap_or(host) };
    if !host.starts_with('[')
        && (host.is_empty()
            || host.split('.').any(str::is_empty)
            || !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
    {
        return Err(TargetError::InvalidHost);
    }
    let host = host.to_ascii_lowercase();
    let canonical = port.map_or_else(|| host.clone(), |p| format!("{host}:{p}"));
    Ok((host, canonical))
}

proptest! {
    #[test]
    fn parse_authority_agrees_with_rule_by_rule_reference(authority in "[aZ0.:_@\\[\\]1-]{0,12}|\\[::1\\](:[0-9]{0,6})?|[a-z]{1,4}(\\.[a-zA-Z]{0,3}){0,3}\\.?(:[0-9x]{0,6})?") {
        let got = parse_authority(&authority).map(|(h, c)| (h.into_owned(), c.into_owned()));
        prop_assert_eq!(got, rule_by_rule_authority(&authority), "{:?}", authority);
    }
}
