//! The request → decision path driven from arbitrary bytes, for the `cargo fuzz` target in
//! `sidecar/fuzz` and the property test that runs the same code in CI. It calls exactly the
//! pure decisions the request path calls, in the same order, and checks the invariants that
//! must hold whatever the input: no panic, fail closed, no `*` with credentials, a refused
//! preflight carries no `Access-Control-Allow-*`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use http::header::{HeaderName, HeaderValue, ORIGIN};
use http::{HeaderMap, Method, Uri};
use portcullis_crds::manifests::Resources;
use portcullis_crds::snapshot::Application;

use super::authn::jwt::{self, JwtConfig, KeySet};
use super::authn::service_token::{self, ServiceTokens};
use super::authn::{Authn, AuthnFailure, Principal};
use super::cors::{classify, Classified, CorsConfig, PreflightOutcome};
use super::policy::{evaluate, Decision};
use super::route::{forward_route, request_target, Router};

/// The seed's configuration, with the test JWKS inline and a service token.
const MANIFESTS: &str = include_str!("fuzzing.yaml");
const JWKS: &str = include_str!("../../../tests/fixtures/keys/jwks.json");

struct App {
    spec: Application,
    cors: CorsConfig,
    jwt: JwtConfig,
    tokens: ServiceTokens,
    keys: Vec<Option<Arc<KeySet>>>,
}

struct Harness {
    router: Router,
    apps: Vec<App>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let indented: String = JWKS.lines().map(|l| format!("          {l}\n")).collect();
        let text = MANIFESTS.replace("          JWKS\n", &indented);
        let mut res = Resources::default();
        // The embedded manifests are part of the build; failing here is a bug in them.
        res.add_yaml("fuzzing.yaml", &text).expect("embedded fuzzing manifests parse");
        let compiled = portcullis_crds::compile(&portcullis_crds::Inputs {
            applications: &res.applications,
            service_tokens: &res.service_tokens,
            secrets: &res.secrets,
            default_namespace: "default",
        })
        .expect("embedded fuzzing manifests compile");
        let apps = compiled.snapshot.applications;
        let router = Router::new(&apps);
        let keys = KeySet::from_jwks_json(JWKS.as_bytes()).ok().map(Arc::new);
        let apps = apps
            .into_iter()
            .map(|spec| App {
                cors: CorsConfig::try_from(&spec.cors).expect("compiled CORS renders"),
                jwt: JwtConfig::new(&spec.identity).expect("compiled identity renders"),
                tokens: ServiceTokens::new(&spec.service_tokens).expect("compiled tokens render"),
                keys: spec.identity.issuers.iter().map(|_| keys.clone()).collect(),
                spec,
            })
            .collect();
        Harness { router, apps }
    })
}

/// Interprets `data` as a request — first line the method, second the target, then
/// `name: value` header lines — and runs it through every decision.
pub fn run(data: &[u8]) {
    let mut lines = data.split(|b| *b == b'\n');
    let method = lines.next().and_then(|m| Method::from_bytes(m).ok()).unwrap_or(Method::GET);
    let Some(uri) = lines.next().and_then(|u| Uri::try_from(u).ok()) else { return };
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        headers.append(name, value);
    }
    decide(&method, &uri, &headers, IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 1_900_000_000);
}

/// The decisions in request-path order, with the invariants asserted.
pub fn decide(method: &Method, uri: &Uri, headers: &HeaderMap, peer: IpAddr, now: i64) {
    let h = harness();
    let Ok(target) = request_target(uri, headers) else { return };
    let Some(index) = h.router.route(&target.host, &target.path) else { return };
    let app = &h.apps[index];
    let origin = match classify(method, headers) {
        Classified::Preflight(p) => {
            match app.cors.preflight(&p) {
                PreflightOutcome::Answer(answer) => {
                    let any = answer.get("access-control-allow-origin").is_some_and(|v| v == "*");
                    let creds = answer.contains_key("access-control-allow-credentials");
                    assert!(!(any && creds), "`*` with credentials");
                }
                PreflightOutcome::Refuse(r) => {
                    assert!(!r.reason().is_empty());
                    let _ = app.cors.explain_preflight(&p);
                }
                PreflightOutcome::Forward => {}
            }
            return;
        }
        Classified::Actual { origin } => Some(origin.clone()),
        Classified::NotCors => None,
    };
    let authn = match service_token::authenticate(&app.tokens, headers, now) {
        Some(Ok(s)) => Authn::Authenticated(Principal::Service(s)),
        Some(Err(f)) => Authn::Failed(AuthnFailure::ServiceToken(f)),
        None => match jwt::find_token(&app.jwt, headers) {
            None => Authn::Anonymous,
            Some((_, Err(f))) => Authn::Failed(AuthnFailure::Jwt(f)),
            Some((_, Ok(token))) => match app.jwt.authenticate(token, &app.keys, now) {
                Ok(u) => Authn::Authenticated(Principal::User(u)),
                Err(f) => Authn::Failed(AuthnFailure::Jwt(f)),
            },
        },
    };
    let decision = evaluate(&app.spec.policies, &authn, peer);
    if matches!(decision, Decision::Allow { .. }) {
        assert!(matches!(authn, Authn::Authenticated(_)), "allowed without authentication");
    }
    let _ = forward_route(&app.spec.forward_routes, &target.path);
    let mut response = HeaderMap::new();
    response.insert("access-control-allow-origin", HeaderValue::from_static("https://app.example"));
    app.cors.apply_to_response(origin.as_ref(), &mut response);
    app.cors.apply_to_response(headers.get(ORIGIN), &mut response);
    assert!(response.get_all("access-control-allow-origin").iter().count() <= 1, "duplicate Allow-Origin");
}
