//! What a decision reports while it decides, for `explain`: the credential checks it passed, each
//! policy and rule it evaluated, and why a preflight was refused.
//!
//! Owns the [`Observer`] trait and the request path's no-op [`Quiet`]. The decisions call the
//! observer at the point where they decide, so an explanation is the decision watched, never a
//! second implementation of it. Must not: decide, allocate for [`Quiet`], or change a result —
//! an observer only watches (even [`Observer::EXHAUSTIVE`] only evaluates more, never differently).

use std::fmt;

use portcullis_crds::v1alpha1::PolicyAction;

/// The list a policy rule belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Include,
    Require,
    Exclude,
}

// === impl RuleKind ===

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Include => "include",
            RuleKind::Require => "require",
            RuleKind::Exclude => "exclude",
        }
    }
}

/// One policy as `policy::evaluate_with` met it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyStep {
    /// Index into the application's policies.
    pub policy: usize,
    pub action: PolicyAction,
    /// 1: Bypass and ServiceAuth; 2: Allow and Block, for authenticated callers only.
    pub phase: u8,
    /// Whether the evaluation reached this policy before a decision (only an exhaustive observer
    /// sees the others).
    pub evaluated: bool,
    /// Whether the policy as a whole matches this caller.
    pub matched: bool,
}

/// Watches the decisions of one request. Every method does nothing by default.
pub trait Observer {
    /// `true`: the decisions also evaluate what they would skip once the outcome is known (every
    /// rule of every policy), reported as not evaluated, so the observer can show why each would
    /// or would not match. `false` on the request path, which skips exactly what it skips today.
    const EXHAUSTIVE: bool = false;

    /// A credential check passed (JWT: `size`, `format`, `crit`, `issuer`, `algorithm`, `keys`,
    /// `key`, `signature`, `audience`, `claims`, `expiry`, or `cached` for a token verified
    /// before; service token: `headers`, `client_id`, `secret`, `expiry`). The failing check is
    /// the failure's own (`JwtFailure::check`, `ServiceTokenFailure::check`).
    fn check_passed(&mut self, _check: &'static str) {}

    /// One rule of the policy about to be reported by [`Observer::policy`] and its result.
    fn rule(&mut self, _kind: RuleKind, _index: usize, _matched: bool) {}

    /// A policy was evaluated (or, for an exhaustive observer, passed over).
    fn policy(&mut self, _step: PolicyStep) {}

    /// Why the CORS settings refuse a preflight, naming the origin, method or header and what is
    /// allowed (formatted only by observers that keep it).
    fn preflight_refused(&mut self, _why: &dyn fmt::Display) {}
}

/// The request path's observer: watches nothing, costs nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {}
