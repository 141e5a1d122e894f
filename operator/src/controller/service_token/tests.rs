//! Reconcile tests against a scripted mock API server (`crate::fixtures`).

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::runtime::controller::Action;
use portcullis_crds::v1alpha1::{AccessServiceToken, AccessServiceTokenSpec, AccessServiceTokenStatus};

use super::plan::{Credentials, Previous, ISSUED_AT_ANNOTATION, ROTATED_FOR_ANNOTATION};
use super::*;
use crate::credentials::ClientSecret;
use crate::fixtures::{Scenario, Seen};

const NS: &str = "shop";
const H: i64 = 3600;

fn t(secs: i64) -> Timestamp {
    "2026-11-24T00:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_secs(secs)
}

fn token(duration: Option<&str>, grace: Option<&str>, rotate: Option<&str>) -> AccessServiceToken {
    let mut t = AccessServiceToken::new(
        "ci-token",
        AccessServiceTokenSpec {
            duration: duration.map(str::to_owned),
            rotation_grace_period: grace.map(str::to_owned),
            secret_name: "ci-token-credentials".into(),
        },
    );
    t.metadata.namespace = Some(NS.into());
    t.metadata.uid = Some("uid-ci-token".into());
    t.metadata.generation = Some(2);
    if let Some(v) = rotate {
        t.metadata.annotations = Some([(ROTATE_ANNOTATION.to_owned(), v.to_owned())].into());
    }
    t
}

fn credentials(issued_at: Timestamp, previous_until: Option<Timestamp>) -> Credentials {
    Credentials {
        client_id: "0123456789abcdef0123456789abcdef.access".into(),
        client_secret: ClientSecret::new("a".repeat(64)),
        previous: previous_until.map(|valid_until| Previous { secret: ClientSecret::new("b".repeat(64)), valid_until }),
        issued_at,
        rotated_for: None,
    }
}

/// The Secret as a previous reconcile left it.
fn stored(token: &AccessServiceToken, c: &Credentials) -> Secret {
    desired_secret(token, NS, c).unwrap()
}

/// Runs one reconcile against `scenario` and returns its result and every request made.
async fn reconcile_with(
    token: &AccessServiceToken,
    now: Timestamp,
    scenario: Vec<Scenario>,
) -> (Result<Action>, Vec<Seen>, prometheus::Registry) {
    let (ctx, verifier, registry) = Context::test(now);
    let mock = verifier.run(NS, scenario);
    let result = reconcile(Arc::new(token.clone()), ctx.clone()).await;
    drop(ctx); // the mock checks that nothing else is sent once every client is gone
    (result, mock.await.expect("mock API server"), registry)
}

fn secret_of(seen: &Seen) -> Secret {
    serde_json::from_value(seen.body.clone()).expect("a Secret body")
}

fn status_of(seen: &Seen) -> AccessServiceTokenStatus {
    serde_json::from_value(seen.body["status"].clone()).expect("a status body")
}

fn ready(status: &AccessServiceTokenStatus) -> (String, String, String) {
    let c = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// Fails when `secret` (or its base64 form) appears in any request but the Secret's own writes.
fn assert_secret_only_in_secret_writes(seen: &[Seen], secret: &ClientSecret) {
    let b64 = serde_json::to_value(ByteString(secret.expose().as_bytes().to_vec())).unwrap();
    let b64 = b64.as_str().unwrap();
    for s in seen.iter().filter(|s| !s.uri.starts_with("/api/v1/namespaces/shop/secrets/")) {
        let text = s.body.to_string();
        assert!(!text.contains(secret.expose()) && !text.contains(b64), "secret leaked into {} {}", s.method, s.uri);
    }
}

#[tokio::test]
async fn first_reconcile_writes_the_secret_and_reports_ready() {
    let token = token(Some("8760h"), Some("24h"), None);
    let (result, seen, registry) = reconcile_with(
        &token,
        t(0),
        vec![Scenario::GetSecret(None), Scenario::ApplySecret, Scenario::Event("Issued"), Scenario::ApplyStatus],
    )
    .await;
    // The next deadline (rotation 24h before a year's expiry) is beyond the daily re-check.
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(24 * 3600)));
    let expiry = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "portcullis_operator_service_token_expiry_timestamp_seconds")
        .expect("expiry gauge");
    assert_eq!(
        expiry.get_metric()[0].get_gauge().get_value(),
        (t(0) + SignedDuration::from_hours(8760)).as_second() as f64
    );

    let apply = &seen[1];
    assert!(apply.uri.starts_with("/api/v1/namespaces/shop/secrets/ci-token-credentials?"), "{}", apply.uri);
    let secret = secret_of(apply);
    assert_eq!(
        secret.metadata.owner_references,
        Some(vec![OwnerReference {
            api_version: "access.portcullis.dev/v1alpha1".into(),
            kind: "AccessServiceToken".into(),
            name: "ci-token".into(),
            uid: "uid-ci-token".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }])
    );
    assert_eq!(secret.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"], "portcullis-operator");
    assert_eq!(secret.metadata.annotations.as_ref().unwrap()[ISSUED_AT_ANNOTATION], t(0).to_string());
    let keys: Vec<&str> = secret.data.as_ref().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["client-id", "client-secret"]);
    let c = Credentials::from_secret(&secret).unwrap();
    assert!(c.client_id.ends_with(".access") && c.client_id.len() == 39, "{}", c.client_id);
    assert_eq!(c.client_secret.expose().len(), 64);

    let status = status_of(&seen[3]);
    assert_eq!(status.client_id.as_deref(), Some(c.client_id.as_str()));
    assert_eq!(status.expires_at, Some(t(8760 * H).to_string()));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.last_rotated, None);
    let (s, reason, message) = ready(&status);
    assert_eq!((s.as_str(), reason.as_str()), ("True", "CredentialsIssued"));
    assert!(message.contains("ci-token-credentials"), "{message}");
    assert_eq!(seen[3].body["kind"], "AccessServiceToken");

    assert_secret_only_in_secret_writes(&seen, &c.client_secret);
}

