//! The hand-off's checks: codes (tampered, another key's, wrong audience, expired, another
//! browser's, replayed), the authentication host's `return` rule (the open-redirect rule of
//! `rd`), and how applications are grouped by authentication host (B-SSO-1, B-SSO-3, B-SSO-5,
//! B-SSO-6, B-SSO-8, B-SSO-9).

use std::sync::Arc;

use portcullis_crds::manifests::Resources;
use portcullis_crds::snapshot::Application;

use super::*;
use crate::identity::auth_host::{user_of, AuthHostError, AuthHosts};
use crate::identity::session::SessionKey;
use crate::identity::AppLogin;

const APPS: &str = r#"
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: { name: one, namespace: shop }
spec:
  domains: [one.mysite.com]
  login: { authenticationHost: "auth.mysite.com:8443", oidc: { issuer: "https://idp.test", clientId: c } }
  policies: [ { name: all, action: Allow, include: [ { everyone: {} } ] } ]
---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: { name: two, namespace: shop }
spec:
  domains: [two.mysite.com, "www.mysite.com/two"]
  login: { authenticationHost: "auth.mysite.com:8443", oidc: { issuer: "https://idp.test", clientId: c }, cookie: { secure: false } }
  policies: [ { name: all, action: Allow, include: [ { everyone: {} } ] } ]
---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: { name: alone, namespace: shop }
spec:
  domains: [alone.mysite.com, "www.mysite.com/alone"]
  login: { oidc: { issuer: "https://idp.test", clientId: c } }
  policies: [ { name: all, action: Allow, include: [ { everyone: {} } ] } ]
"#;

fn apps(yaml: &str) -> Vec<Application> {
    let mut r = Resources::default();
    r.add_yaml("t.yaml", yaml).unwrap();
    r.compile("default").expect("compiles").snapshot.applications
}

fn index(apps: &[Application], name: &str) -> usize {
    apps.iter().position(|a| a.id.name == name).unwrap()
}

fn hosts(apps: &[Application]) -> Result<AuthHosts, AuthHostError> {
    let labels: Vec<String> = apps.iter().map(|a| a.id.to_string()).collect();
    AuthHosts::build(labels.iter().map(String::as_str).zip(apps.iter().map(|a| a.login.as_ref())), &Router::new(apps))
}

#[test]
fn applications_are_grouped_by_authentication_host() {
    let apps = apps(APPS);
    let hosts = hosts(&apps).unwrap();
    let h = hosts.find("auth.mysite.com").expect("the host, matched without its port");
    assert_eq!(
        (h.authority.as_str(), h.issuer.as_str()),
        ("auth.mysite.com:8443", "portcullis-auth:auth.mysite.com:8443")
    );
    let mut members = h.members.clone();
    members.sort_unstable();
    let mut want = vec![index(&apps, "one"), index(&apps, "two")];
    want.sort_unstable();
    assert_eq!(members, want);
    assert!(hosts.find("alone.mysite.com").is_none() && hosts.find("one.mysite.com").is_none());
}

#[test]
fn applications_sharing_a_host_must_share_the_provider_and_the_host_is_no_domain() {
    let other_client = APPS.replacen("clientId: c }, cookie", "clientId: d }, cookie", 1);
    assert!(matches!(hosts(&apps(&other_client)), Err(AuthHostError::Mismatch { .. })));
    let other_port = APPS.replacen(
        "auth.mysite.com:8443\", oidc: { issuer: \"https://idp.test\", clientId: c }, cookie",
        "auth.mysite.com:9443\", oidc: { issuer: \"https://idp.test\", clientId: c }, cookie",
        1,
    );
    assert!(matches!(hosts(&apps(&other_port)), Err(AuthHostError::Mismatch { what: "ports", .. })));
    let a_domain = APPS.replace("[alone.mysite.com,", "[alone.mysite.com, auth.mysite.com,");
    let e = hosts(&apps(&a_domain)).unwrap_err();
    assert!(matches!(&e, AuthHostError::IsADomain { app, .. } if app == "shop/alone"), "{e}");
}

