//! `spec.domains` and `spec.forwardRoutes` → normalised host/path patterns and upstreams.

use super::error::Diagnostics;
use super::tokens::TokenIndex;
use crate::paths::normalize_prefix;
use crate::snapshot::{DomainPattern, ForwardCredentials, ForwardRoute, HostPattern, RouteCredentials, Upstream};
use crate::v1alpha1::ForwardRouteSpec;

/// Parses `host`, `host/path-prefix` and `*.host` entries; at least one is required.
pub fn compile_domains(domains: &[String], d: &mut Diagnostics) -> Vec<DomainPattern> {
    if domains.is_empty() {
        d.error("spec.domains", None, "at least one domain is required (e.g. api.mysite.com)");
    }
    let mut out: Vec<DomainPattern> = Vec::new();
    for (i, raw) in domains.iter().enumerate() {
        let field = format!("spec.domains[{i}]");
        match parse_domain(raw) {
            Ok(p) if out.contains(&p) => d.error(field, Some(raw), "duplicate domain"),
            Ok(p) => out.push(p),
            Err(e) => d.error(field, Some(raw), e),
        }
    }
    out
}

fn parse_domain(raw: &str) -> Result<DomainPattern, String> {
    let s = raw.trim();
    if s.contains("://") {
        return Err("write the host without a scheme (api.mysite.com, not https://api.mysite.com)".into());
    }
    let (host, path) = match s.find('/') {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let host = parse_host_pattern(host)?;
    let path_prefix = match path {
        None => None,
        Some(p) => {
            if p.contains(['?', '#']) {
                return Err("a domain's path must not contain '?' or '#'".into());
            }
            let n = normalize_prefix(p).map_err(|e| format!("invalid path: {e}"))?;
            let n = n.trim_end_matches('/');
            (!n.is_empty()).then(|| n.to_owned())
        }
    };
    Ok(DomainPattern { host, path_prefix })
}

/// A host as configured: lower-case, no trailing dot, no port; `*.suffix` for wildcards.
pub fn parse_host_pattern(host: &str) -> Result<HostPattern, String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err("empty host".into());
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        validate_hostname(suffix)?;
        if !suffix.contains('.') && suffix != "localhost" {
            return Err(format!("*.{suffix} covers a whole top-level domain; name a domain you own"));
        }
        return Ok(HostPattern::Wildcard(suffix.to_owned()));
    }
    if host.contains('*') {
        return Err("a wildcard is only allowed as the whole first label (*.example.com)".into());
    }
    validate_hostname(&host)?;
    Ok(HostPattern::Exact(host))
}

fn validate_hostname(host: &str) -> Result<(), String> {
    if host.starts_with('[') {
        return host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
            .map(|_| ())
            .ok_or_else(|| "invalid IPv6 literal".to_owned());
    }
    if host.contains(':') {
        return Err("domains never carry a port: hosts are compared without it".into());
    }
    if host.len() > 253 {
        return Err("host longer than 253 characters".into());
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("every label must be 1 to 63 characters".into());
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(format!("label {label:?} may only hold letters, digits, '-' and '_' (use punycode for IDNs)"));
        }
    }
    Ok(())
}