#[tokio::test]
async fn a_second_reconcile_changes_nothing() {
    let mut token = token(Some("8760h"), None, None);
    let (_, first, _) = reconcile_with(
        &token,
        t(0),
        vec![Scenario::GetSecret(None), Scenario::ApplySecret, Scenario::Event("Issued"), Scenario::ApplyStatus],
    )
    .await;
    let secret = secret_of(&first[1]);
    token.status = Some(status_of(&first[3]));

    // An hour later, with the Secret and status as the first reconcile left them: one read only.
    let (result, seen, _) = reconcile_with(&token, t(H), vec![Scenario::GetSecret(Some(Box::new(secret)))]).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(24 * 3600)));
    assert_eq!(seen.len(), 1);
}

/// The requests of a rotation: read the Secret, write it, record `Rotated`, write status.
fn rotation(token: &AccessServiceToken, old: &Credentials) -> Vec<Scenario> {
    vec![
        Scenario::GetSecret(Some(Box::new(stored(token, old)))),
        Scenario::ApplySecret,
        Scenario::Event("Rotated"),
        Scenario::ApplyStatus,
    ]
}

#[tokio::test]
async fn a_new_rotate_annotation_rotates_and_keeps_the_previous_secret_for_the_grace() {
    let token = token(Some("8760h"), Some("24h"), Some("2026-11-25"));
    let old = credentials(t(0), None);
    let (result, seen, _) = reconcile_with(&token, t(10 * H), rotation(&token, &old)).await;
    // Next deadline: the previous secret's grace ends in 24 h.
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(24 * 3600)));

    let secret = secret_of(&seen[1]);
    let new = Credentials::from_secret(&secret).unwrap();
    assert_eq!(new.client_id, old.client_id, "rotation keeps the client id");
    assert_ne!(new.client_secret, old.client_secret);
    assert_eq!(new.previous, Some(Previous { secret: old.client_secret.clone(), valid_until: t(34 * H) }));
    assert_eq!(new.rotated_for.as_deref(), Some("2026-11-25"));
    assert_eq!(secret.metadata.annotations.as_ref().unwrap()[ROTATED_FOR_ANNOTATION], "2026-11-25");
    let data = secret.data.as_ref().unwrap();
    assert_eq!(data["previous-client-secret-valid-until"].0, t(34 * H).to_string().as_bytes());

    let note = seen[2].body["note"].as_str().unwrap();
    assert!(note.contains("access.portcullis.dev/rotate") && note.contains(&t(34 * H).to_string()), "{note}");

    let status = status_of(&seen[3]);
    assert_eq!(status.last_rotated, Some(t(10 * H).to_string()));
    assert_eq!(status.expires_at, Some(t(10 * H + 8760 * H).to_string()));

    assert_secret_only_in_secret_writes(&seen, &new.client_secret);
    assert_secret_only_in_secret_writes(&seen, &old.client_secret);
}

#[tokio::test]
async fn a_token_near_expiry_is_rotated_and_the_old_secret_lasts_until_its_expiry() {
    let token = token(Some("10h"), None, None);
    let old = credentials(t(0), None);
    let (result, seen, _) = reconcile_with(&token, t(9 * H + 1800), rotation(&token, &old)).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(1800)), "until the old secret's expiry");
    let new = Credentials::from_secret(&secret_of(&seen[1])).unwrap();
    assert_ne!(new.client_secret, old.client_secret);
    assert_eq!(new.previous.map(|p| p.valid_until), Some(t(10 * H)));
    assert!(seen[2].body["note"].as_str().unwrap().contains("expiry is near"));
    assert_eq!(status_of(&seen[3]).expires_at, Some(t(19 * H + 1800).to_string()));
}

