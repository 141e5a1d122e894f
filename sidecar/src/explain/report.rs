//! The parts of an explanation that describe what a phase saw: the routing walk and the nearest
//! miss, the CORS classification, the credential and its checks, the policies and their rules.
//!
//! Must not decide: every result shown here comes from the decision (the routing walk, the
//! observed checks and policies); this only puts it in words.

use http::header::HeaderValue;
use http::HeaderMap;
use portcullis_crds::snapshot::{Application, DomainPattern, HostPattern, Rule};
use portcullis_crds::v1alpha1::PolicyAction;

use super::{
    CandidateReport, Check, CorsReport, CredentialReport, Options, PolicyReport, RouteReport, RuleReport, Watch,
};
use crate::config::{Live, LiveApp};
use crate::decide::authn::jwt::JwtFailure;
use crate::decide::authn::{Authn, AuthnFailure, Principal};
use crate::decide::policy::Decision;
use crate::decide::request::Presented;
use crate::decide::route::{Candidate, Target};

/// Why a path with ambiguous escapes was refused.
pub(super) const AMBIGUOUS_REFUSED: &str =
    "the path holds %2F, %5C, %3B, %25, a backslash or an encoded control character, which servers \
     read in different ways: refused (400 ambiguous_path) unless the application sets spec.paths.escapedSlashes: \
     KeepUnchanged and every way servers read the escapes (decoded once or more, a backslash as a byte or as /) \
     routes to the same application and forward route";
/// The risk an application that keeps escaped slashes takes.
const AMBIGUOUS_KEPT: &str =
    "the path holds %2F, %5C, %3B, %25, a backslash or an encoded control character: forwarded \
     unchanged (spec.paths.escapedSlashes: KeepUnchanged); an app that decodes them after routing may serve another \
     path than the one decided";

pub(super) fn describe_target(route: &mut RouteReport, live: &Live, target: &Target<'_>) {
    route.host = Some(target.host.to_string());
    route.path = Some(target.path.matching.to_string());
    route.forwarded_host = Some(target.authority.to_string());
    route.forwarded_path = Some(target.path.forward.to_string());
    if target.path.ambiguous {
        route.path_note = Some(AMBIGUOUS_KEPT.to_owned());
    }
    // The walk routing takes, read to the end.
    route.candidates = live
        .router
        .walk(&target.host, &target.path.matching)
        .map(|c| CandidateReport {
            application: live.apps[c.app].label.clone(),
            domain: candidate_domain(&c, &target.host),
            path_matches: c.path_matches,
        })
        .collect();
}

fn candidate_domain(c: &Candidate<'_>, host: &str) -> String {
    match c.wildcard_suffix {
        Some(suffix) => format!("*.{suffix}{}", c.path_prefix),
        None => format!("{host}{}", c.path_prefix),
    }
}

/// The closest miss: a domain whose host matched but whose path prefix does not cover the path,
/// else the configured domain sharing the most trailing DNS labels with the host.
pub(super) fn nearest_miss(live: &Live, target: &Target<'_>, candidates: &[CandidateReport]) -> Option<String> {
    if let Some(c) = candidates.first() {
        return Some(format!(
            "{} (application {}) matches the host but its path prefix does not cover {}",
            c.domain, c.application, target.path.matching
        ));
    }
    let labels: Vec<&str> = target.host.rsplit('.').collect();
    let shared = |pattern: &str| pattern.rsplit('.').zip(&labels).take_while(|(a, b)| a == *b).count();
    live.apps
        .iter()
        .flat_map(|app| app.spec.domains.iter().map(move |d| (app, d)))
        .map(|(app, d)| {
            let text = domain_text(d);
            let host = match &d.host {
                HostPattern::Exact(h) | HostPattern::Wildcard(h) => h.as_str(),
            };
            (shared(host), text, app)
        })
        .filter(|(n, _, _)| *n > 0)
        // The first of the closest, in configuration order.
        .fold(None, |best: Option<(usize, String, &LiveApp)>, c| match &best {
            Some(b) if b.0 >= c.0 => best,
            _ => Some(c),
        })
        .map(|(_, text, app)| format!("{text} (application {}) is the closest configured domain", app.label))
}

