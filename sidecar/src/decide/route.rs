//! Routing: which application a request is for (by host and normalised path), and which forward
//! route of that application a path takes.
//!
//! Owns the request-target rules (RFC 9112 §3.2, RFC 9110 §7.2) and "most specific wins" over
//! `spec.domains` (api.md, "Domains"). It must not authenticate, evaluate policies or build
//! responses; it must not allocate per request except where a path or host needs normalising.
//! Path normalisation itself is `portcullis_crds::paths`, shared with `compile`: one
//! implementation, so that what is matched is what was configured.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use http::header::HOST;
use http::{HeaderMap, Uri, Version};
use portcullis_crds::paths::{canonical_path, prefix_matches, readings, CanonicalPath};
use portcullis_crds::snapshot::{Application, DomainPattern, ForwardRoute, HostPattern};
use portcullis_crds::v1alpha1::EscapedSlashes;

use super::fast_hash::ConfigMap;

/// The canonical request target: what is routed, and exactly what the app receives (api.md,
/// "What the app receives is what was decided").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// The routing key: lower-case, without port or trailing dot; IPv6 literals keep their
    /// brackets (`[::1]`), as `compile` stores them.
    pub host: Cow<'a, str>,
    /// The authority the app receives as `Host` and `X-Forwarded-Host`: [`Target::host`] with
    /// the port the client named, if any.
    pub authority: Cow<'a, str>,
    /// The path: the form forwarded, the form matched, and whether servers read it differently.
    pub path: CanonicalPath<'a>,
}

/// Why a request has no usable target. Every variant is a `400` (api.md, "Domains").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetError {
    /// No authority in the request target and no `Host` header.
    MissingHost,
    /// More than one `Host` field line (RFC 9112 §3.2: 400).
    DuplicateHost,
    /// A `Host` or authority that is not `host[:port]` (userinfo, bad characters, bad port).
    InvalidHost,
    /// HTTP/2: a `host` header that names another authority than `:authority` (RFC 9113 §8.3.1).
    ConflictingHost,
    /// A path that cannot be normalised (not absolute, bad percent-encoding, control bytes).
    InvalidPath,
    /// A path with an encoded slash or backslash, a raw backslash or an encoded control byte,
    /// for an application that does not keep them (`spec.paths.escapedSlashes`), or whose
    /// decoded reading would route elsewhere.
    AmbiguousPath,
}

// === impl TargetError ===

impl TargetError {
    /// Stable label for metrics, logs and the JSON body.
    pub fn reason(&self) -> &'static str {
        match self {
            TargetError::MissingHost => "missing_host",
            TargetError::DuplicateHost => "duplicate_host",
            TargetError::InvalidHost => "invalid_host",
            TargetError::ConflictingHost => "conflicting_host",
            TargetError::InvalidPath => "invalid_path",
            TargetError::AmbiguousPath => "ambiguous_path",
        }
    }
}

/// The canonical target of a request: its authority and its path.
///
/// RFC 9112 §3.2.2: a request in absolute form routes by the URI's own authority, which
/// *replaces* `Host` (the app receives the authority that was routed, never the client's
/// `Host`). HTTP/2 carries it in `:authority` (hyper puts it in the URI); a `host` header that
/// disagrees with it is a 400 (RFC 9113 §8.3.1: they must be the same). Otherwise exactly one
/// valid `Host` header is required. RFC 9112 §3.2 also makes "more than one Host field line" and
/// "a Host field with an invalid value" a 400 for any request, so those are refused even when
/// the URI carries the authority. Userinfo in an authority is invalid (RFC 9110 §4.2.4).
pub fn request_target<'a>(version: Version, uri: &'a Uri, headers: &'a HeaderMap) -> Result<Target<'a>, TargetError> {
    let mut host_headers = headers.get_all(HOST).iter();
    let host_header = host_headers.next();
    if host_headers.next().is_some() {
        return Err(TargetError::DuplicateHost);
    }
    let header_authority = match host_header {
        Some(v) => Some(v.to_str().map_err(|_| TargetError::InvalidHost).and_then(parse_authority)?),
        None => None,
    };
    let (host, authority) = match uri.authority() {
        Some(a) => {
            let routed = parse_authority(a.as_str())?;
            if version == Version::HTTP_2 && header_authority.as_ref().is_some_and(|h| h.1 != routed.1) {
                return Err(TargetError::ConflictingHost);
            }
            routed
        }
        None => header_authority.ok_or(TargetError::MissingHost)?,
    };
    let path = canonical_path(uri.path()).map_err(|_| TargetError::InvalidPath)?;
    Ok(Target { host, authority, path })
}