#[tokio::test]
async fn the_previous_secret_is_removed_after_its_grace() {
    let token = token(None, Some("1h"), None);
    let old = credentials(t(0), Some(t(H)));
    let (result, seen, _) = reconcile_with(
        &token,
        t(H),
        vec![Scenario::GetSecret(Some(Box::new(stored(&token, &old)))), Scenario::ApplySecret, Scenario::ApplyStatus],
    )
    .await;
    assert_eq!(result.unwrap(), Action::await_change(), "no duration and no grace left: nothing is due");
    let secret = secret_of(&seen[1]);
    let keys: Vec<&str> = secret.data.as_ref().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["client-id", "client-secret"], "server-side apply drops the keys we no longer send");
    assert_eq!(Credentials::from_secret(&secret).unwrap().client_secret, old.client_secret);
    assert_eq!(status_of(&seen[2]).expires_at, None);
}

#[tokio::test]
async fn a_bad_duration_is_reported_once_and_writes_no_secret() {
    let mut token = token(Some("1y"), None, None);
    let (result, seen, _) =
        reconcile_with(&token, t(0), vec![Scenario::Event("InvalidDuration"), Scenario::ApplyStatus]).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(seen[0].body["type"], "Warning");
    let status = status_of(&seen[1]);
    let (s, reason, message) = ready(&status);
    assert_eq!((s.as_str(), reason.as_str()), ("False", "InvalidDuration"));
    assert!(message.starts_with("spec.duration \"1y\" is invalid"), "{message}");
    assert_eq!(status.observed_generation, Some(2));

    // Reconciled again while still broken: no event, no write (events only on transitions).
    token.status = Some(status);
    let (result, seen, _) = reconcile_with(&token, t(60), vec![]).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(seen.is_empty());
}

#[tokio::test]
async fn a_secret_controlled_by_something_else_is_not_overwritten() {
    let token = token(None, None, None);
    let mut theirs = stored(&token, &credentials(t(0), None));
    theirs.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: "legacy".into(),
        uid: "uid-legacy".into(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    let (result, seen, _) = reconcile_with(
        &token,
        t(0),
        vec![
            Scenario::GetSecret(Some(Box::new(theirs))),
            Scenario::Event("SecretOwnedElsewhere"),
            Scenario::ApplyStatus,
        ],
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(300)));
    let (s, reason, message) = ready(&status_of(&seen[2]));
    assert_eq!((s.as_str(), reason.as_str()), ("False", "SecretOwnedElsewhere"));
    assert!(message.contains("Deployment legacy") && message.contains("spec.secretName"), "{message}");
    assert!(!seen[2].body.to_string().contains(&"a".repeat(64)));
}

#[tokio::test]
async fn api_errors_back_off_exponentially_and_are_counted() {
    let token = Arc::new(token(None, None, None));
    let (ctx, verifier, registry) = Context::test(t(0));
    let mock = verifier.run(NS, vec![Scenario::GetSecretFails(500), Scenario::GetSecretFails(500)]);
    for want in [5, 10] {
        let err = reconcile(token.clone(), ctx.clone()).await.unwrap_err();
        assert_eq!(err.reason(), "KubeApiError");
        assert!(err.to_string().contains("reading Secret shop/ci-token-credentials"), "{err}");
        assert_eq!(error_policy(token.clone(), &err, ctx.clone()), Action::requeue(Duration::from_secs(want)));
    }
    ctx.reset_backoff("shop/ci-token");
    assert_eq!(ctx.next_backoff("shop/ci-token"), Duration::from_secs(5), "success resets the backoff");
    drop(ctx);
    mock.await.unwrap();

    let families = registry.gather();
    let reconciles = families.iter().find(|f| f.name() == "portcullis_operator_reconciles_total").unwrap();
    let failed = reconciles.get_metric().iter().find(|m| m.get_label().iter().any(|l| l.value() == "KubeApiError"));
    assert_eq!(failed.map(|m| m.get_counter().get_value()), Some(2.0));
}

#[tokio::test]
async fn a_refused_secret_write_does_not_quote_the_secret_in_the_error() {
    let token = token(None, None, None);
    let (result, seen, _) =
        reconcile_with(&token, t(0), vec![Scenario::GetSecret(None), Scenario::ApplySecretRejected]).await;
    let err = result.unwrap_err();
    let sent = Credentials::from_secret(&secret_of(&seen[1])).unwrap();
    assert_eq!(err.reason(), "SecretWriteFailed");
    let rendered = format!("{err} {err:?}");
    assert!(rendered.contains("HTTP 422 Invalid"), "{rendered}");
    assert!(!rendered.contains(sent.client_secret.expose()), "the error quotes the secret: {rendered}");
}