/// Validates forward routes and resolves their service tokens; longest prefix first.
pub fn compile_forward_routes(
    specs: &[ForwardRouteSpec],
    namespace: &str,
    tokens: &TokenIndex,
    d: &mut Diagnostics,
) -> Vec<ForwardRoute> {
    let mut out = Vec::with_capacity(specs.len());
    for (i, r) in specs.iter().enumerate() {
        let path = format!("spec.forwardRoutes[{i}]");
        let prefix = match normalize_prefix(&r.path_prefix) {
            Ok(p) if !r.path_prefix.contains(['?', '#']) => p.trim_end_matches('/').to_owned(),
            Ok(_) => {
                d.error(format!("{path}.pathPrefix"), Some(&r.path_prefix), "must not contain '?' or '#' (e.g. /api/)");
                continue;
            }
            Err(e) => {
                d.error(
                    format!("{path}.pathPrefix"),
                    Some(&r.path_prefix),
                    format!("must be a path starting with '/' (e.g. /api/): {e}"),
                );
                continue;
            }
        };
        let Some(upstream_raw) = r.upstream.as_deref() else {
            d.error(
                format!("{path}.upstream"),
                None,
                "a forward route needs an upstream (e.g. https://api.mysite.com)",
            );
            continue;
        };
        let upstream = match parse_upstream(upstream_raw) {
            Ok(u) => u,
            Err(e) => {
                d.error(format!("{path}.upstream"), Some(upstream_raw), e);
                continue;
            }
        };
        let credentials = match &r.service_token_ref {
            None => RouteCredentials::None,
            Some(t) => match tokens.get(namespace, &t.name) {
                Some(c) => RouteCredentials::Token(ForwardCredentials {
                    token: t.name.clone(),
                    client_id: c.token.client_id.clone(),
                    client_secret: c.client_secret.clone(),
                }),
                None => {
                    d.warn(
                        format!("{path}.serviceTokenRef.name"),
                        format!(
                            "{}; requests on this route are refused with 503 until it is",
                            tokens.why_unusable(namespace, &t.name)
                        ),
                    );
                    RouteCredentials::Missing { token: t.name.clone() }
                }
            },
        };
        out.push(ForwardRoute {
            path_prefix: prefix,
            upstream,
            strip_prefix: r.strip_prefix,
            credentials,
            strip_set_cookie: r.strip_set_cookie.unwrap_or(true),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in out.iter().enumerate() {
        if !seen.insert(r.path_prefix.clone()) {
            d.error(
                format!("spec.forwardRoutes[{i}].pathPrefix"),
                Some(&r.path_prefix),
                "duplicate forward route prefix",
            );
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
    out
}

/// Parses an upstream URL (`http(s)://host[:port][/base]`): no credentials, no query.
pub fn parse_upstream(raw: &str) -> Result<Upstream, String> {
    let uri: http::Uri = raw.parse().map_err(|_| "not a URL (write https://host[:port][/base])".to_owned())?;
    let scheme = match uri.scheme_str() {
        Some("https") => "https",
        Some("http") => "http",
        _ => return Err("the upstream must be an http:// or https:// URL".into()),
    };
    let authority = uri.authority().ok_or("the upstream URL has no host")?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not allowed; use serviceTokenRef".into());
    }
    if uri.query().is_some() {
        return Err("the upstream URL must not have a query".into());
    }
    let base = uri.path().trim_end_matches('/');
    Ok(Upstream {
        scheme: scheme.to_owned(),
        authority: authority.as_str().to_ascii_lowercase(),
        base_path: base.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains(list: &[&str]) -> (Vec<DomainPattern>, Diagnostics) {
        let mut d = Diagnostics::new("AccessApplication", "ns/app");
        let v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        (compile_domains(&v, &mut d), d)
    }

    #[test]
    fn parses_domains() {
        let (p, d) = domains(&["API.MySite.com.", "api.mysite.com/v2/", "*.mysite.com", "x.test/a/../b"]);
        assert!(!d.has_errors(), "{:?}", d.errors());
        assert_eq!(p[0], DomainPattern { host: HostPattern::Exact("api.mysite.com".into()), path_prefix: None });
        assert_eq!(p[1].path_prefix.as_deref(), Some("/v2"));
        assert_eq!(p[2].host, HostPattern::Wildcard("mysite.com".into()));
        assert_eq!(p[3].path_prefix.as_deref(), Some("/b"));
    }

    #[test]
    fn rejects_bad_domains() {
        for bad in ["", "https://a.com", "a.com:8443", "*.com", "a.*.com", "a b.com", "a..com", "*."] {
            let (_, d) = domains(&[bad]);
            assert!(d.has_errors(), "{bad:?} should be rejected");
            assert_eq!(d.errors()[0].field, "spec.domains[0]");
        }
        let (_, d) = domains(&[]);
        assert_eq!(d.errors()[0].field, "spec.domains");
    }

    #[test]
    fn forward_route_needs_upstream() {
        let mut d = Diagnostics::new("AccessApplication", "ns/app");
        let specs = vec![
            ForwardRouteSpec { path_prefix: "/api/".into(), ..Default::default() },
            ForwardRouteSpec { path_prefix: "api".into(), upstream: Some("https://x".into()), ..Default::default() },
            ForwardRouteSpec { path_prefix: "/b".into(), upstream: Some("ftp://x".into()), ..Default::default() },
            ForwardRouteSpec { path_prefix: "/c".into(), upstream: Some("https://u:p@x".into()), ..Default::default() },
        ];
        let routes = compile_forward_routes(&specs, "ns", &TokenIndex::default(), &mut d);
        assert!(routes.is_empty());
        let fields: Vec<&str> = d.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.forwardRoutes[0].upstream",
                "spec.forwardRoutes[1].pathPrefix",
                "spec.forwardRoutes[2].upstream",
                "spec.forwardRoutes[3].upstream"
            ]
        );
    }

    #[test]
    fn forward_route_parses_upstream_and_defaults_strip_set_cookie() {
        let mut d = Diagnostics::new("AccessApplication", "ns/app");
        let specs = vec![ForwardRouteSpec {
            path_prefix: "/api/".into(),
            upstream: Some("https://API.mysite.com:8443/base/".into()),
            ..Default::default()
        }];
        let r = compile_forward_routes(&specs, "ns", &TokenIndex::default(), &mut d);
        assert!(!d.has_errors());
        assert_eq!(r[0].path_prefix, "/api");
        assert_eq!(r[0].upstream.authority, "api.mysite.com:8443");
        assert_eq!(r[0].upstream.base_path, "/base");
        assert!(r[0].strip_set_cookie);
    }
}
