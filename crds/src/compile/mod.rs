//! `compile()`: AccessApplications + AccessServiceTokens + Secrets → [`Snapshot`].
//!
//! Pure: no I/O, no clock. The operator, the admission webhook and the standalone sidecar all
//! call it, so a config is judged the same way everywhere. Every problem is collected (not just
//! the first), each naming the resource, the field path and what to write instead.

mod cors;
mod duration;
mod error;
mod identity;
mod policy;
mod routing;
mod secrets;
mod tokens;

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Secret;

pub use cors::{compile_cors, parse_origin_pattern};
pub use duration::parse_duration_secs;
pub use error::{CompileError, CompileErrorKind, CompileErrors, CompileWarning, Diagnostics};
pub use identity::{DEFAULT_CLOCK_SKEW_SECS, DEFAULT_COOKIE_NAME, DEFAULT_HEADER_NAME, DEFAULT_SCOPES};
pub use routing::{parse_host_pattern, parse_upstream};
pub use secrets::SecretIndex;
pub use tokens::{sha256_hex, CompiledToken, TokenIndex, TokenIndexBuild};

use crate::snapshot::{Application, DomainPattern, HostPattern, Login, Policy, ResourceId, Rule, Snapshot};
use crate::v1alpha1::{AccessApplication, AccessApplicationSpec, AccessServiceToken};

/// Default `sessionDuration`: 24 hours.
pub const DEFAULT_SESSION_SECS: u64 = 24 * 3600;

/// What `compile` reads.
pub struct Inputs<'a> {
    pub applications: &'a [AccessApplication],
    pub service_tokens: &'a [AccessServiceToken],
    pub secrets: &'a [Secret],
    /// Namespace for resources that have none (manifest files often omit it).
    pub default_namespace: &'a str,
}

/// A successful compile: the snapshot, and what the user should still know.
#[derive(Debug)]
pub struct Compiled {
    pub snapshot: Snapshot,
    pub warnings: Vec<CompileWarning>,
}

/// Compiles everything; any error anywhere fails the whole compile (a half-applied config is
/// worse than the last good one).
pub fn compile(inputs: &Inputs<'_>) -> Result<Compiled, CompileErrors> {
    let secrets = SecretIndex::new(inputs.secrets, inputs.default_namespace);
    let TokenIndexBuild { index, mut errors, mut warnings } =
        TokenIndex::build(inputs.service_tokens, &secrets, inputs.default_namespace);
    let mut apps = Vec::with_capacity(inputs.applications.len());
    let mut ids = BTreeSet::new();
    for app in inputs.applications {
        let mut d = compile_application(app, inputs.default_namespace, &index, &secrets);
        if let Some(a) = d.application.take() {
            if !ids.insert(a.id.clone()) {
                errors.push(CompileError {
                    kind: CompileErrorKind::Duplicate,
                    resource: format!("AccessApplication {}", a.id),
                    field: "metadata.name".into(),
                    value: None,
                    message: "defined twice".into(),
                });
            }
            apps.push(a);
        }
        errors.append(&mut d.diagnostics.errors);
        warnings.append(&mut d.diagnostics.warnings);
    }
    check_domain_overlap(&apps, &mut errors);
    if errors.is_empty() {
        Ok(Compiled { snapshot: Snapshot::new(apps), warnings })
    } else {
        Err(CompileErrors(errors))
    }
}

/// One application's compile: the result (only when error-free) and its diagnostics.
pub struct ApplicationCompile {
    pub application: Option<Application>,
    pub diagnostics: Diagnostics,
}