/// Parses `host[:port]` (RFC 9110 §7.2 `uri-host [ ":" port ]`) into the routing host and the
/// canonical authority (lower-case host, no trailing dot, the port when one is given).
fn parse_authority(authority: &str) -> Result<(Cow<'_, str>, Cow<'_, str>), TargetError> {
    let (host, port) = if authority.starts_with('[') {
        if authority.contains('@') {
            return Err(TargetError::InvalidHost);
        }
        // IP-literal (RFC 3986 §3.2.2): brackets, then an optional port.
        let end = authority.find(']').ok_or(TargetError::InvalidHost)?;
        let (host, rest) = authority.split_at(end + 1);
        let literal = &host[1..end];
        // IPvFuture and zone identifiers are never configured domains.
        literal.parse::<Ipv6Addr>().map_err(|_| TargetError::InvalidHost)?;
        let port = match rest.strip_prefix(':') {
            Some(port) => Some(port),
            None if rest.is_empty() => None,
            None => return Err(TargetError::InvalidHost),
        };
        // RFC 3986 §3.2.3: port = *DIGIT; we also bound it to what fits a u16.
        if port.is_some_and(|p| p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit())) {
            return Err(TargetError::InvalidHost);
        }
        (lower(host), port)
    } else {
        let (host, port, upper) = scan_reg_name(authority.as_bytes()).ok_or(TargetError::InvalidHost)?;
        let host = &authority[..host];
        let host = if upper { Cow::Owned(host.to_ascii_lowercase()) } else { Cow::Borrowed(host) };
        (host, port.map(|at| &authority[at..]))
    };
    // An empty port is the same as none (RFC 3986 §6.2.3), so it is not forwarded.
    let port = port.filter(|p| !p.is_empty());
    let canonical = match port {
        None => host.clone(),
        // Already canonical: borrow the client's own bytes (the common case).
        Some(p) if matches!(host, Cow::Borrowed(h) if authority.len() == h.len() + 1 + p.len()) => {
            Cow::Borrowed(authority)
        }
        Some(p) => Cow::Owned(format!("{host}:{p}")),
    };
    Ok((host, canonical))
}

/// `reg-name [ ":" port ]` in one pass over the bytes (the request path's hottest parse):
/// the host's length without its one trailing dot (the absolute form of the same DNS name, RFC
/// 1034 §3.1), where the port starts, and whether the host has upper-case letters. `None` when
/// invalid: the host is restricted to what a configured domain can hold (letters, digits, `-`,
/// `_`) plus `.` between non-empty labels — anything else (userinfo, percent-encoding,
/// sub-delims) matches no domain and only serves to confuse whatever reads `Host` after us —
/// and the port is at most five digits (RFC 3986 §3.2.3, bounded to what fits a u16).
fn scan_reg_name(a: &[u8]) -> Option<(usize, Option<usize>, bool)> {
    let (mut label, mut upper) = (0usize, false);
    let mut end = a.len();
    for (i, &b) in a.iter().enumerate() {
        match b {
            b'.' if label == 0 => return None,
            b'.' => label = 0,
            b':' => {
                end = i;
                break;
            }
            b'A'..=b'Z' => (label, upper) = (label + 1, true),
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => label += 1,
            _ => return None,
        }
    }
    // The last label is empty only after a trailing dot (or for an empty host).
    let host = if label == 0 { end.checked_sub(1)? } else { end };
    if host == 0 {
        return None;
    }
    let port = a.get(end + 1..).map(|digits| (digits, end + 1));
    match port {
        Some((digits, _)) if digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) => None,
        Some((_, at)) => Some((host, Some(at), upper)),
        None => Some((host, None, upper)),
    }
}

/// ASCII lower-case, borrowing in the common case where the host already is.
fn lower(host: &str) -> Cow<'_, str> {
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// One domain of one application under a host key.
#[derive(Clone, Debug)]
struct Entry {
    /// Normalised prefix without trailing slash; `""` for the whole host.
    prefix: Box<str>,
    app: usize,
}

/// The domains of every application, indexed for per-request lookup. Built once per config.
///
/// Exact hosts and wildcard suffixes are hash keys (FxHash: the keys are the config's, see
/// `fast_hash`); under each key the entries are sorted longest prefix first (stable, so among
/// equal domains the first application wins, which `compile` already refuses as an overlap). A
/// lookup is one hash probe for the exact host plus one per label of the host for wildcards, and
/// never allocates.
#[derive(Clone, Debug, Default)]
pub struct Router {
    exact: ConfigMap<Box<str>, Vec<Entry>>,
    /// Keyed by the suffix after `*.`.
    wildcard: ConfigMap<Box<str>, Vec<Entry>>,
    /// Per application: whether it keeps escaped slashes (`spec.paths.escapedSlashes`), and its
    /// forward-route prefixes, for the readings check of [`Router::route_target`].
    escapes: Vec<(bool, Vec<Box<str>>)>,
}

// === impl Router ===

