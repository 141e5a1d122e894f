//! Policy evaluation: what the application's policies say about an authenticated (or not)
//! caller from an address.
//!
//! Owns Cloudflare Access's evaluation order and the meaning of every rule selector (api.md,
//! "Selectors" and "Identities"). It must not authenticate (it consumes [`Authn`]), work out the
//! client address (see `client_ip`), build responses, or allocate: it runs on every request.

use std::net::IpAddr;

use portcullis_crds::snapshot::{Policy, Rule};
use portcullis_crds::v1alpha1::PolicyAction;
use serde_json::Value;

use super::authn::{Authn, Principal, Service, User};
use super::observe::{Observer, PolicyStep, Quiet, RuleKind};

/// The outcome of the policies for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A Bypass policy matched: forwarded without authentication or identity headers.
    Bypass { policy: usize },
    /// An Allow policy (or, for an authenticated principal, a ServiceAuth policy) matched.
    Allow { policy: usize },
    /// A Block policy matched first: 403.
    Block { policy: usize },
    /// An authenticated caller that no Allow or Block policy matched: 403 (deny by default).
    NoMatch,
    /// No Bypass or ServiceAuth policy matched and the caller is not authenticated: 401, with
    /// the authentication failure when there was one.
    Unauthenticated,
}

// === impl Decision ===

impl Decision {
    /// Stable label for metrics, logs and the JSON body.
    pub fn reason(&self) -> &'static str {
        match self {
            Decision::Bypass { .. } => "bypass",
            Decision::Allow { .. } => "allow",
            Decision::Block { .. } => "block",
            Decision::NoMatch => "no_matching_policy",
            Decision::Unauthenticated => "unauthenticated",
        }
    }

    /// The index of the deciding policy, if one decided.
    pub fn policy(&self) -> Option<usize> {
        match self {
            Decision::Bypass { policy } | Decision::Allow { policy } | Decision::Block { policy } => Some(*policy),
            Decision::NoMatch | Decision::Unauthenticated => None,
        }
    }
}

/// Evaluates `policies` as Cloudflare Access does.
///
/// Phase 1: Bypass and ServiceAuth policies, in order. A matching Bypass admits anyone, even an
/// anonymous caller or one whose credentials failed (only `ipRange` rules can match those); a
/// matching ServiceAuth admits an authenticated principal. Then an unauthenticated caller stops
/// here ([`Decision::Unauthenticated`]). Phase 2: Allow and Block policies in order, the first
/// match decides; no match denies. A policy matches when some `include` rule, every `require`
/// rule and no `exclude` rule match.
///
/// `compile` already orders the slice (Bypass and ServiceAuth first); each phase filters by
/// action anyway, so a hand-built or reordered slice cannot let an Allow run before a Bypass
/// or a Block run before the caller is authenticated.
pub fn evaluate(policies: &[Policy], authn: &Authn, client_ip: IpAddr) -> Decision {
    evaluate_with(policies, authn, client_ip, &mut Quiet)
}

/// [`evaluate`], reporting each policy (and its rules) to `obs` as it meets them. An
/// exhaustive observer also sees the policies after the deciding one, marked not evaluated.
pub fn evaluate_with<O: Observer>(policies: &[Policy], authn: &Authn, client_ip: IpAddr, obs: &mut O) -> Decision {
    let subject = Subject { who: Who::of(authn), ip: client_ip.to_canonical() };
    let authenticated = !matches!(subject.who, Who::Nobody);
    let phase_one = |p: &Policy| matches!(p.action, PolicyAction::Bypass | PolicyAction::ServiceAuth);
    let in_phase = |phase: u8| {
        let first = phase == 1;
        policies.iter().enumerate().filter(move |(_, p)| phase_one(p) == first).map(move |(i, p)| (phase, i, p))
    };
    let mut decided = None;
    for (phase, i, p) in in_phase(1).chain(in_phase(2)) {
        // Between the phases: an unauthenticated caller stops here.
        if phase == 2 && !authenticated && decided.is_none() {
            if !O::EXHAUSTIVE {
                return Decision::Unauthenticated;
            }
            decided = Some(Decision::Unauthenticated);
        }
        // A ServiceAuth policy admits only an authenticated principal.
        let matched = subject.matches_with(p, obs) && (p.action != PolicyAction::ServiceAuth || authenticated);
        obs.policy(PolicyStep { policy: i, action: p.action, phase, evaluated: decided.is_none(), matched });
        if matched && decided.is_none() {
            let d = match p.action {
                PolicyAction::Bypass => Decision::Bypass { policy: i },
                PolicyAction::Block => Decision::Block { policy: i },
                PolicyAction::Allow | PolicyAction::ServiceAuth => Decision::Allow { policy: i },
            };
            if !O::EXHAUSTIVE {
                return d;
            }
            decided = Some(d);
        }
    }
    match decided {
        Some(d) => d,
        None if !authenticated => Decision::Unauthenticated,
        None => Decision::NoMatch,
    }
}

