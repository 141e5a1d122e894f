//! Forwarding: builds the upstream request (hop-by-hop and client identity headers removed,
//! ours set), sends it with a deadline on the response headers, streams both bodies, and puts
//! the CORS headers on the answer. WebSocket upgrades are spliced after authentication.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue, HOST, SET_COOKIE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::body::{Deadline, Expired};
use super::headers::{
    is_upgrade_request, remove_cookie, strip_hop_by_hop, NameFilter, AUTHENTICATED_USER_EMAIL, CLIENT_ID,
    CLIENT_SECRET, JWT_ASSERTION, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
};
use super::proxy::Proxy;
use super::respond::{refusal, with_cors, Refusal};
use super::upstream::{AppConnections, UpstreamError};
use crate::config::LiveApp;
use crate::decide::authn::{IdentityHeaderValues, Principal};
use crate::decide::client_headers::PROTECTED_NAMES;
use crate::decide::request::{Canonical, Destination};
use crate::outbound::OutBody;
use portcullis_crds::paths;
use portcullis_crds::snapshot::{ForwardRoute, RouteCredentials, Upstream};

/// The identity headers the app receives.
pub enum IdentityHeaders {
    None,
    User(IdentityHeaderValues),
    Service { client_id: HeaderValue },
}

impl IdentityHeaders {
    pub fn from_principal(p: &Principal) -> Self {
        match p {
            // Rendered when the token was verified; a clone shares the bytes.
            Principal::User(u) => IdentityHeaders::User(u.headers.clone()),
            Principal::Service(s) => match HeaderValue::from_str(&s.client_id) {
                Ok(client_id) => IdentityHeaders::Service { client_id },
                Err(_) => IdentityHeaders::None,
            },
        }
    }
}

/// One forwarding job.
pub struct Forward<'a> {
    pub app: &'a LiveApp,
    pub destination: Destination<'a>,
    pub identity: IdentityHeaders,
    /// The request's `Origin` for an actual CORS request (CORS headers on the answer).
    pub origin: Option<HeaderValue>,
    /// The request as decided: the authority and path the app receives.
    pub canonical: Canonical,
    /// Client headers to remove besides the protected names (`decide::client_headers`).
    pub drop_headers: Vec<HeaderName>,
}

/// One change to the client's request headers on the way to the app.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Remove every value of this name.
    Remove(HeaderName),
    /// Replace every value of this name with this one.
    Set(HeaderName, HeaderValue),
}

// === impl Forward ===