impl Router {
    pub fn new(apps: &[Application]) -> Self {
        let mut router = Router::default();
        for (app, application) in apps.iter().enumerate() {
            router.escapes.push((
                application.escaped_slashes == EscapedSlashes::KeepUnchanged,
                application.forward_routes.iter().map(|r| r.path_prefix.as_str().into()).collect(),
            ));
            for DomainPattern { host, path_prefix } in &application.domains {
                let (map, key) = match host {
                    HostPattern::Exact(h) => (&mut router.exact, h),
                    HostPattern::Wildcard(s) => (&mut router.wildcard, s),
                };
                // `compile` stores prefixes without a trailing slash; trimming again keeps a
                // hand-built snapshot from changing what "longest" means.
                let prefix = path_prefix.as_deref().unwrap_or("").trim_end_matches('/');
                map.entry(key.as_str().into()).or_default().push(Entry { prefix: prefix.into(), app });
            }
        }
        for entries in router.exact.values_mut().chain(router.wildcard.values_mut()) {
            entries.sort_by_key(|e| std::cmp::Reverse(e.prefix.len()));
        }
        router
    }

    /// The application a canonical target routes to: `Ok(None)` for no application (404).
    ///
    /// A path servers read differently ([`CanonicalPath::ambiguous`]) is refused unless the
    /// application it routes to keeps escaped slashes, and even then when any of the ways servers
    /// read its escapes ([`readings`] of the path the app receives) routes to another application
    /// or forward route — the one application's opt-in must not weaken another's protection.
    pub fn route_target(&self, target: &Target<'_>) -> Result<Option<usize>, TargetError> {
        let Some(app) = self.route(&target.host, &target.path.matching) else {
            return if target.path.ambiguous { Err(TargetError::AmbiguousPath) } else { Ok(None) };
        };
        if !target.path.ambiguous {
            return Ok(Some(app));
        }
        let Some((keeps, routes)) = self.escapes.get(app) else {
            return Err(TargetError::AmbiguousPath);
        };
        let same_route = |path: &str| routes.iter().position(|p| prefix_matches(p, path));
        let decided_route = same_route(&target.path.matching);
        let stays = |reading: Option<String>| {
            reading.is_some_and(|r| self.route(&target.host, &r) == Some(app) && same_route(&r) == decided_route)
        };
        if *keeps && readings(&target.path.forward).into_iter().all(stays) {
            Ok(Some(app))
        } else {
            Err(TargetError::AmbiguousPath)
        }
    }

    /// The index of the application serving `host` and `path`, both as [`request_target`]
    /// returns them (lower-case host without port; normalised path): the first domain of
    /// [`Router::walk`] whose prefix covers the path.
    pub fn route(&self, host: &str, path: &str) -> Option<usize> {
        self.walk(host, path).find(|c| c.path_matches).map(|c| c.app)
    }

    /// Every application domain whose host matches `host`, most specific first, with whether its
    /// prefix covers `path`. Routing takes the first that covers it; `explain` shows them all.
    ///
    /// Most specific first (api.md, "Domains"): an exact host before any wildcard, a longer
    /// wildcard suffix before a shorter one, then the longest path prefix on segment boundaries.
    /// A domain whose prefix does not cover the path does not match at all, so a less specific
    /// host may still serve it. Lazy: one hash probe for the exact host, then one per label of
    /// the host for wildcards, as far as the caller reads; never allocates.
    pub fn walk<'s>(&'s self, host: &'s str, path: &'s str) -> impl Iterator<Item = Candidate<'s>> + 's {
        let exact = self.exact.get(host).into_iter().flatten().map(|e| (None, e));
        // `*.suffix` covers every name ending in `.suffix`, at any depth, never `suffix`: the
        // candidates are the host's proper suffixes after each dot, longest first.
        let wildcards = (!self.wildcard.is_empty() && !is_ip_literal(host))
            .then(|| host.match_indices('.').filter_map(move |(i, _)| self.wildcard.get_key_value(&host[i + 1..])))
            .into_iter()
            .flatten()
            .flat_map(|(suffix, entries)| entries.iter().map(move |e| (Some(&**suffix), e)));
        exact.chain(wildcards).map(move |(wildcard_suffix, e)| Candidate {
            app: e.app,
            wildcard_suffix,
            path_prefix: &e.prefix,
            path_matches: prefix_matches(&e.prefix, path),
        })
    }
}

/// One domain that matched a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate<'s> {
    /// Index into the applications.
    pub app: usize,
    /// `Some(suffix)` when the domain was `*.suffix`.
    pub wildcard_suffix: Option<&'s str>,
    /// The domain's path prefix, `""` for the whole host.
    pub path_prefix: &'s str,
    /// Whether the prefix covers the path; the first candidate with `true` is the route.
    pub path_matches: bool,
}

/// An IP address has no subdomains: `*.0.0.1` must not cover `10.0.0.1`.
fn is_ip_literal(host: &str) -> bool {
    host.starts_with('[') || host.parse::<Ipv4Addr>().is_ok()
}

/// The forward route a path takes: the first whose prefix covers it on a segment boundary.
/// `routes` come from `compile` longest prefix first, so the first match is the most specific.
pub fn forward_route<'a>(routes: &'a [ForwardRoute], path: &str) -> Option<&'a ForwardRoute> {
    routes.iter().find(|r| prefix_matches(&r.path_prefix, path))
}

#[cfg(test)]
mod tests;
