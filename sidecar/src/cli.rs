//! Command-line flags (each serving flag also readable from a `PORTCULLIS_*` environment
//! variable), parsed and validated into typed settings before anything starts. Serving is the
//! default; `explain` and `doctor cors` are subcommands whose request flags the kubectl plugin
//! reuses (`RequestArgs`, `CorsArgs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use portcullis_crds::compile::{parse_duration_secs, parse_upstream};
use portcullis_crds::snapshot::Upstream;

/// `--headers-with-underscores` (Envoy's `headers_with_underscores_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "PascalCase")]
pub enum Underscores {
    /// Forward other names with '_' as sent.
    Allow,
    /// Remove every header whose name contains '_'.
    Drop,
    /// Refuse a request with such a header: 400 underscore_header.
    Reject,
}

impl From<Underscores> for crate::decide::client_headers::UnderscoreHeaders {
    fn from(u: Underscores) -> Self {
        match u {
            Underscores::Allow => Self::Allow,
            Underscores::Drop => Self::Drop,
            Underscores::Reject => Self::Reject,
        }
    }
}

/// Portcullis sidecar: identity-aware access control in front of one app.
#[derive(Parser, Debug, Clone)]
#[command(name = "portcullis-sidecar", version, about)]
pub struct Args {
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,

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
    #[arg(long, env = "PORTCULLIS_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = timeout)]
    pub upstream_timeout: Duration,

    /// TCP connect timeout to the app, forward routes and JWKS endpoints.
    #[arg(long, env = "PORTCULLIS_CONNECT_TIMEOUT", default_value = "5s", value_parser = timeout)]
    pub connect_timeout: Duration,

    /// How long a client may take to send its request headers.
    #[arg(long, env = "PORTCULLIS_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = timeout)]
    pub header_read_timeout: Duration,

    /// Largest request head (request line + headers) in bytes; larger gets 431.
    #[arg(long, env = "PORTCULLIS_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,

    /// Most request header fields; more gets 431.
    #[arg(long, env = "PORTCULLIS_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,

    /// How long a request body may take to arrive in full; a body still trickling in after it
    /// is cut and the client gets 408.
    #[arg(long, env = "PORTCULLIS_BODY_READ_TIMEOUT", default_value = "30s", value_parser = timeout)]
    pub body_read_timeout: Duration,

    /// Most client connections open at once; further ones wait in the listen backlog until one
    /// closes (counted in portcullis_connection_limit_reached_total).
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Above this many open client connections, new plain-HTTP/1.1 connections give hyper's
    /// buffers back while they wait for their next keep-alive request (about 2-3 KiB instead of
    /// 30 KiB per idle connection; each request after a wait pays for a fresh HTTP/1 state).
    /// 0 parks every such connection; TLS and h2c connections never park.
    #[arg(long, env = "PORTCULLIS_PARK_CONNECTIONS_ABOVE", default_value_t = 100)]
    pub park_connections_above: u32,

    /// How long a connection that may park waits for its next request before it parks: one
    /// whose requests come closer together keeps its HTTP/1 state (no fresh state per request).
    /// 0 parks at once. Below --header-read-timeout, or none parks (a warning at start says so).
    #[arg(long, env = "PORTCULLIS_PARK_IDLE_AFTER", default_value = "1s", value_parser = duration)]
    pub park_idle_after: Duration,

    /// What request headers whose name contains '_' get. Names that read as a header the
    /// sidecar owns with '_' as '-' (Cf_Access_Authenticated_User_Email, X_Forwarded_Host, ...)
    /// are always removed: CGI, WSGI, PHP and Rack read them as the real ones.
    #[arg(long, env = "PORTCULLIS_HEADERS_WITH_UNDERSCORES", value_enum, default_value_t = Underscores::Allow)]
    pub headers_with_underscores: Underscores,

    /// On SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, env = "PORTCULLIS_DRAIN_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub drain_timeout: Duration,

    /// The operator's Ed25519 public key (PEM or base64 of the raw 32 bytes), one file each;
    /// repeat during a key rotation. Without it (and without --manifests) pushes are refused.
    #[arg(long, env = "PORTCULLIS_PUSH_PUBLIC_KEY", value_delimiter = ',')]
    pub push_public_key: Vec<PathBuf>,

