//! The original request, rebuilt from the way each proxy describes it: Envoy's gRPC
//! `CheckRequest` attributes, Envoy's HTTP ext_authz (the original path under `/ext-authz`),
//! forward-auth headers (`X-Forwarded-Method/-Proto/-Host/-Uri` from Traefik and Caddy,
//! `X-Original-URL`/`-Method` from ingress-nginx), and a preflight a proxy routes to us directly
//! (under `/preflight`). The result is an ordinary request head — absolute-form target and a
//! matching `Host` — that the proxy's own decision then reads exactly as a proxied request.
//!
//! Owns: which fields describe the request, and refusing a description that is missing,
//! malformed or contradictory (api.md "External authorizer": never allowed). Must not decide
//! anything about the request itself (routing, CORS, credentials, policies) — that is the
//! proxy's decision, called afterwards — and does no I/O.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, Method, Request, Uri, Version};

/// Envoy's HTTP ext_authz `path_prefix` this server expects (`/ext-authz` + the original path).
pub const EXT_AUTHZ_PREFIX: &str = "/ext-authz";
/// Where a proxy sends a preflight it cannot pass through its auth step (`/preflight` + path).
pub const PREFLIGHT_PREFIX: &str = "/preflight";

const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");

/// The headers that describe the request to the authorizer; never part of the client's request.
const DESCRIBING: [HeaderName; 6] =
    [X_FORWARDED_METHOD, X_FORWARDED_URI, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_ORIGINAL_URL, X_ORIGINAL_METHOD];

/// Why a description cannot be read: `400`, never an allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DescribeError {
    #[error("the original request is not described: {0} is missing")]
    Missing(&'static str),
    #[error("the original request is described twice, differently: {0}")]
    Contradictory(&'static str),
    #[error("the description's {0} is malformed")]
    Malformed(&'static str),
}

// === impl DescribeError ===

impl DescribeError {
    /// Stable reason: the `error` field of the 400 and the metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            DescribeError::Missing(_) => "description_missing",
            DescribeError::Contradictory(_) => "description_contradictory",
            DescribeError::Malformed(_) => "description_malformed",
        }
    }
}

/// How the request was described.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Envoy's gRPC attributes or its HTTP ext_authz request.
    Envoy,
    /// `X-Forwarded-Method/-Proto/-Host/-Uri` (Traefik, Caddy).
    ForwardedHeaders,
    /// `X-Original-URL`/`-Method` (ingress-nginx, whose auth step passes only 2xx, 401, 403).
    OriginalUrl,
    /// The request itself, sent straight to the authorizer.
    Direct,
}

/// A described request: its head, and how it was described.
#[derive(Debug)]
pub struct Described {
    pub parts: Parts,
    pub via: Via,
    /// The client's address when the proxy states it (Envoy's `source`); otherwise the
    /// authorizer's peer (the proxy) is the connection peer, as for a proxied request, and
    /// `X-Forwarded-For` counts only from `--trusted-proxies`.
    pub peer: Option<SocketAddr>,
}

// === impl Described ===

impl Described {
    /// The path and query the proxy will forward, as described.
    pub fn path_and_query(&self) -> &str {
        self.parts.uri.path_and_query().map_or("/", PathAndQuery::as_str)
    }

    /// The authority the proxy will forward, as described.
    pub fn authority(&self) -> &str {
        self.parts.uri.authority().map_or("", Authority::as_str)
    }
}

/// Forward-auth (`/forward-auth`): `X-Forwarded-Method`, `-Uri`, `-Host` and `-Proto` (Traefik,
/// Caddy; preferred when present), else `X-Original-URL` and `X-Original-Method` (ingress-nginx).
/// When both are present they must agree.
pub fn forward_auth(auth: &HeaderMap) -> Result<Described, DescribeError> {
    let method = single(auth, &X_FORWARDED_METHOD, "X-Forwarded-Method")?;
    let uri = single(auth, &X_FORWARDED_URI, "X-Forwarded-Uri")?;
    let original_url = single(auth, &X_ORIGINAL_URL, "X-Original-URL")?;
    let original_method = single(auth, &X_ORIGINAL_METHOD, "X-Original-Method")?;
    let (via, method, scheme, host, target) = if method.is_some() || uri.is_some() {
        let method = method.ok_or(DescribeError::Missing("X-Forwarded-Method"))?;
        let target = uri.ok_or(DescribeError::Missing("X-Forwarded-Uri"))?;
        let host =
            single(auth, &X_FORWARDED_HOST, "X-Forwarded-Host")?.ok_or(DescribeError::Missing("X-Forwarded-Host"))?;
        let scheme = single(auth, &X_FORWARDED_PROTO, "X-Forwarded-Proto")?
            .ok_or(DescribeError::Missing("X-Forwarded-Proto"))?;
        if let Some(url) = original_url {
            let (s, h, t) = absolute_url(url)?;
            if !s.eq_ignore_ascii_case(scheme) || !h.eq_ignore_ascii_case(host) || t != target {
                return Err(DescribeError::Contradictory("X-Original-URL and X-Forwarded-Proto/-Host/-Uri"));
            }
        }
        if original_method.is_some_and(|m| m != method) {
            return Err(DescribeError::Contradictory("X-Original-Method and X-Forwarded-Method"));
        }
        (Via::ForwardedHeaders, method, scheme, host, target)
    } else if let Some(url) = original_url {
        let method = original_method.ok_or(DescribeError::Missing("X-Original-Method"))?;
        let (scheme, host, target) = absolute_url(url)?;
        (Via::OriginalUrl, method, scheme, host, target)
    } else {
        return Err(DescribeError::Missing("X-Forwarded-Method/-Uri/-Host/-Proto or X-Original-URL/-Method"));
    };
    let headers = auth.iter().filter(|(n, _)| !DESCRIBING.contains(n));
    build(via, method, scheme, host, target, headers)
}

