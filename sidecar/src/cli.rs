//! Command-line flags (each also readable from a `PORTCULLIS_*` environment variable), parsed
//! and validated into typed settings before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ipnet::IpNet;
use portcullis_crds::compile::{parse_duration_secs, parse_upstream};
use portcullis_crds::snapshot::Upstream;

/// Portcullis sidecar: identity-aware access control in front of one app.
#[derive(Parser, Debug, Clone)]
#[command(name = "portcullis-sidecar", version, about)]
pub struct Args {
    /// AccessApplication / AccessServiceToken / Secret YAML (a file or a directory), watched
    /// for changes. Without it the sidecar waits for a configuration and refuses traffic (503).
    #[arg(long, env = "PORTCULLIS_MANIFESTS")]
    pub manifests: Option<PathBuf>,

    /// Address for client traffic (host:port).
    #[arg(long, env = "PORTCULLIS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The app this sidecar protects (http://host:port).
    #[arg(long, env = "PORTCULLIS_UPSTREAM", default_value = "http://127.0.0.1:3000", value_parser = upstream)]
    pub upstream: Upstream,

    /// Address for /healthz, /readyz and /metrics (host:port).
    #[arg(long, env = "PORTCULLIS_ADMIN_LISTEN", default_value = "127.0.0.1:9901")]
    pub admin_listen: SocketAddr,

    /// Proxies whose X-Forwarded-For is believed for ipRange rules (comma-separated CIDRs).
    /// None by default: the connection's peer address is the client.
    #[arg(long, env = "PORTCULLIS_TRUSTED_PROXIES", value_delimiter = ',', value_parser = cidr)]
    pub trusted_proxies: Vec<IpNet>,

    /// Namespace for manifests that do not name one.
    #[arg(long, env = "PORTCULLIS_NAMESPACE", default_value = "default")]
    pub namespace: String,

    /// How long the app may take to start answering before the client gets 504.
    #[arg(long, env = "PORTCULLIS_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub upstream_timeout: Duration,

    /// TCP connect timeout to the app, forward routes and JWKS endpoints.
    #[arg(long, env = "PORTCULLIS_CONNECT_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub connect_timeout: Duration,

    /// How long a client may take to send its request headers.
    #[arg(long, env = "PORTCULLIS_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_read_timeout: Duration,

    /// Largest request head (request line + headers) in bytes; larger gets 431.
    #[arg(long, env = "PORTCULLIS_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,

    /// Most request header fields; more gets 431.
    #[arg(long, env = "PORTCULLIS_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,

    /// On SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, env = "PORTCULLIS_DRAIN_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub drain_timeout: Duration,

    /// The operator's Ed25519 public key (PEM or base64 of the raw 32 bytes), one file each;
    /// repeat during a key rotation. Without it (and without --manifests) pushes are refused.
    #[arg(long, env = "PORTCULLIS_PUSH_PUBLIC_KEY", value_delimiter = ',')]
    pub push_public_key: Vec<PathBuf>,

    /// This pod's name (downward API), which a push must be addressed to.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// This pod's namespace (downward API), which a push must be addressed to.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,

    /// Pushes issued longer ago than this are refused (replay window).
    #[arg(long, env = "PORTCULLIS_PUSH_MAX_AGE", default_value = "24h", value_parser = duration)]
    pub push_max_age: Duration,

    /// Worker threads (default: one per CPU).
    #[arg(long, env = "PORTCULLIS_WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    /// Log format.
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `portcullis_sidecar=debug`).
    #[arg(long, env = "PORTCULLIS_LOG", default_value = "info")]
    pub log: String,
}

/// Log output format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration_secs(s).map(Duration::from_secs)
}

fn upstream(s: &str) -> Result<Upstream, String> {
    parse_upstream(s)
}

fn cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (e.g. 10.0.0.0/8)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contract() {
        let a = Args::try_parse_from(["portcullis-sidecar"]).unwrap();
        assert_eq!(a.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(a.admin_listen.to_string(), "127.0.0.1:9901");
        assert_eq!(a.upstream.authority, "127.0.0.1:3000");
        assert!(a.trusted_proxies.is_empty());
    }

    #[test]
    fn rejects_bad_flags_with_clear_errors() {
        for args in [
            vec!["x", "--listen", "8080"],
            vec!["x", "--upstream", "ftp://a"],
            vec!["x", "--trusted-proxies", "10.0.0.0/99"],
            vec!["x", "--upstream-timeout", "soon"],
        ] {
            assert!(Args::try_parse_from(&args).is_err(), "{args:?}");
        }
        let a = Args::try_parse_from(["x", "--trusted-proxies", "10.0.0.0/8,192.168.1.1"]).unwrap();
        assert_eq!(a.trusted_proxies.len(), 2);
    }
}