    /// The same keys given inline (PEM or base64), comma-separated: how the operator's
    /// injection webhook passes its key, since a pod cannot mount a Secret of the operator's
    /// namespace. The public key is not secret.
    #[arg(long, env = "PORTCULLIS_PUSH_PUBLIC_KEY_VALUE", value_delimiter = ',')]
    pub push_public_key_value: Vec<String>,

    /// This pod's name (downward API), which a push must be addressed to.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// This pod's namespace (downward API), which a push must be addressed to.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,

    /// Pushes issued longer ago than this are refused (replay window).
    #[arg(long, env = "PORTCULLIS_PUSH_MAX_AGE", default_value = "24h", value_parser = timeout)]
    pub push_max_age: Duration,

    /// Serve HTTPS on --listen with this certificate chain (PEM); reloaded when it changes.
    #[arg(long, env = "PORTCULLIS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM PKCS#8, RSA or ECDSA); reloaded when it changes.
    #[arg(long, env = "PORTCULLIS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Worker threads (default: one per CPU).
    #[arg(long, env = "PORTCULLIS_WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    /// Log format.
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `portcullis_sidecar=debug`).
    #[arg(long, env = "PORTCULLIS_LOG", default_value = "info")]
    pub log: String,

    /// Serve `POST /explain` on the admin port. Off by default: its answers reveal the
    /// configuration (domains, origins, policy names and rules) to whoever reaches that port.
    #[arg(long, env = "PORTCULLIS_ENABLE_EXPLAIN_ENDPOINT")]
    pub enable_explain_endpoint: bool,

    #[command(flatten)]
    pub traces: TraceArgs,
}

/// OTLP traces (README "Traces"): the OpenTelemetry variables, each also a flag. Off unless an
/// endpoint is given.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Traces")]
pub struct TraceArgs {
    /// Where spans go (OTLP gRPC, e.g. http://otel-collector:4317). Setting it turns tracing on.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Where spans go, overriding --otlp-endpoint for traces.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_traces_endpoint: Option<String>,

    /// OTLP protocol: grpc.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL")]
    pub otlp_protocol: Option<String>,

    /// always_on, always_off, traceidratio, parentbased_always_on (default),
    /// parentbased_always_off or parentbased_traceidratio.
    #[arg(long, env = "OTEL_TRACES_SAMPLER")]
    pub traces_sampler: Option<String>,

    /// The ratio of the *traceidratio samplers (0 to 1, default 1).
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG")]
    pub traces_sampler_arg: Option<String>,

    /// The service name spans carry (default portcullis-sidecar, or portcullis-authorizer).
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,

    /// `true` turns tracing off whatever else is set.
    #[arg(long, env = "OTEL_SDK_DISABLED")]
    pub otel_sdk_disabled: Option<String>,

    /// Start a trace for a request without a valid traceparent (a malformed one is replaced,
    /// never forwarded). With false, such requests are not traced and pass as sent.
    #[arg(long, env = "PORTCULLIS_TRACE_NEW_ROOTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub trace_new_roots: bool,

    /// Name the caller (email or service token) as the span's enduser.id. Off by default.
    #[arg(long, env = "PORTCULLIS_TRACE_IDENTITY")]
    pub trace_identity: bool,
}

impl TraceArgs {
    /// The values as the OpenTelemetry variables.
    pub fn vars(&self) -> portcullis_crds::telemetry::OtelVars {
        portcullis_crds::telemetry::OtelVars {
            endpoint: self.otlp_endpoint.clone(),
            traces_endpoint: self.otlp_traces_endpoint.clone(),
            protocol: self.otlp_protocol.clone(),
            sampler: self.traces_sampler.clone(),
            sampler_arg: self.traces_sampler_arg.clone(),
            service_name: self.service_name.clone(),
            sdk_disabled: self.otel_sdk_disabled.clone(),
        }
    }

    /// The options besides the variables.
    pub fn options(&self) -> crate::trace::TraceOptions {
        crate::trace::TraceOptions { new_roots: self.trace_new_roots, identity: self.trace_identity }
    }
}