/// Envoy's HTTP ext_authz: the original method, headers and `Host`, the original path under
/// [`EXT_AUTHZ_PREFIX`]; the scheme from `X-Forwarded-Proto` (Envoy sets it), else `http`.
pub fn ext_authz_http(auth: &Parts) -> Result<Described, DescribeError> {
    let target = under_prefix(auth, EXT_AUTHZ_PREFIX)?;
    let host = single(&auth.headers, &HOST, "Host")?.ok_or(DescribeError::Missing("Host"))?;
    let scheme = single(&auth.headers, &X_FORWARDED_PROTO, "X-Forwarded-Proto")?.unwrap_or("http");
    let headers = auth.headers.iter().filter(|(n, _)| *n != X_FORWARDED_PROTO);
    build(Via::Envoy, auth.method.as_str(), scheme, host, target, headers)
}

/// A request a proxy sends straight to us: a preflight under [`PREFLIGHT_PREFIX`] (Traefik,
/// Caddy and nginx forward on any 2xx of their auth step, so an answered preflight must come
/// from here), or a reserved sign-in path (`/.portcullis/…`, never the app's) as it is. Its
/// `Host` is kept by the proxy; `X-Forwarded-Host`, when the proxy adds it, must agree.
pub fn direct(req: &Parts, prefix: &str) -> Result<Described, DescribeError> {
    let target = if prefix.is_empty() {
        req.uri.path_and_query().map_or("/", PathAndQuery::as_str)
    } else {
        under_prefix(req, prefix)?
    };
    let host = single(&req.headers, &HOST, "Host")?.ok_or(DescribeError::Missing("Host"))?;
    if single(&req.headers, &X_FORWARDED_HOST, "X-Forwarded-Host")?.is_some_and(|h| !h.eq_ignore_ascii_case(host)) {
        return Err(DescribeError::Contradictory("Host and X-Forwarded-Host"));
    }
    let scheme = single(&req.headers, &X_FORWARDED_PROTO, "X-Forwarded-Proto")?.unwrap_or("http");
    let headers = req.headers.iter().filter(|(n, _)| !DESCRIBING.contains(n));
    build(Via::Direct, req.method.as_str(), scheme, host, target, headers)
}