impl Forward<'_> {
    /// The edits that make the client's headers the ones decided, removals first: every client
    /// copy of a protected name (`decide::client_headers`, and the application's own JWT header)
    /// and the underscore spellings, then the routed authority as `X-Forwarded-Host` (and `Host`
    /// for the app), `X-Forwarded-Proto`, and the identity headers. The proxy applies them to the
    /// upstream request; the external authorizer hands the same edits to the proxy it serves.
    /// Hop-by-hop headers, `X-Forwarded-For` and a forward route's own headers stay the glue's.
    pub fn header_edits(&self, client_scheme: &'static str, mut edit: impl FnMut(HeaderEdit)) {
        for name in self.removed_names() {
            edit(HeaderEdit::Remove(name.clone()));
        }
        self.header_sets(client_scheme, |name, value| edit(HeaderEdit::Set(name, value)));
    }

    /// The names [`Forward::header_edits`] removes: the protected names but `X-Forwarded-*`
    /// (Host and Proto are set, For is appended to), the application's JWT header, and the
    /// underscore spellings.
    fn removed_names(&self) -> impl Iterator<Item = &HeaderName> {
        PROTECTED_NAMES
            .iter()
            .filter(|n| !is_forwarded(n))
            .chain(std::iter::once(self.app.jwt.header_name()))
            .chain(&self.drop_headers)
    }

    /// Whether `name` is one of [`Forward::removed_names`], testing the cheap equalities first.
    fn removes(&self, name: &HeaderName) -> bool {
        (REMOVED_PROTECTED.may_contain(name) && PROTECTED_NAMES.contains(name) && !is_forwarded(name))
            || name == self.app.jwt.header_name()
            || self.drop_headers.contains(name)
    }

    /// Applies [`Forward::header_edits`] to the request's own headers: the removals in one pass
    /// over the names present (a handful, usually none of them removed) instead of one hashed
    /// lookup per name removed, then the values set.
    fn edit_headers(&self, client_scheme: &'static str, headers: &mut http::HeaderMap) {
        let doomed: Vec<HeaderName> = headers.keys().filter(|n| self.removes(n)).cloned().collect();
        for name in doomed {
            headers.remove(name);
        }
        self.header_sets(client_scheme, |name, value| {
            headers.insert(name, value);
        });
    }

    /// The `Set` half of [`Forward::header_edits`].
    fn header_sets(&self, client_scheme: &'static str, mut edit: impl FnMut(HeaderName, HeaderValue)) {
        edit(X_FORWARDED_PROTO, HeaderValue::from_static(client_scheme));
        edit(X_FORWARDED_HOST, self.canonical.authority.clone());
        if !matches!(self.destination, Destination::App) {
            return; // another application: its own Host and token, never our identity headers
        }
        // The app sees the authority that was routed, never a `Host` the client sent beside
        // another target (RFC 9112 §3.2.2: the target's authority replaces it).
        edit(HOST, self.canonical.authority.clone());
        match &self.identity {
            IdentityHeaders::None => {}
            IdentityHeaders::User(values) => {
                if let Some(j) = &values.assertion {
                    edit(JWT_ASSERTION, j.clone());
                }
                if let Some(e) = &values.email {
                    edit(AUTHENTICATED_USER_EMAIL, e.clone());
                }
            }
            IdentityHeaders::Service { client_id } => edit(CLIENT_ID, client_id.clone()),
        }
    }
}

/// The protected names removed (not `X-Forwarded-*`), for a quick test of each name present.
static REMOVED_PROTECTED: LazyLock<NameFilter> =
    LazyLock::new(|| NameFilter::of(PROTECTED_NAMES.iter().filter(|n| !is_forwarded(n))));

fn is_forwarded(name: &HeaderName) -> bool {
    name.as_str().starts_with("x-forwarded-")
}