/// Subcommands; without one the sidecar serves.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Explain what the sidecar would do with a request, step by step (no request is sent).
    Explain(ExplainArgs),
    /// Diagnose a running deployment from outside.
    #[command(subcommand)]
    Doctor(DoctorCommand),
    /// Serve as the external authorizer of the proxy you already run: Envoy ext_authz over gRPC
    /// (`envoy.service.auth.v3.Authorization/Check`, h2c) and HTTP (under `/ext-authz/`), and
    /// forward-auth for Traefik, Caddy and nginx (`/forward-auth`), all on `--listen`. Takes the
    /// serving flags (`--manifests`, `--listen`, `--admin-listen`, `--trusted-proxies`, …);
    /// `--upstream` is not used.
    Authz(AuthzArgs),
}

/// `authz`: the serving flags, parsed by [`AuthzArgs::serving`] with the very definitions the
/// sidecar uses, so the two cannot drift apart.
#[derive(clap::Args, Debug, Clone)]
pub struct AuthzArgs {
    /// The serving flags (see `portcullis-sidecar --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0.., value_name = "FLAGS")]
    pub flags: Vec<String>,
}

impl Args {
    /// The serving flags, as the command line gives them (without the program name).
    pub fn from_flags<I: IntoIterator<Item = String>>(flags: I) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("portcullis-sidecar".to_owned()).chain(flags))
    }
}

impl AuthzArgs {
    /// The flags as the sidecar's [`Args`]; another subcommand after `authz` is an error.
    pub fn serving(&self) -> Result<Args, clap::Error> {
        use clap::CommandFactory;
        let argv = std::iter::once("portcullis-sidecar authz".to_owned()).chain(self.flags.iter().cloned());
        let args = Args::try_parse_from(argv)?;
        if args.command.is_some() {
            return Err(Args::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                "`authz` takes the serving flags only, not another subcommand",
            ));
        }
        Ok(args)
    }
}

/// `explain`: the manifests and the request.
#[derive(clap::Args, Debug, Clone)]
pub struct ExplainArgs {
    /// AccessApplication / AccessServiceToken / Secret YAML (a file or a directory).
    #[arg(long)]
    pub manifests: PathBuf,

    /// Namespace for manifests that do not name one.
    #[arg(long, default_value = "default")]
    pub namespace: String,

    #[command(flatten)]
    pub request: RequestArgs,
}

/// The synthetic request and how to show its explanation.
#[derive(clap::Args, Debug, Clone)]
pub struct RequestArgs {
    /// Request method.
    #[arg(long, default_value = "GET")]
    pub method: String,

    /// Absolute URL, e.g. https://api.mysite.com/data (its host becomes `Host`).
    #[arg(long)]
    pub url: String,

    /// A request header, `Name: value`; repeat for more.
    #[arg(long = "header", short = 'H', value_parser = header_pair)]
    pub headers: Vec<(String, String)>,

    /// A `Cookie` header value, e.g. `CF_Authorization=<token>`.
    #[arg(long)]
    pub cookie: Option<String>,

    /// The connection's peer address.
    #[arg(long, default_value = "127.0.0.1")]
    pub peer: std::net::IpAddr,

    /// Proxies whose X-Forwarded-For is believed (comma-separated CIDRs), as `--trusted-proxies`
    /// when serving.
    #[arg(long, value_delimiter = ',', value_parser = cidr)]
    pub trusted_proxies: Vec<IpNet>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// Evaluate tokens at this instant (RFC 3339, e.g. 2026-11-24T12:00:00Z); default: now.
    #[arg(long, value_parser = timestamp)]
    pub now: Option<i64>,
}

/// `explain` output format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// `doctor` subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum DoctorCommand {
    /// Act as a browser against a running deployment: preflight (when needed), then the actual
    /// request; report each problem a browser would hit and the AccessApplication field to fix.
    Cors(CorsArgs),
}

/// `doctor cors`: what the page would do.
#[derive(clap::Args, Debug, Clone)]
pub struct CorsArgs {
    /// The page's origin, e.g. https://example.com.
    #[arg(long)]
    pub origin: String,

    /// The URL the page calls, e.g. https://api.mysite.com/data.
    #[arg(long)]
    pub url: String,

    /// The page sends credentials (`fetch(url, {credentials: "include"})`).
    #[arg(long)]
    pub credentials: bool,

    /// A header the page sets (name, or `Name: value`); repeat for more.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,

    /// The request method.
    #[arg(long, default_value = "GET")]
    pub method: String,