/// Envoy's gRPC `CheckRequest`: `attributes.request.http` (method, scheme, host, path, and the
/// raw `header_map` when Envoy sends it, else the merged `headers`), the client's address from
/// `attributes.source`.
pub fn check_request(check: &CheckRequest) -> Result<Described, DescribeError> {
    let attributes = check.attributes.as_ref().ok_or(DescribeError::Missing("attributes"))?;
    let http = attributes
        .request
        .as_ref()
        .and_then(|r| r.http.as_ref())
        .ok_or(DescribeError::Missing("attributes.request.http"))?;
    let peer =
        attributes.source.as_ref().and_then(|s| s.address.as_ref()).and_then(|a| a.address.as_ref()).and_then(|a| {
            match a {
                Address::SocketAddress(s) => {
                    let port = match s.port_specifier {
                        Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p)) => {
                            p
                        }
                        _ => 0,
                    };
                    s.address.parse().ok().map(|ip| SocketAddr::new(ip, u16::try_from(port).unwrap_or(0)))
                }
                _ => None,
            }
        });
    let mut headers = HeaderMap::new();
    let mut add = |name: &str, value: &[u8]| -> Result<(), DescribeError> {
        if name.starts_with(':') {
            return Ok(()); // pseudo-headers: method, path, authority and scheme come from their fields
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| DescribeError::Malformed("header name"))?;
        let value = HeaderValue::from_bytes(value).map_err(|_| DescribeError::Malformed("header value"))?;
        headers.append(name, value);
        Ok(())
    };
    match &http.header_map {
        Some(raw) if !raw.headers.is_empty() => {
            for h in &raw.headers {
                let value = if h.raw_value.is_empty() { h.value.as_bytes() } else { &h.raw_value[..] };
                add(&h.key, value)?;
            }
        }
        _ => {
            for (name, value) in &http.headers {
                add(name, value.as_bytes())?;
            }
        }
    }
    // Envoy's `host` field is the request's `:authority`/`Host`; a `host` entry in the map that
    // disagrees is a contradiction (RFC 9113 §8.3.1), and a duplicate one too.
    if headers.get_all(HOST).iter().any(|h| !h.as_bytes().eq_ignore_ascii_case(http.host.as_bytes())) {
        return Err(DescribeError::Contradictory("host and the Host header"));
    }
    headers.remove(HOST);
    let scheme = if http.scheme.is_empty() { "http" } else { &http.scheme };
    let mut described = build(Via::Envoy, &http.method, scheme, &http.host, &http.path, headers.iter())?;
    described.peer = peer;
    Ok(described)
}

/// The original target of a request sent under `prefix` (`/ext-authz/x?q` → `/x?q`).
fn under_prefix<'a>(req: &'a Parts, prefix: &str) -> Result<&'a str, DescribeError> {
    let pq = req.uri.path_and_query().map_or("/", PathAndQuery::as_str);
    match pq.strip_prefix(prefix) {
        Some(rest) if rest.starts_with('/') => Ok(rest),
        Some("") => Ok("/"),
        Some(rest) if rest.starts_with('?') => Err(DescribeError::Malformed("path")),
        _ => Err(DescribeError::Missing("the original path")),
    }
}

/// The one value of a describing header; two values are a contradiction.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName, what: &'static str) -> Result<Option<&'h str>, DescribeError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(DescribeError::Contradictory(what));
    }
    let s = first.to_str().map_err(|_| DescribeError::Malformed(what))?.trim();
    if s.contains(',') && *name != HOST {
        // A list (`X-Forwarded-Host: a, b`): two proxies describing two requests.
        return Err(DescribeError::Contradictory(what));
    }
    Ok(Some(s))
}

/// `https://host/path?q` → (scheme, host, target).
fn absolute_url(url: &str) -> Result<(&str, &str, &str), DescribeError> {
    let malformed = DescribeError::Malformed("X-Original-URL");
    let (scheme, rest) = url.split_once("://").ok_or(malformed.clone())?;
    let (host, target) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => rest.split_at(i),
        Some(_) => return Err(malformed),
        None => (rest, "/"),
    };
    Ok((scheme, host, target))
}

/// The request head: absolute-form target and a matching `Host`, the client's headers (the
/// describing ones, and the auth request's own framing, left out).
fn build<'h>(
    via: Via,
    method: &str,
    scheme: &str,
    host: &str,
    target: &str,
    headers: impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
) -> Result<Described, DescribeError> {
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| DescribeError::Malformed("method"))?;
    let scheme = match scheme {
        s if s.eq_ignore_ascii_case("http") => "http",
        s if s.eq_ignore_ascii_case("https") => "https",
        _ => return Err(DescribeError::Malformed("scheme")),
    };
    if host.is_empty() || host.contains('@') {
        return Err(DescribeError::Malformed("host"));
    }
    let authority: Authority = host.parse().map_err(|_| DescribeError::Malformed("host"))?;
    if !target.starts_with('/') {
        return Err(DescribeError::Malformed("path"));
    }
    let pq: PathAndQuery = target.parse().map_err(|_| DescribeError::Malformed("path"))?;
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|_| DescribeError::Malformed("path"))?;
    let (mut parts, ()) = Request::builder()
        .method(method)
        .uri(uri)
        .version(Version::HTTP_11)
        .body(())
        .map_err(|_| DescribeError::Malformed("request"))?
        .into_parts();
    for (name, value) in headers {
        if *name == HOST || *name == CONTENT_LENGTH || *name == TRANSFER_ENCODING {
            continue; // the auth request's own Host and framing, not the client's
        }
        parts.headers.append(name.clone(), value.clone());
    }
    let host = HeaderValue::from_str(authority.as_str()).map_err(|_| DescribeError::Malformed("host"))?;
    parts.headers.insert(HOST, host);
    Ok(Described { parts, via, peer: None })
}

#[cfg(test)]
mod tests;