/// Sends the request on and returns the answer (or the sidecar's own 502/504/503).
pub async fn forward(
    proxy: &Proxy,
    fwd: Forward<'_>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    upstream_time: &mut Duration,
    request_id: &str,
    trace: Option<&crate::trace::RequestTrace>,
) -> Response<OutBody> {
    let app = fwd.app;
    let upgrade = is_upgrade_request(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();

    let forward_path = fwd.canonical.forward_path.as_deref();
    let (upstream, path_and_query): (&Upstream, PathAndQuery) = match &fwd.destination {
        Destination::App => (&proxy.settings.upstream, app_path(&parts.uri, forward_path)),
        Destination::Route(route) => (&route.upstream, route_path(route, &parts.uri, forward_path)),
    };
    // The app's own kept-alive connections take an origin-form target; upgrades (their
    // connection leaves the pool) and everything else go through the general client.
    let app_connections = match (&fwd.destination, &proxy.app_connections) {
        (Destination::App, Some(c)) if !upgrade => Some(c),
        _ => None,
    };
    let uri = match app_connections {
        Some(_) => Some(Uri::from(path_and_query)),
        None => build_uri(upstream, path_and_query),
    };
    let Some(uri) = uri else {
        return refusal(app, fwd.origin.as_ref(), &Refusal::UpstreamUnreachable, request_id);
    };
    upstream_headers(proxy, &fwd, &mut parts.headers, upgrade, peer);
    // Traced: the app's `traceparent` names the forward span (tracing off: left as the client sent it).
    let span = trace.map(|t| t.forward(&mut parts.headers));
    parts.uri = uri;
    // The client may have spoken HTTP/2; the pooled client picks the upstream's version.
    parts.version = http::Version::HTTP_11;
    let (body, body_expired) = deadline_body(proxy, body);
    let out = Request::from_parts(parts, body);

    let sent = Instant::now();
    let result = exchange(proxy, app_connections, out, deadline_after(sent, proxy.settings.upstream_timeout)).await;
    *upstream_time = sent.elapsed();
    if let Some(span) = span {
        span.end(match &result {
            Ok(resp) => Ok(resp.status().as_u16()),
            Err(Failed::Timeout) => Err("timeout"),
            Err(Failed::Exchange(kind, _)) => Err(kind),
        });
    }
    let failure = match result {
        Ok(resp) => return finish(&fwd, resp, client_upgrade),
        Err(Failed::Exchange(..)) if body_expired.as_ref().is_some_and(Expired::get) => {
            proxy.metrics.client_timeouts.with_label_values(&["body"]).inc();
            Refusal::BodyTimeout
        }
        Err(Failed::Exchange(kind, error)) => {
            proxy.metrics.upstream_errors.with_label_values(&[&app.label, kind]).inc();
            tracing::warn!(request_id, app = %app.label, upstream = %upstream.authority, error, "upstream request failed");
            Refusal::UpstreamUnreachable
        }
        Err(Failed::Timeout) => {
            proxy.metrics.upstream_errors.with_label_values(&[&app.label, "timeout"]).inc();
            Refusal::UpstreamTimeout
        }
    };
    refusal(app, fwd.origin.as_ref(), &failure, request_id)
}

/// The client's headers made the upstream's: hop-by-hop removed, the decided edits applied,
/// `X-Forwarded-For` appended, and a forward route's own headers.
fn upstream_headers(proxy: &Proxy, fwd: &Forward<'_>, headers: &mut HeaderMap, upgrade: bool, peer: SocketAddr) {
    strip_hop_by_hop(headers, upgrade);
    fwd.edit_headers(proxy.settings.client_scheme, headers);
    append_forwarded_for(headers, peer);
    if let Destination::Route(route) = &fwd.destination {
        route_headers(fwd.app, route, headers);
    }
}

/// Another application: its own authority as Host, the route's token, and neither the user's
/// session cookie nor identity headers.
fn route_headers(app: &LiveApp, route: &ForwardRoute, headers: &mut HeaderMap) {
    if let Ok(h) = HeaderValue::from_str(&route.upstream.authority) {
        headers.insert(HOST, h);
    }
    remove_cookie(headers, &app.spec.identity.cookie_name);
    headers.remove(http::header::AUTHORIZATION);
    if let RouteCredentials::Token(c) = &route.credentials {
        if let (Ok(id), Ok(mut secret)) =
            (HeaderValue::from_str(&c.client_id), HeaderValue::from_str(c.client_secret.expose()))
        {
            headers.insert(CLIENT_ID, id);
            secret.set_sensitive(true);
            headers.insert(CLIENT_SECRET, secret);
        }
    }
}

/// The request body under `--body-read-timeout`. Only a body still to come can trickle; GETs
/// and the like skip the timer, and one already ended goes on as an empty body (which boxes
/// without allocating).
fn deadline_body(proxy: &Proxy, body: Incoming) -> (OutBody, Option<Expired>) {
    if body.is_end_stream() {
        (http_body_util::Empty::new().map_err(|never| match never {}).boxed(), None)
    } else {
        let (body, expired) = Deadline::new(body, proxy.settings.body_read_timeout);
        (body.boxed(), Some(expired))
    }
}

/// `timeout` after `sent`; one too long to add is thirty years (as `tokio::time::timeout` does).
fn deadline_after(sent: Instant, timeout: Duration) -> tokio::time::Instant {
    let far = || sent + Duration::from_secs(30 * 365 * 86_400);
    tokio::time::Instant::from_std(sent.checked_add(timeout).unwrap_or_else(far))
}

/// Why the app's answer did not come.
enum Failed {
    /// No answer's head before `--upstream-timeout`.
    Timeout,
    /// The exchange failed: (metric kind, message).
    Exchange(&'static str, String),
}

/// Sends the request on the app's own connections or through the general client, waiting for
/// the answer's head until `deadline`.
async fn exchange(
    proxy: &Proxy,
    app_connections: Option<&AppConnections>,
    out: Request<OutBody>,
    deadline: tokio::time::Instant,
) -> Result<Response<OutBody>, Failed> {
    match app_connections {
        Some(c) => c.request(out, deadline).await.map(|r| r.map(boxed)).map_err(|e| match e {
            UpstreamError::Timeout => Failed::Timeout,
            e => Failed::Exchange(e.reason(), e.to_string()),
        }),
        None => match tokio::time::timeout_at(deadline, proxy.client.request(out)).await {
            Err(_) => Err(Failed::Timeout),
            Ok(answer) => answer.map(|r| r.map(boxed)).map_err(|e| {
                let kind = if e.is_connect() { "connect" } else { "io" };
                Failed::Exchange(kind, e.to_string())
            }),
        },
    }
}

/// The app's answer on its way back: an upgrade spliced, hop-by-hop headers removed, a forward
/// route's `Set-Cookie` stripped, and the CORS headers for the request's origin.
fn finish(
    fwd: &Forward<'_>,
    mut resp: Response<OutBody>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<OutBody> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(splice(client_upgrade, upstream_upgrade));
        }
    } else {
        strip_hop_by_hop(resp.headers_mut(), false);
    }
    if let Destination::Route(route) = &fwd.destination {
        if route.strip_set_cookie {
            resp.headers_mut().remove(SET_COOKIE);
        }
    }
    with_cors(fwd.app, fwd.origin.as_ref(), resp)
}