/// Compiles one AccessApplication against the tokens and Secrets of the cluster (or files).
pub fn compile_application(
    app: &AccessApplication,
    default_namespace: &str,
    tokens: &TokenIndex,
    secrets: &SecretIndex<'_>,
) -> ApplicationCompile {
    let id = ResourceId {
        namespace: app.metadata.namespace.clone().unwrap_or_else(|| default_namespace.to_owned()),
        name: app.metadata.name.clone().unwrap_or_default(),
    };
    let mut d = Diagnostics::new("AccessApplication", &id);
    if id.name.is_empty() {
        d.error("metadata.name", None, "every AccessApplication needs a name");
    }
    let spec = &app.spec;
    let session_duration_secs = session_duration_secs(spec.session_duration.as_deref(), &mut d);
    let domains = routing::compile_domains(&spec.domains, &mut d);
    let identity = identity::compile_identity(spec.identity.as_ref(), &mut d);
    let login = identity::compile_login(spec.login.as_ref(), session_duration_secs, &id.namespace, secrets, &mut d);
    check_authentication_host_apart(login.as_ref(), &domains, &mut d);
    let policies = policy::compile_policies(&spec.policies, &mut d);
    let cors = cors::compile_cors(spec.cors.as_ref(), &mut d);
    let forward_routes = routing::compile_forward_routes(&spec.forward_routes, &id.namespace, tokens, &mut d);
    warn_unusable_tokens(&policies, tokens, &id.namespace, &mut d);
    // The tokens an application carries: every usable token of its namespace (digests only),
    // so that a valid token no policy admits is an identity the policies refuse (403
    // `service_token_not_included`), not an unknown credential (api.md, "Statuses").
    let service_tokens: Vec<_> = tokens.in_namespace(&id.namespace).map(|t| t.token.clone()).collect();
    check_combinations(spec, &mut d);

    let application = (!d.has_errors()).then(|| Application {
        id,
        domains,
        session_duration_secs,
        identity,
        login,
        policies,
        service_tokens,
        cors,
        forward_routes,
        unauthenticated_response: spec.unauthenticated_response.unwrap_or_default(),
        mode: spec.mode.unwrap_or_default(),
        escaped_slashes: spec.paths.as_ref().and_then(|p| p.escaped_slashes).unwrap_or_default(),
    });
    ApplicationCompile { application, diagnostics: d }
}

/// `spec.sessionDuration` in seconds ([`DEFAULT_SESSION_SECS`] when absent; 0 with an error).
fn session_duration_secs(raw: Option<&str>, d: &mut Diagnostics) -> u64 {
    let Some(s) = raw else { return DEFAULT_SESSION_SECS };
    match parse_duration_secs(s) {
        Ok(0) => {
            d.error("spec.sessionDuration", Some(s), "must be longer than 0s");
            0
        }
        Ok(v) => v,
        Err(e) => {
            d.error("spec.sessionDuration", Some(s), e);
            0
        }
    }
}

/// The authentication host must not be one of the application's own `domains`: it is served by
/// the sign-in endpoints alone.
fn check_authentication_host_apart(login: Option<&Login>, domains: &[DomainPattern], d: &mut Diagnostics) {
    let Some(host) = login.and_then(|l| l.authentication_host.as_deref()) else { return };
    let bare = host.split(':').next().unwrap_or(host);
    let covers = |dp: &DomainPattern| match &dp.host {
        HostPattern::Exact(h) => h == bare,
        HostPattern::Wildcard(suffix) => bare.strip_suffix(suffix.as_str()).is_some_and(|p| p.ends_with('.')),
    };
    if domains.iter().any(covers) {
        d.error(
            "spec.login.authenticationHost",
            Some(host),
            "must not be one of this application's domains: it is served by the sign-in endpoints alone",
        );
    }
}

/// A warning for each service token the policies name that is not usable in `namespace`: rules
/// naming it match nothing until it is.
fn warn_unusable_tokens(policies: &[Policy], tokens: &TokenIndex, namespace: &str, d: &mut Diagnostics) {
    let named: BTreeSet<&String> = policies
        .iter()
        .flat_map(|p| p.include.iter().chain(&p.exclude).chain(&p.require))
        .filter_map(|rule| match rule {
            Rule::ServiceToken(n) => Some(n),
            _ => None,
        })
        .collect();
    for name in named {
        if tokens.get(namespace, name).is_none() {
            d.warn(
                "spec.policies",
                format!("{}; rules naming it match nothing until it is", tokens.why_unusable(namespace, name)),
            );
        }
    }
}

