//! Everything the sidecar answers itself instead of forwarding, with its status, stable reason
//! and message: the pure half of the refusal table (linkerd's `ServerRescue`). It is shared by
//! the request path and `explain`, so both name the same status and reason. It must not build
//! responses or bodies: `http/respond.rs` turns a [`Refusal`] into one.

use http::StatusCode;

/// Everything the sidecar answers itself instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No configuration loaded yet: fail closed.
    NoConfig,
    /// Malformed target: missing, duplicate or invalid Host, bad path.
    BadRequest(&'static str),
    /// No application serves this host and path.
    UnknownHost,
    /// Reserved `/.portcullis/` path without a handler for it.
    ReservedPath,
    /// A preflight the CORS settings refuse (or no CORS settings).
    PreflightRefused(&'static str),
    /// No or invalid credentials.
    Unauthenticated {
        reason: &'static str,
        login: Option<String>,
    },
    /// A valid identity that the policies refuse.
    Forbidden {
        reason: &'static str,
        policy: Option<String>,
    },
    /// A sign-in step that cannot go on (bad return URL, bad or replayed state, the identity
    /// provider unreachable or its answer refused); never mints a session.
    SignIn {
        status: StatusCode,
        reason: &'static str,
    },
    /// A forward route whose service token is missing.
    RouteUnavailable,
    UpstreamUnreachable,
    UpstreamTimeout,
    /// The request body did not arrive within `--body-read-timeout`.
    BodyTimeout,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::NoConfig | Refusal::RouteUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::UnknownHost | Refusal::ReservedPath => StatusCode::NOT_FOUND,
            Refusal::PreflightRefused(_) | Refusal::Forbidden { .. } => StatusCode::FORBIDDEN,
            Refusal::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Refusal::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            Refusal::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Refusal::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::SignIn { status, .. } => *status,
        }
    }

    /// Stable, machine-readable reason: the `error` field, the metric and log label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoConfig => "no_config",
            Refusal::BadRequest(r) => r,
            Refusal::UnknownHost => "unknown_host",
            Refusal::ReservedPath => "not_found",
            Refusal::PreflightRefused(r) => r,
            Refusal::Unauthenticated { reason, .. } => reason,
            Refusal::Forbidden { reason, .. } => reason,
            Refusal::RouteUnavailable => "forward_route_token_missing",
            Refusal::UpstreamUnreachable => "upstream_unreachable",
            Refusal::UpstreamTimeout => "upstream_timeout",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::SignIn { reason, .. } => reason,
        }
    }

    /// The human sentence of the JSON body.
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::NoConfig => "the sidecar has no configuration loaded yet",
            Refusal::BadRequest("ambiguous_path") => {
                "the path holds an encoded slash, backslash or semicolon, a backslash or an encoded control character, \
                 which servers read in different ways; this application refuses such paths (spec.paths.escapedSlashes)"
            }
            Refusal::BadRequest("conflicting_host") => "the host header names another authority than :authority",
            Refusal::BadRequest("underscore_header") => {
                "a header name contains '_', which this sidecar refuses (--headers-with-underscores Reject)"
            }
            Refusal::BadRequest(_) => "the request's Host or path is malformed",
            Refusal::UnknownHost => "no application is configured for this host and path",
            Refusal::ReservedPath => "no such path",
            Refusal::PreflightRefused(_) => "the CORS preflight is not allowed by this application's cors settings",
            Refusal::Unauthenticated { .. } => "sign in or present a valid token",
            Refusal::Forbidden { .. } => "your identity is not allowed by this application's policies",
            Refusal::RouteUnavailable => "the service token of this forward route is not available",
            Refusal::UpstreamUnreachable => "the application could not be reached",
            Refusal::UpstreamTimeout => "the application did not answer in time",
            Refusal::BodyTimeout => "the request body did not arrive in time",
            Refusal::SignIn { .. } => "sign-in could not complete; go back to the application and try again",
        }
    }
}
