//! Everything a request needs that outlives it, shared by all connections: the live config,
//! the outbound client, the start-up settings, the metrics, and the request ids.
//!
//! Owns [`Proxy`], [`ProxySettings`] and the request-id format. Must not decide or answer
//! requests (the phases in `pipeline.rs` do); every module of `http/` may depend on this one,
//! and it depends on none of them, so they import no one in a circle.

use super::upstream::AppConnections;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::HeaderValue;
use ipnet::IpNet;
use portcullis_crds::snapshot::Upstream;

use crate::config::ConfigStore;
use crate::decide::client_headers::UnderscoreHeaders;
use crate::metrics::Metrics;
use crate::outbound::HttpClient;

/// Settings fixed at start-up.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// The app beside us (`--upstream`).
    pub upstream: Upstream,
    /// Peers whose `X-Forwarded-For` is believed (`--trusted-proxies`).
    pub trusted_proxies: Vec<IpNet>,
    /// How long the upstream may take to send response headers before we answer 504.
    pub upstream_timeout: Duration,
    /// Scheme clients reach us with (`X-Forwarded-Proto`).
    pub client_scheme: &'static str,
    /// `--headers-with-underscores`: what header names with `_` get (protected spellings are
    /// always removed).
    pub underscore_headers: UnderscoreHeaders,
    /// `--body-read-timeout`: the longest a request body may take to arrive.
    pub body_read_timeout: Duration,
    /// `--connect-timeout`: the longest a new connection to the app may take.
    pub connect_timeout: Duration,
}

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    pub store: Arc<ConfigStore>,
    pub client: HttpClient,
    pub settings: ProxySettings,
    pub metrics: Arc<Metrics>,
    /// Kept-alive connections to a plain-HTTP `--upstream` (others go through `client`).
    pub app_connections: Option<AppConnections>,
    /// OTLP traces; `None` (the default) costs the request path one check.
    pub tracing: Option<crate::trace::Tracing>,
    request_ids: RequestIds,
}

// === impl Proxy ===

impl Proxy {
    pub fn new(store: Arc<ConfigStore>, client: HttpClient, settings: ProxySettings, metrics: Arc<Metrics>) -> Self {
        let app_connections = (settings.upstream.scheme == "http")
            .then(|| AppConnections::new(&settings.upstream.authority, settings.connect_timeout));
        Self { store, client, settings, metrics, app_connections, tracing: None, request_ids: RequestIds::new() }
    }

    /// The same proxy exporting traces.
    pub fn with_tracing(mut self, tracing: Option<crate::trace::Tracing>) -> Self {
        self.tracing = tracing;
        self
    }

    /// A fresh request id (`x-request-id`).
    pub fn next_request_id(&self) -> RequestId {
        self.request_ids.next()
    }
}

/// A request's id, `prefix-counter` in hex: kept in the request's own state (no allocation)
/// until its answer carries it as `x-request-id`.
pub struct RequestId([u8; 25]);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only hex digits and '-' are ever written.
        std::str::from_utf8(&self.0).unwrap_or("0")
    }

    /// The `x-request-id` value.
    pub fn header(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.0).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }
}

/// Request ids: a per-process random prefix and a counter — unique, cheap, and not guessable
/// across restarts.
struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

// === impl RequestIds ===

impl RequestIds {
    fn new() -> Self {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        Self { prefix: (seed as u32) ^ std::process::id().rotate_left(16), next: AtomicU64::new(1) }
    }

    fn next(&self) -> RequestId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 25];
        for (i, digit) in buf[..8].iter_mut().enumerate() {
            *digit = HEX[((self.prefix >> (28 - 4 * i)) & 0xf) as usize];
        }
        buf[8] = b'-';
        for (i, digit) in buf[9..].iter_mut().enumerate() {
            *digit = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
        RequestId(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_and_well_formed() {
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(a.header(), a.as_str());
        assert_eq!(a.as_str().len(), 25);
        let (prefix, counter) = a.as_str().split_once('-').unwrap();
        assert_eq!(prefix, format!("{:08x}", ids.prefix));
        assert_eq!(u64::from_str_radix(counter, 16).unwrap() + 1, u64::from_str_radix(&b.as_str()[9..], 16).unwrap());
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'));
    }
}
