//! What became of one request, as one word: the vocabulary the log line, the metrics and
//! `explain` share (`decision=` in the log, `decision.outcome` in explain's JSON).
//!
//! Owns the [`Outcome`] enum and its stable labels. Must not: decide (the phases choose an
//! outcome; this only names it) or change a label once released (logs and dashboards read them).

/// What the sidecar did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded: an Allow (or ServiceAuth) policy admitted the caller.
    Allow,
    /// Forwarded without authentication: a Bypass policy matched.
    Bypass,
    /// Answered by the sidecar with a refusal (400, 401, 403, 404, 502, 503, 504…).
    Deny,
    /// `mode: Audit`: Enforce would refuse it; forwarded without identity headers.
    AuditDeny,
    /// A CORS preflight answered by the sidecar (200).
    PreflightAnswered,
    /// A CORS preflight refused (403, no `Access-Control-Allow-*`).
    PreflightRefused,
    /// A CORS preflight forwarded to the app (`bypassOptionsToOrigin`).
    PreflightForwarded,
    /// A `/.portcullis/` sign-in endpoint answered.
    SignIn,
}

// === impl Outcome ===

impl Outcome {
    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Bypass => "bypass",
            Outcome::Deny => "deny",
            Outcome::AuditDeny => "audit_deny",
            Outcome::PreflightAnswered => "preflight_answered",
            Outcome::PreflightRefused => "preflight_refused",
            Outcome::PreflightForwarded => "preflight_forwarded",
            Outcome::SignIn => "sign_in",
        }
    }

    /// Whether the client is served: forwarded, or a preflight answered (explain's exit status
    /// 0). A sign-in step counts as served: its endpoint answered.
    pub fn served(self) -> bool {
        !matches!(self, Outcome::Deny | Outcome::PreflightRefused)
    }

    /// Traffic that is not news: logged at debug, where refusals log at info (users come to the
    /// logs for refusals, and logging every allowed request would cost CPU on each).
    pub fn routine(self) -> bool {
        matches!(self, Outcome::Allow | Outcome::Bypass | Outcome::PreflightAnswered)
    }
}