fn domain_text(d: &DomainPattern) -> String {
    let host = match &d.host {
        HostPattern::Exact(h) => h.clone(),
        HostPattern::Wildcard(s) => format!("*.{s}"),
    };
    format!("{host}{}", d.path_prefix.as_deref().unwrap_or(""))
}

pub(super) fn actual_report(app: &LiveApp, origin: Option<&HeaderValue>) -> CorsReport {
    let owner = app.cors.owner();
    let Some(origin) = origin else {
        return CorsReport {
            classification: "not_cors",
            origin: None,
            owner,
            outcome: "not_applicable",
            detail: "no Origin header: not a cross-origin request".to_owned(),
        };
    };
    let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    let (outcome, detail) = match owner {
        "disabled" => ("no_cors_headers", "the application has no cors section: the response carries no CORS headers, so a page on another origin cannot read it".to_owned()),
        "app" => ("app_owns_cors", "cors.bypassOptionsToOrigin is set: the app sets the CORS headers of its responses".to_owned()),
        _ => {
            let mut probe = HeaderMap::new();
            app.cors.apply_to_response(Some(origin), &mut probe);
            if probe.contains_key(http::header::ACCESS_CONTROL_ALLOW_ORIGIN) {
                ("origin_allowed", format!("origin {shown:?} is allowed: the response carries Access-Control-Allow-Origin"))
            } else {
                ("origin_not_allowed", format!("origin {shown:?} is not in cors.allowedOrigins: the response carries no Access-Control-Allow-Origin and the page cannot read it"))
            }
        }
    };
    CorsReport { classification: "actual", origin: Some(shown), owner, outcome, detail }
}

/// The unverified header and payload fields worth showing (never the token itself).
#[derive(Default)]
pub(super) struct Peek {
    alg: Option<String>,
    kid: Option<String>,
    iss: Option<String>,
}

pub(super) fn peek(token: &str) -> Peek {
    use base64::Engine;
    let part = |s: Option<&str>| -> Option<serde_json::Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s?).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let mut parts = token.split('.');
    let (header, payload) = (part(parts.next()), part(parts.next()));
    let field = |v: &Option<serde_json::Value>, k: &str| v.as_ref()?.get(k)?.as_str().map(str::to_owned);
    Peek { alg: field(&header, "alg"), kid: field(&header, "kid"), iss: field(&payload, "iss") }
}

/// The credential, and every check it passed in the order they ran, then the one that failed.
pub(super) fn credential_report(
    presented: &Presented<'_>,
    authn: &Authn,
    opts: &Options,
    watch: &Watch,
) -> CredentialReport {
    let failure = match authn {
        Authn::Failed(f) => Some(*f),
        _ => None,
    };
    let failed = failure.map(|f| match f {
        AuthnFailure::Jwt(f) => f.check(),
        AuthnFailure::ServiceToken(f) => f.check(),
    });
    let mut checks: Vec<Check> = watch.checks.iter().map(|&check| Check { check, result: "passed" }).collect();
    checks.extend(failed.map(|check| Check { check, result: "failed" }));
    let mut r = CredentialReport {
        kind: "none",
        source: None,
        issuer: None,
        algorithm: None,
        key_id: None,
        email: None,
        client_id: None,
        service_token: None,
        result: match authn {
            Authn::Anonymous => "none",
            Authn::Authenticated(_) => "authenticated",
            Authn::Failed(_) => "refused",
        },
        reason: failure.map(|f| f.reason()),
        checks,
        note: None,
    };
    match presented {
        Presented::Nothing => {
            r.note = Some("no service-token headers, no JWT in the assertion header, Authorization or cookie");
        }
        Presented::ServiceToken { client_id } => service_token_report(&mut r, *client_id, authn, opts),
        Presented::Jwt { source, token } => {
            r.kind = "jwt";
            r.source = Some(source.as_str());
            if let Some(token) = token.ok().and_then(|t| std::str::from_utf8(t).ok()) {
                let p = peek(token);
                (r.algorithm, r.key_id, r.issuer) = (p.alg, p.kid, p.iss);
            }
            if let Authn::Authenticated(Principal::User(u)) = authn {
                r.issuer = Some(u.issuer.clone());
                r.email = u.email.clone();
            }
            r.note = match failure {
                Some(AuthnFailure::Jwt(JwtFailure::UnknownKey { .. })) => Some(
                    "the proxy refreshes this issuer's JWKS once (at most every 30 s) and retries; \
                     explain uses the keys loaded now",
                ),
                Some(AuthnFailure::Jwt(JwtFailure::NoKeys { .. })) => {
                    Some("keys not loaded: the issuer's jwksUri could not be fetched")
                }
                _ => None,
            };
        }
    }
    r
}