    /// A `Cookie` value the browser holds for the URL's site, sent with `--credentials`.
    #[arg(long)]
    pub cookie: Option<String>,

    /// Connect to this address for host:port instead of resolving it (as curl's --resolve),
    /// e.g. api.mysite.com:443:127.0.0.1.
    #[arg(long)]
    pub resolve: Vec<String>,

    /// Do not verify the server's TLS certificate.
    #[arg(long)]
    pub insecure: bool,
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

/// A bound that must be above zero: `0` is not "no limit" here but one every request, body,
/// connection or push would hit at once (and a client cut at once is no protection either).
fn timeout(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err("must be above 0 (it would end every wait at once); write e.g. 10s".to_owned()),
        d => Ok(d),
    }
}

fn upstream(s: &str) -> Result<Upstream, String> {
    parse_upstream(s)
}

fn header_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_owned(), value.trim().to_owned())),
        _ => Err(format!("{s:?} is not `Name: value`")),
    }
}

fn timestamp(s: &str) -> Result<i64, String> {
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| format!("{s:?} is not an RFC 3339 timestamp (e.g. 2026-11-24T12:00:00Z): {e}"))
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
        for flag in [
            "--upstream-timeout",
            "--connect-timeout",
            "--header-read-timeout",
            "--body-read-timeout",
            "--push-max-age",
        ] {
            let err = Args::try_parse_from(["x", flag, "0s"]).expect_err(flag).to_string();
            assert!(err.contains(flag) && err.contains("must be above 0"), "{err}");
            assert!(Args::try_parse_from(["x", flag, "1s"]).is_ok(), "{flag} 1s");
        }
        // Zero means something for these: close at once on SIGTERM, park at once.
        assert!(Args::try_parse_from(["x", "--drain-timeout", "0s", "--park-idle-after", "0s"]).is_ok());
        let a = Args::try_parse_from(["x", "--trusted-proxies", "10.0.0.0/8,192.168.1.1"]).unwrap();
        assert_eq!(a.trusted_proxies.len(), 2);
    }

    #[test]
    fn serving_stays_the_default_and_explain_parses_its_flags() {
        let a = Args::try_parse_from(["x", "--manifests", "m.yaml"]).unwrap();
        assert!(a.command.is_none());
        assert!(!a.enable_explain_endpoint);
        let a = Args::try_parse_from([
            "x",
            "explain",
            "--manifests",
            "m.yaml",
            "--url",
            "https://a.test/x",
            "--header",
            "Origin: https://b.test",
            "--now",
            "2026-11-24T12:00:00Z",
            "--output",
            "json",
        ])
        .unwrap();
        let Some(Command::Explain(e)) = a.command else { panic!("explain") };
        assert_eq!(e.request.headers, [("Origin".to_owned(), "https://b.test".to_owned())]);
        assert_eq!(e.request.now, Some(1_795_521_600));
        assert_eq!(e.request.output, Output::Json);
        assert!(
            Args::try_parse_from(["x", "explain", "--manifests", "m", "--url", "u", "--header", "nocolon"]).is_err()
        );
        assert!(Args::try_parse_from(["x", "explain", "--manifests", "m", "--url", "u", "--now", "yesterday"]).is_err());
    }

    #[test]
    fn authz_takes_the_serving_flags() {
        let a = Args::try_parse_from([
            "x",
            "authz",
            "--manifests",
            "m.yaml",
            "--listen",
            "127.0.0.1:9191",
            "--admin-listen",
            "127.0.0.1:9192",
            "--trusted-proxies",
            "10.0.0.0/8",
        ])
        .unwrap();
        let Some(Command::Authz(authz)) = a.command else { panic!("authz") };
        let s = authz.serving().unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9191");
        assert_eq!(s.admin_listen.to_string(), "127.0.0.1:9192");
        assert_eq!(s.manifests.as_deref(), Some(std::path::Path::new("m.yaml")));
        assert_eq!(s.trusted_proxies.len(), 1);
        let bad = |flags: &[&str]| AuthzArgs { flags: flags.iter().map(|f| f.to_string()).collect() }.serving();
        assert!(bad(&["--listen", "9191"]).is_err());
        assert!(bad(&["explain", "--manifests", "m", "--url", "u"]).is_err());
        assert!(bad(&["--no-such-flag"]).is_err());
    }
}
