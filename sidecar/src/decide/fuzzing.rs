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

use super::authn::jwt::{JwtConfig, KeySet};
use super::authn::service_token::ServiceTokens;
use super::authn::Authn;
use super::cors::{CorsConfig, PreflightOutcome};
use super::policy::Decision;
use super::request::{self, AppDecisions, Front};
use super::route::Router;

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
        let compiled = res.compile("default").expect("embedded fuzzing manifests compile");
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

/// The decisions in request-path order (the same `request` steps the proxy runs), with the
/// invariants asserted.
pub fn decide(method: &Method, uri: &Uri, headers: &HeaderMap, peer: IpAddr, now: i64) {
    let h = harness();
    let Ok(routed) = request::route(&h.router, http::Version::HTTP_11, uri, headers) else { return };
    let app = &h.apps[routed.app];
    let decisions =
        AppDecisions { spec: &app.spec, cors: &app.cors, jwt: &app.jwt, tokens: &app.tokens, keys: &app.keys };
    let origin = match request::front(&app.cors, method, headers, &routed.target.path.matching) {
        Front::Reserved => return,
        Front::Preflight(p, outcome) => {
            match outcome {
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
        Front::Request { origin } => origin.cloned(),
    };
    let authn = request::authenticate(&decisions, headers, now).authn;
    let verdict = request::policies(&app.spec, headers, &authn, peer, &[]);
    if matches!(verdict.decision, Decision::Allow { .. }) {
        assert!(matches!(authn, Authn::Authenticated(_)), "allowed without authentication");
    }
    assert_eq!(verdict.refusal.is_none(), matches!(verdict.decision, Decision::Allow { .. } | Decision::Bypass { .. }));
    let _ = request::destination(&app.spec, &routed.target.path.matching);
    let mut response = HeaderMap::new();
    response.insert("access-control-allow-origin", HeaderValue::from_static("https://app.example"));
    app.cors.apply_to_response(origin.as_ref(), &mut response);
    app.cors.apply_to_response(headers.get(ORIGIN), &mut response);
    assert!(response.get_all("access-control-allow-origin").iter().count() <= 1, "duplicate Allow-Origin");
}