#[test]
fn return_urls_go_only_to_member_applications_hand_off_paths() {
    let apps = apps(APPS);
    let router = Router::new(&apps);
    let (one, two, alone) = (index(&apps, "one"), index(&apps, "two"), index(&apps, "alone"));
    let member = |i: usize| i == one || i == two;
    // `two` has a non-Secure cookie on a plain listener: its public scheme is http.
    let scheme_of = |i: usize| if i == two { "http" } else { "https" };
    let check = |raw: &str| handoff_return(raw, &router, member, scheme_of).map(|(u, i)| (u.to_string(), i));
    assert_eq!(
        check("https://one.mysite.com:8443/.portcullis/handoff"),
        Ok(("https://one.mysite.com:8443/.portcullis/handoff".into(), one))
    );
    assert_eq!(check("http://two.mysite.com/.portcullis/handoff").map(|r| r.1), Ok(two));
    let refused = [
        ("https://alone.mysite.com/.portcullis/handoff", ReturnError::OffDomain), // not a member
        ("https://www.mysite.com/alone/.portcullis/handoff", ReturnError::Invalid),
        ("https://evil.test/.portcullis/handoff", ReturnError::OffDomain),
        ("https://one.mysite.com.evil.test/.portcullis/handoff", ReturnError::OffDomain),
        ("https://one.mysite.com/.portcullis/handoff?x=1", ReturnError::Invalid),
        ("https://one.mysite.com/.portcullis/handoff#x", ReturnError::Invalid),
        ("https://one.mysite.com/other", ReturnError::Invalid),
        ("https://one.mysite.com/.portcullis/x/../handoff/", ReturnError::Invalid),
        ("https://u:p@one.mysite.com/.portcullis/handoff", ReturnError::Invalid),
        ("http://one.mysite.com/.portcullis/handoff", ReturnError::Invalid), // wrong scheme
        ("javascript:alert(1)//one.mysite.com/.portcullis/handoff", ReturnError::Invalid),
        ("/.portcullis/handoff", ReturnError::Invalid), // relative: no base on the auth host
        ("//evil.test/.portcullis/handoff", ReturnError::Invalid),
        ("", ReturnError::Invalid),
    ];
    for (raw, want) in refused {
        assert_eq!(check(raw), Err(want), "{raw}");
    }
    assert!(!member(alone));
    assert_eq!(
        member_url("https://two.mysite.com/x?y", &router, member).map(String::from),
        Some("https://two.mysite.com/x?y".into())
    );
    assert_eq!(member_url("https://alone.mysite.com/", &router, member), None);
    assert_eq!(member_url("https://evil.test/", &router, member), None);
}

#[test]
fn states_are_short_base64url() {
    assert!(valid_state(&"a".repeat(43)) && valid_state("A-_9"));
    for bad in ["", "a b", "a.b", "a%20", &"a".repeat(MAX_STATE_BYTES + 1)] {
        assert!(!valid_state(bad), "{bad:?}");
    }
}

fn app_login(app: &mut Application, key: Arc<SessionKey>) -> AppLogin {
    let login = app.login.clone().unwrap();
    let client = crate::outbound::client(std::time::Duration::from_secs(1)).expect("client");
    let registry = Arc::new(crate::jwks::JwksRegistry::new(client.clone(), &crate::metrics::Metrics::new()));
    AppLogin::install(app, login, Some(key), client, registry).unwrap()
}