/// Who is asking, and from where.
struct Subject<'a> {
    who: Who<'a>,
    ip: IpAddr,
}

/// The caller as rules see it: anonymous and failed callers are the same nobody.
enum Who<'a> {
    User(&'a User),
    Service(&'a Service),
    Nobody,
}

// === impl Who ===

impl<'a> Who<'a> {
    fn of(authn: &'a Authn) -> Self {
        match authn {
            Authn::Authenticated(Principal::User(u)) => Who::User(u),
            Authn::Authenticated(Principal::Service(s)) => Who::Service(s),
            Authn::Anonymous | Authn::Failed(_) => Who::Nobody,
        }
    }
}

// === impl Subject ===

impl Subject<'_> {
    /// Some `include` rule, every `require` rule and no `exclude` rule match. The request path
    /// stops at the first rule that settles it; an exhaustive observer sees every rule's result.
    fn matches_with<O: Observer>(&self, p: &Policy, obs: &mut O) -> bool {
        if !O::EXHAUSTIVE {
            return p.include.iter().any(|r| self.matches_rule(p, r))
                && p.require.iter().all(|r| self.matches_rule(p, r))
                && !p.exclude.iter().any(|r| self.matches_rule(p, r));
        }
        let mut each = |kind: RuleKind, rules: &[Rule]| -> (bool, bool) {
            let (mut any, mut all) = (false, true);
            for (i, r) in rules.iter().enumerate() {
                let m = self.matches_rule(p, r);
                obs.rule(kind, i, m);
                (any, all) = (any || m, all && m);
            }
            (any, all)
        };
        let (include, _) = each(RuleKind::Include, &p.include);
        let (_, require) = each(RuleKind::Require, &p.require);
        let (exclude, _) = each(RuleKind::Exclude, &p.exclude);
        include && require && !exclude
    }

    fn matches_rule(&self, policy: &Policy, rule: &Rule) -> bool {
        match (rule, &self.who) {
            // In a Bypass policy `everyone` is every request, anonymous ones included: "Bypass —
            // Everyone" is how Cloudflare Access makes a path public (api.md, "Selectors").
            (Rule::Everyone, _) if policy.action == PolicyAction::Bypass => true,
            // The address rule holds for any caller, authenticated or not.
            (Rule::IpRange(net), _) => net.contains(&self.ip),
            // Rule values are lower-case already (compile); JWT emails are compared
            // case-insensitively as sent. A user without an email matches no email rule.
            (Rule::Email(want), Who::User(u)) => u.email.as_deref().is_some_and(|e| eq_lower(e.as_bytes(), want)),
            // Exactly the part after the last '@': `mysite.com` does not cover `eu.mysite.com`.
            (Rule::EmailDomain(want), Who::User(u)) => u.email.as_deref().is_some_and(|e| {
                let e = e.as_bytes();
                e.iter().rposition(|&b| b == b'@').is_some_and(|at| eq_lower(&e[at + 1..], want))
            }),
            (Rule::Group(want), Who::User(u)) => claim_has(u, "groups", want),
            (Rule::Claim { name, value }, Who::User(u)) => claim_has(u, name, value),
            // `everyone` is every authenticated identity; as in Cloudflare Access, service
            // tokens are admitted only by `serviceToken` / `anyValidServiceToken`.
            (Rule::Everyone, Who::User(_)) => true,
            (Rule::ServiceToken(name), Who::Service(s)) => s.name == *name,
            (Rule::AnyValidServiceToken, Who::Service(_)) => true,
            _ => false,
        }
    }
}

/// `sent` equals `lower` (a rule value, lower-case since `compile`) ignoring ASCII case: only
/// `sent` is lowered, and the lengths are compared first (`eq_ignore_ascii_case` lowers both
/// sides; this runs on every request an email rule sees).
fn eq_lower(sent: &[u8], lower: &str) -> bool {
    sent.len() == lower.len() && sent.iter().zip(lower.as_bytes()).all(|(s, l)| s.to_ascii_lowercase() == *l)
}

/// A string claim equal to `want`, or an array claim with a string element equal to it.
fn claim_has(user: &User, name: &str, want: &str) -> bool {
    match user.claims.get(name) {
        Some(Value::String(s)) => s == want,
        Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(want)),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