/// An answer's body as the server sends it on.
fn boxed<B>(body: B) -> OutBody
where
    B: http_body::Body<Data = bytes::Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    body.map_err(Into::into).boxed()
}

/// Copies bytes both ways between the upgraded client and upstream connections.
async fn splice(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

/// The path the app sees: the canonical one (what was routed) with the original query.
fn app_path(uri: &Uri, canonical: Option<&str>) -> PathAndQuery {
    match canonical {
        None => uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")),
        Some(p) => with_query(p, uri.query()),
    }
}

/// `/api/items` with prefix `/api` and `stripPrefix` → `/items`; the upstream's base path first.
fn route_path(route: &ForwardRoute, uri: &Uri, canonical: Option<&str>) -> PathAndQuery {
    let path = canonical.unwrap_or_else(|| uri.path());
    // The route matched these segments (without `;parameters`); strip them with theirs.
    let stripped = route.strip_prefix.then(|| paths::strip_prefix_segments(&route.path_prefix, path)).flatten();
    let rest = stripped.unwrap_or(path);
    let rest = if rest.is_empty() { "/" } else { rest };
    let joined = format!("{}{}", route.upstream.base_path, rest);
    with_query(&joined, uri.query())
}

fn with_query(path: &str, query: Option<&str>) -> PathAndQuery {
    let s = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    // The parts came from a parsed URI, so they re-parse; "/" is the fail-safe.
    s.parse().unwrap_or_else(|_| PathAndQuery::from_static("/"))
}

fn build_uri(upstream: &Upstream, pq: PathAndQuery) -> Option<Uri> {
    let scheme: Scheme = upstream.scheme.parse().ok()?;
    let authority: Authority = upstream.authority.parse().ok()?;
    Uri::builder().scheme(scheme).authority(authority).path_and_query(pq).build().ok()
}

/// `X-Forwarded-For`: the client's first value (when it is text) with the peer appended, or the
/// peer alone; other values are dropped. One lookup of the name.
fn append_forwarded_for(headers: &mut http::HeaderMap, peer: SocketAddr) {
    let mut v4 = [0u8; 15];
    let ip: std::borrow::Cow<'_, [u8]> = match peer.ip() {
        // Every request renders its peer: digits by hand, not through `fmt` (a tenth of the cost).
        std::net::IpAddr::V4(ip) => std::borrow::Cow::Borrowed(dotted_quad(&mut v4, ip)),
        ip => std::borrow::Cow::Owned(ip.to_string().into_bytes()),
    };
    match headers.entry(X_FORWARDED_FOR) {
        http::header::Entry::Occupied(mut entry) => {
            let joined = match (entry.get().to_str(), std::str::from_utf8(&ip)) {
                (Ok(existing), Ok(ip)) => HeaderValue::from_str(&format!("{existing}, {ip}")),
                _ => HeaderValue::from_bytes(&ip),
            };
            if let Ok(v) = joined {
                entry.insert(v);
            }
        }
        http::header::Entry::Vacant(entry) => {
            if let Ok(v) = HeaderValue::from_bytes(&ip) {
                entry.insert(v);
            }
        }
    }
}

