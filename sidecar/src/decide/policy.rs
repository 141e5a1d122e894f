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
    let subject = Subject { who: Who::of(authn), ip: client_ip.to_canonical() };
    let authenticated = !matches!(subject.who, Who::Nobody);
    for (i, p) in policies.iter().enumerate() {
        match p.action {
            PolicyAction::Bypass if subject.matches(p) => return Decision::Bypass { policy: i },
            PolicyAction::ServiceAuth if authenticated && subject.matches(p) => return Decision::Allow { policy: i },
            _ => {}
        }
    }
    if !authenticated {
        return Decision::Unauthenticated;
    }
    for (i, p) in policies.iter().enumerate() {
        match p.action {
            PolicyAction::Allow if subject.matches(p) => return Decision::Allow { policy: i },
            PolicyAction::Block if subject.matches(p) => return Decision::Block { policy: i },
            _ => {}
        }
    }
    Decision::NoMatch
}

/// One policy as [`evaluate`] meets it, for `explain`: whether each rule matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyTrace {
    /// Index into the policies.
    pub policy: usize,
    /// 1: Bypass and ServiceAuth; 2: Allow and Block, for authenticated callers only.
    pub phase: u8,
    /// Whether [`evaluate`] reached this policy (it stops at the first that decides).
    pub evaluated: bool,
    pub include: Vec<bool>,
    pub require: Vec<bool>,
    pub exclude: Vec<bool>,
    /// Whether the policy as a whole matches this caller (`include` any, `require` all,
    /// `exclude` none; a ServiceAuth policy only for an authenticated caller).
    pub matched: bool,
}

/// Every policy in the order [`evaluate`] considers them, with each rule's result, computed by
/// the same rule matching. Allocates; for `explain`, never for the request path.
pub fn trace(policies: &[Policy], authn: &Authn, client_ip: IpAddr) -> Vec<PolicyTrace> {
    let subject = Subject { who: Who::of(authn), ip: client_ip.to_canonical() };
    let authenticated = !matches!(subject.who, Who::Nobody);
    let decided = evaluate(policies, authn, client_ip).policy();
    let rules = |p: &Policy, rules: &[Rule]| rules.iter().map(|r| subject.matches_rule(p, r)).collect::<Vec<_>>();
    let phase_one = |p: &Policy| matches!(p.action, PolicyAction::Bypass | PolicyAction::ServiceAuth);
    let order = policies
        .iter()
        .enumerate()
        .filter(|(_, p)| phase_one(p))
        .chain(policies.iter().enumerate().filter(|(_, p)| !phase_one(p)));
    let mut reached = true;
    order
        .map(|(i, p)| {
            let phase = if phase_one(p) { 1 } else { 2 };
            let evaluated = reached && (phase == 1 || authenticated);
            let matched = subject.matches(p) && (p.action != PolicyAction::ServiceAuth || authenticated);
            if decided == Some(i) {
                reached = false;
            }
            PolicyTrace {
                policy: i,
                phase,
                evaluated,
                include: rules(p, &p.include),
                require: rules(p, &p.require),
                exclude: rules(p, &p.exclude),
                matched,
            }
        })
        .collect()
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
    fn matches(&self, p: &Policy) -> bool {
        p.include.iter().any(|r| self.matches_rule(p, r))
            && p.require.iter().all(|r| self.matches_rule(p, r))
            && !p.exclude.iter().any(|r| self.matches_rule(p, r))
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
            (Rule::Email(want), Who::User(u)) => u.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(want)),
            // Exactly the part after the last '@': `mysite.com` does not cover `eu.mysite.com`.
            (Rule::EmailDomain(want), Who::User(u)) => u
                .email
                .as_deref()
                .and_then(|e| e.rsplit_once('@'))
                .is_some_and(|(_, domain)| domain.eq_ignore_ascii_case(want)),
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