/// Fields that are valid alone but not together, and a spec without policies.
fn check_combinations(spec: &AccessApplicationSpec, d: &mut Diagnostics) {
    if spec.unauthenticated_response == Some(crate::v1alpha1::UnauthenticatedResponse::Redirect) && spec.login.is_none()
    {
        d.error(
            "spec.unauthenticatedResponse",
            Some("Redirect"),
            "Redirect sends unauthenticated requests to sign-in, which needs spec.login; use Auto or Status401, or configure spec.login",
        );
    }
    if spec.enforcement == Some(crate::v1alpha1::Enforcement::External) && spec.selector.is_some() {
        d.error(
            "spec.selector",
            None,
            "spec.enforcement External has the application enforced by the external authorizer only, so no sidecar would use the selector: remove spec.selector, or set spec.enforcement to Both",
        );
    }
    if spec.policies.is_empty() {
        d.warn("spec.policies", "no policies: every request is denied (403)");
    }
}

/// Two applications claiming the same host and path prefix would make routing depend on
/// order; refuse it and name both.
fn check_domain_overlap(apps: &[Application], errors: &mut Vec<CompileError>) {
    let mut seen: std::collections::BTreeMap<String, &ResourceId> = Default::default();
    for app in apps {
        for (i, dom) in app.domains.iter().enumerate() {
            if let Some(other) = seen.insert(dom.claim_key(), &app.id) {
                if other != &app.id {
                    errors.push(CompileError {
                        kind: CompileErrorKind::DomainTaken,
                        resource: format!("AccessApplication {}", app.id),
                        field: format!("spec.domains[{i}]"),
                        value: None,
                        message: format!("the same domain is already served by AccessApplication {other}"),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::Resources;

    fn compile_yaml(yaml: &str) -> Result<Compiled, CompileErrors> {
        let mut r = Resources::default();
        r.add_yaml("t.yaml", yaml).unwrap();
        r.compile("default")
    }

    const APP: &str = "apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {name: a}
spec:
  domains: [a.test]
  policies: [{name: p, action: Allow, include: [{everyone: {}}]}]
";

    #[test]
    fn redirect_without_login_is_an_error_naming_the_field() {
        let e = compile_yaml(&format!("{APP}  unauthenticatedResponse: Redirect\n")).unwrap_err();
        assert_eq!(e.0[0].field, "spec.unauthenticatedResponse", "{e}");
        assert!(compile_yaml(&format!("{APP}  unauthenticatedResponse: Status401\n")).is_ok());
    }

    #[test]
    fn an_external_application_with_a_selector_is_an_error_naming_the_field() {
        let selector = "  selector: {matchLabels: {app: a}}\n";
        let e = compile_yaml(&format!("{APP}{selector}  enforcement: External\n")).unwrap_err();
        assert_eq!(e.0[0].field, "spec.selector", "{e}");
        assert!(e.to_string().contains("set spec.enforcement to Both"), "{e}");
        for ok in ["Sidecar", "Both"] {
            assert!(compile_yaml(&format!("{APP}{selector}  enforcement: {ok}\n")).is_ok(), "{ok}");
        }
        assert!(compile_yaml(&format!("{APP}  enforcement: External\n")).is_ok());
        let e = Resources::default().add_yaml("t.yaml", &format!("{APP}  enforcement: Proxy\n")).unwrap_err();
        assert!(e.message.contains("unknown variant `Proxy`"), "{e:?}");
    }

    #[test]
    fn an_authentication_host_among_the_applications_own_domains_is_refused() {
        let login = |host: &str| {
            format!("{APP}  login: {{ authenticationHost: \"{host}\", oidc: {{ issuer: \"https://idp.test\", clientId: c }} }}\n")
        };
        assert!(compile_yaml(&login("login.test:8443")).is_ok());
        for own in ["a.test", "A.test:8443"] {
            let e = compile_yaml(&login(own)).unwrap_err();
            assert_eq!(e.0[0].field, "spec.login.authenticationHost", "{e}");
            assert!(e.to_string().contains("must not be one of this application's domains"), "{e}");
        }
        let wildcard = APP.replace("domains: [a.test]", "domains: [\"*.apps.test\"]");
        let yaml = format!("{wildcard}  login: {{ authenticationHost: login.apps.test, oidc: {{ issuer: \"https://idp.test\", clientId: c }} }}\n");
        assert!(compile_yaml(&yaml).is_err(), "covered by the application's wildcard");
    }

    #[test]
    fn two_applications_on_one_domain_are_refused() {
        let other = APP.replace("name: a}", "name: b}");
        let e = compile_yaml(&format!("{APP}---\n{other}")).unwrap_err();
        assert!(e.to_string().contains("already served by AccessApplication default/a"), "{e}");
    }
}