fn service_token_report(r: &mut CredentialReport, client_id: Option<&HeaderValue>, authn: &Authn, opts: &Options) {
    r.kind = "service_token";
    r.source = Some("service_token_headers");
    r.client_id = client_id.and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Authn::Authenticated(Principal::Service(s)) = authn {
        r.service_token = Some(s.name.clone());
    }
    let headers_failed = r.checks.first().is_some_and(|c| c.result == "failed");
    if opts.secrets_unavailable && !headers_failed {
        // Without the Secrets the tokens' client ids and digests are not known here.
        for c in r.checks.iter_mut().skip(1) {
            c.result = "unknown";
        }
        r.result = "unknown";
        r.note = Some("the service tokens' Secrets could not be read: the token checks are unknown");
    }
}

/// Every policy as the evaluation met it (an exhaustive watch: those after the deciding one too).
pub(super) fn policy_reports(spec: &Application, watch: &Watch, decision: Decision) -> Vec<PolicyReport> {
    watch
        .policies
        .iter()
        .filter_map(|(step, rules)| {
            let p = spec.policies.get(step.policy)?;
            let rules = rules
                .iter()
                .filter_map(|&(kind, i, matched)| {
                    let list = match kind {
                        crate::decide::observe::RuleKind::Include => &p.include,
                        crate::decide::observe::RuleKind::Require => &p.require,
                        crate::decide::observe::RuleKind::Exclude => &p.exclude,
                    };
                    Some(RuleReport { kind: kind.as_str(), selector: selector(list.get(i)?), matched })
                })
                .collect();
            Some(PolicyReport {
                name: p.name.clone(),
                action: action(step.action),
                phase: step.phase,
                evaluated: step.evaluated,
                matched: step.matched,
                decided: decision.policy() == Some(step.policy),
                rules,
            })
        })
        .collect()
}

fn action(a: PolicyAction) -> &'static str {
    match a {
        PolicyAction::Allow => "Allow",
        PolicyAction::Block => "Block",
        PolicyAction::Bypass => "Bypass",
        PolicyAction::ServiceAuth => "ServiceAuth",
    }
}

/// A rule as written in the AccessApplication.
fn selector(r: &Rule) -> String {
    match r {
        Rule::Email(e) => format!("email: {e}"),
        Rule::EmailDomain(d) => format!("emailDomain: {d}"),
        Rule::Group(g) => format!("group: {g}"),
        Rule::Everyone => "everyone: {}".to_owned(),
        Rule::IpRange(n) => format!("ipRange: {n}"),
        Rule::ServiceToken(t) => format!("serviceToken: {{name: {t}}}"),
        Rule::AnyValidServiceToken => "anyValidServiceToken: {}".to_owned(),
        Rule::Claim { name, value } => format!("claim: {{name: {name}, value: {value}}}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_shows_header_and_issuer_only() {
        use base64::Engine;
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!("{}.{}.sig", enc(r#"{"alg":"RS256","kid":"k1"}"#), enc(r#"{"iss":"https://i"}"#));
        let p = peek(&token);
        assert_eq!(
            (p.alg.as_deref(), p.kid.as_deref(), p.iss.as_deref()),
            (Some("RS256"), Some("k1"), Some("https://i"))
        );
        assert!(peek("garbage").iss.is_none());
    }
}