/// `ip` as `a.b.c.d` in `buf`.
fn dotted_quad(buf: &mut [u8; 15], ip: std::net::Ipv4Addr) -> &[u8] {
    let mut n = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    &buf[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, strip: bool, base: &str) -> ForwardRoute {
        ForwardRoute {
            path_prefix: prefix.into(),
            upstream: Upstream { scheme: "https".into(), authority: "api.mysite.com".into(), base_path: base.into() },
            strip_prefix: strip,
            credentials: RouteCredentials::None,
            strip_set_cookie: true,
        }
    }

    #[test]
    fn route_paths() {
        let uri: Uri = "/api/items?x=1".parse().unwrap();
        assert_eq!(route_path(&route("/api", true, ""), &uri, None), "/items?x=1");
        assert_eq!(route_path(&route("/api", false, ""), &uri, None), "/api/items?x=1");
        assert_eq!(route_path(&route("/api", true, "/v1"), &uri, None), "/v1/items?x=1");
        let bare: Uri = "/api".parse().unwrap();
        assert_eq!(route_path(&route("/api", true, ""), &bare, None), "/");
        // The matched segment's `;parameters` go with it.
        let params: Uri = "/api;v=1/items;x?q".parse().unwrap();
        assert_eq!(route_path(&route("/api", true, "/v1"), &params, None), "/v1/items;x?q");
    }

    #[test]
    fn app_path_uses_the_normalised_path_with_the_query() {
        let uri: Uri = "/public/../admin?q=1".parse().unwrap();
        assert_eq!(app_path(&uri, Some("/admin")), "/admin?q=1");
        assert_eq!(app_path(&uri, None), "/public/../admin?q=1");
    }

    #[test]
    fn dotted_quads_render_as_std_does() {
        for ip in ["0.0.0.0", "255.255.255.255", "10.0.0.9", "127.0.0.1", "192.168.100.20", "1.10.100.99"] {
            let ip: std::net::Ipv4Addr = ip.parse().unwrap();
            assert_eq!(dotted_quad(&mut [0; 15], ip), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = http::HeaderMap::new();
        let peer: SocketAddr = "10.0.0.9:1234".parse().unwrap();
        append_forwarded_for(&mut h, peer);
        append_forwarded_for(&mut h, peer);
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.9, 10.0.0.9");
        // A second line is dropped (the first value is the chain); a value that is not text
        // is replaced by the peer; an IPv6 peer renders as std does.
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.1"));
        append_forwarded_for(&mut h, peer);
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().collect::<Vec<_>>(), ["10.0.0.9, 10.0.0.9, 10.0.0.9"]);
        h.insert(X_FORWARDED_FOR, HeaderValue::from_bytes(b"\xff").unwrap());
        append_forwarded_for(&mut h, "[2001:db8::1]:80".parse().unwrap());
        assert_eq!(h[&X_FORWARDED_FOR], "2001:db8::1");
    }
}