#[test]
fn codes_are_refused_unless_fresh_for_this_application_and_this_browser() {
    let mut apps = apps(APPS);
    let key = Arc::new(SessionKey::generate().unwrap());
    let (i1, i2) = (index(&apps, "one"), index(&apps, "two"));
    let one = app_login(&mut apps[i1], key.clone());
    let two = app_login(&mut apps[i2], key.clone());
    let other_key = app_login(&mut apps[i1].clone(), Arc::new(SessionKey::generate().unwrap()));
    let iss = auth_issuer("auth.mysite.com:8443");
    let now = 1_800_000_000;
    let identity = Identity {
        iss: iss.clone(),
        sid: "sid".into(),
        idp: "https://idp.test".into(),
        iat: now - 100,
        exp: now + 3600,
        claims: serde_json::json!({ "email": "a@mysite.com", "sub": "a" }).as_object().unwrap().clone(),
    };
    let state = HandoffState {
        st: "state-1".into(),
        rd: "https://one.mysite.com/".into(),
        app: "shop/one".into(),
        exp: now + 600,
    };
    let code = one.mint_code(&identity, "state-1", "jti-1".into(), now).unwrap();
    let read = one.read_code(&code).expect("its own code reads");
    assert_eq!(check_code(&read, &state, &iss, one.session_issuer(), now), Ok(()));
    assert_eq!((read.session_exp, read.identity.exp), (now + 3600, now + CODE_TTL_SECS));
    assert_eq!(user_of(&read.identity).email.as_deref(), Some("a@mysite.com"));

    // Tampered: one payload character flipped.
    let mut bytes = code.clone().into_bytes();
    let at = code.find('.').unwrap() + 5;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    assert!(one.read_code(&String::from_utf8(bytes).unwrap()).is_none());
    // Another key's code (a sidecar with another session key) does not read.
    assert!(other_key.read_code(&code).is_none());
    // Another value type signed by the same key is not a code.
    let state_cookie = one.encode_handoff_state(&state).unwrap();
    assert!(one.read_code(&state_cookie).is_none());
    assert!(one.decode_handoff_state(&code).is_none());
    // Same key (one process's generated key), but addressed to `one`: `two` refuses it.
    let read_by_two = two.read_code(&code).unwrap();
    assert_eq!(check_code(&read_by_two, &state, &iss, two.session_issuer(), now), Err(HandoffError::WrongAudience));
    // From another authentication host.
    assert_eq!(
        check_code(&read, &state, &auth_issuer("auth.other.test"), one.session_issuer(), now),
        Err(HandoffError::BadCode)
    );
    // Expired, or minted with a lifetime longer than a code's, or in the future.
    assert_eq!(check_code(&read, &state, &iss, one.session_issuer(), now + CODE_TTL_SECS), Err(HandoffError::Expired));
    let long = Code { identity: Identity { exp: now + 3600, ..read.identity.clone() }, ..read.clone() };
    assert_eq!(check_code(&long, &state, &iss, one.session_issuer(), now), Err(HandoffError::Expired));
    let future =
        Code { identity: Identity { iat: now + 100, exp: now + 110, ..read.identity.clone() }, ..read.clone() };
    assert_eq!(check_code(&future, &state, &iss, one.session_issuer(), now), Err(HandoffError::Expired));
    // Another browser's hand-off (its state cookie holds another state).
    let theirs = HandoffState { st: "state-2".into(), ..state.clone() };
    assert_eq!(check_code(&read, &theirs, &iss, one.session_issuer(), now), Err(HandoffError::StateMismatch));
    // The state cookie: this application's, unexpired.
    assert_eq!(check_state(&state, "shop/one", now), Ok(()));
    assert_eq!(check_state(&state, "shop/two", now), Err(HandoffError::BadStateCookie));
    assert_eq!(check_state(&state, "shop/one", now + 600), Err(HandoffError::BadStateCookie));
    // A code never outlives its identity session.
    let ending = Identity { exp: now + 10, ..identity.clone() };
    let short = one.read_code(&one.mint_code(&ending, "state-1", "jti-2".into(), now).unwrap()).unwrap();
    assert_eq!(short.identity.exp, now + 10);
}

#[test]
fn a_code_is_redeemed_once_and_an_ended_identity_session_stays_ended() {
    let jti = crate::identity::session::random_b64url(32).unwrap();
    assert!(first_use(&jti));
    assert!(!first_use(&jti));
    let mut apps = apps(APPS);
    let i = index(&apps, "one");
    let leader = app_login(&mut apps[i], Arc::new(SessionKey::generate().unwrap()));
    let user = user_of(&Identity {
        iss: String::new(),
        sid: String::new(),
        idp: "https://idp.test".into(),
        iat: 0,
        exp: 0,
        claims: serde_json::json!({ "email": "a@mysite.com" }).as_object().unwrap().clone(),
    });
    let iss = auth_issuer("auth.mysite.com:8443");
    let now = 1_800_000_000;
    let sid = crate::identity::session::random_b64url(32).unwrap();
    let (cookie, identity) = leader.mint_identity(&iss, &user, sid.clone(), now).unwrap();
    assert_eq!(leader.read_identity(&iss, &cookie, now), Some(identity.clone()));
    assert_eq!(leader.read_identity(&auth_issuer("elsewhere"), &cookie, now), None);
    assert_eq!(leader.read_identity(&iss, &cookie, identity.exp), None, "expired");
    end_session(&sid);
    assert_eq!(leader.read_identity(&iss, &cookie, now), None, "ended by sign-out");
}
