//! The request → decision path driven from arbitrary bytes. It calls exactly the pure decisions
//! the request path calls, in the same order, and checks the invariants that must hold whatever
//! the input: no panic, fail closed, no `*` with credentials, a refused preflight carries no
//! `Access-Control-Allow-*`. The configuration decided against is `decide.yaml` (the seed's
//! setup); the other targets reuse its compiled form.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use http::header::{HeaderValue, ORIGIN};
use http::{HeaderMap, Method, Uri};
use portcullis_crds::manifests::Resources;
use portcullis_crds::snapshot::Application;
use portcullis_sidecar::decide::authn::jwt::{JwtConfig, KeySet};
use portcullis_sidecar::decide::authn::service_token::ServiceTokens;
use portcullis_sidecar::decide::authn::Authn;
use portcullis_sidecar::decide::cors::{CorsConfig, PreflightOutcome};
use portcullis_sidecar::decide::policy::Decision;
use portcullis_sidecar::decide::request::{self, AppDecisions, Front};
use portcullis_sidecar::decide::route::Router;

/// The seed's configuration, with the test JWKS inline and a service token.
const MANIFESTS: &str = include_str!("decide.yaml");
/// The test JWKS (public keys of the committed test keys in tests/fixtures/keys).
pub const JWKS: &str = include_str!("../../tests/fixtures/keys/jwks.json");

/// One application rendered as the request path holds it.
pub struct App {
    pub spec: Application,
    pub cors: CorsConfig,
    pub jwt: JwtConfig,
    pub tokens: ServiceTokens,
    pub keys: Vec<Option<Arc<KeySet>>>,
}

/// The compiled configuration every decision runs against.
pub struct Harness {
    pub router: Router,
    pub apps: Vec<App>,
}

/// Built once per process.
pub fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let indented: String = JWKS.lines().map(|l| format!("          {l}\n")).collect();
        let text = MANIFESTS.replace("          JWKS\n", &indented);
        let mut res = Resources::default();
        // The embedded manifests are part of the build; failing here is a bug in them.
        res.add_yaml("decide.yaml", &text).expect("embedded fuzzing manifests parse");
        let compiled = res.compile("default").expect("embedded fuzzing manifests compile");
        let keys = KeySet::from_jwks_json(JWKS.as_bytes()).ok().map(Arc::new);
        render(compiled.snapshot.applications, keys).expect("embedded fuzzing manifests render")
    })
}

/// Renders compiled applications as the sidecar's config loader does (router, CORS header
/// values, JWT verifiers, service-token digests), every issuer with `keys`; the first part that
/// does not render, named.
pub fn render(apps: Vec<Application>, keys: Option<Arc<KeySet>>) -> Result<Harness, String> {
    let router = Router::new(&apps);
    let apps = apps
        .into_iter()
        .map(|spec| {
            Ok(App {
                cors: CorsConfig::try_from(&spec.cors).map_err(|e| format!("cors: {e}"))?,
                jwt: JwtConfig::new(&spec.identity).map_err(|e| format!("identity: {e}"))?,
                tokens: ServiceTokens::new(&spec.service_tokens).map_err(|e| format!("service tokens: {e}"))?,
                keys: spec.identity.issuers.iter().map(|_| keys.clone()).collect(),
                spec,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Harness { router, apps })
}

/// Interprets `data` as a request — first line the method, second the target, then
/// `name: value` header lines — and runs it through every decision.
pub fn run(data: &[u8]) {
    let Some((method, uri, headers)) = crate::request(data) else { return };
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
                    // Watching the decision does not change it, and a refusal says why.
                    let mut why = Why::default();
                    assert_eq!(app.cors.preflight_with(&p, &mut why), PreflightOutcome::Refuse(r));
                    assert!(!why.0.is_empty(), "a refused preflight without a reason");
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

/// Keeps what `preflight_with` says about a refusal.
#[derive(Default)]
struct Why(String);

impl portcullis_sidecar::decide::observe::Observer for Why {
    fn preflight_refused(&mut self, why: &dyn std::fmt::Display) {
        self.0 = why.to_string();
    }
}
