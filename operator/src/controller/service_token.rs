//! The AccessServiceToken controller: keeps each token's credentials in the Secret its
//! `spec.secretName` names (server-side apply, one field manager, owned by the token), rotates
//! them on request and ahead of expiry, and reports `status`.
//!
//! Decisions live in [`plan`] (pure); this module reads, writes and reports. It must never put
//! a client secret anywhere but that Secret: not in status, events, logs, errors or metrics.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use portcullis_crds::v1alpha1::{AccessServiceToken, AccessServiceTokenStatus, ROTATE_ANNOTATION};

use self::plan::{Cause, Credentials, Plan, Step};
use super::{backoff, instrumented, FIELD_MANAGER};
use crate::credentials::{generate_client_id, generate_client_secret};
use crate::status::{Want, READY};
use crate::watch_health::WatchHealth;
use crate::{events, Context, Error, Result};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "accessservicetoken";
/// Label on the Secrets we write; the controller watches only Secrets carrying it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "portcullis-operator");
/// How often a token whose Secret belongs to someone else is looked at again: that Secret is not
/// watched (it lacks our label), so its deletion is noticed by this requeue.
const CONFLICT_RECHECK: Duration = Duration::from_secs(300);
/// Longest requeue: deadlines a year out are re-checked daily (and kube's delay queue refuses
/// delays beyond about two years).
const MAX_REQUEUE: Duration = Duration::from_secs(24 * 3600);

/// Runs the controller until the process is asked to stop. `ready` is called once the token
/// cache has synced.
pub async fn run(ctx: Arc<Context>, ready: impl FnOnce() + Send + 'static, health: Arc<WatchHealth>) {
    let tokens = Api::<AccessServiceToken>::all(ctx.client.clone());
    let secrets = Api::<Secret>::all(ctx.client.clone());
    let managed = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let controller = Controller::new(tokens, watcher::Config::default())
        .with_config(super::runtime_config())
        .owns(secrets, watcher::Config::default().labels(&managed))
        .shutdown_on_signal();
    tokio::spawn(signal_ready(controller.store(), ready));
    let metrics = ctx.metrics.clone();
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            super::observe_run(&metrics, CONTROLLER, &health, result);
            std::future::ready(())
        })
        .await;
}

async fn signal_ready(store: Store<AccessServiceToken>, ready: impl FnOnce()) {
    if store.wait_until_ready().await.is_ok() {
        ready();
    }
}

/// Brings one token's Secret and status in line with its spec.
pub async fn reconcile(token: Arc<AccessServiceToken>, ctx: Arc<Context>) -> Result<Action> {
    instrumented(&ctx, CONTROLLER, token.as_ref(), reconcile_inner(&token, &ctx)).await
}

/// Retries a failed reconcile with per-object exponential backoff.
pub fn error_policy(token: Arc<AccessServiceToken>, error: &Error, ctx: Arc<Context>) -> Action {
    backoff(&ctx, CONTROLLER, token.as_ref(), error)
}

/// Brings the token's Secret in line with its plan, then says what happened (an event for an
/// issue or a rotation) and writes status.
async fn reconcile_inner(token: &AccessServiceToken, ctx: &Context) -> Result<Action> {
    let namespace = super::namespace_of(token, "AccessServiceToken")?;
    let now = ctx.clock.now();
    let old_status = token.status.clone().unwrap_or_default();
    let kept = keep_credentials_status(&old_status);
    let settings = match plan::settings(&token.spec) {
        Ok(s) => s,
        Err(invalid) => {
            write_status(token, ctx, &old_status, kept, not_ready(invalid.reason(), invalid.to_string())).await?;
            return Ok(Action::await_change());
        }
    };
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    let secret_name = &token.spec.secret_name;
    let existing =
        secrets.get_opt(secret_name).await.map_err(Error::kube(format!("reading Secret {namespace}/{secret_name}")))?;
    let uid = token.uid().ok_or(Error::MissingObjectKey { kind: "AccessServiceToken", field: "uid" })?;
    if let Some(secret) = existing.as_ref().filter(|s| !controlled_by(s, &uid)) {
        let want = not_ready("SecretOwnedElsewhere", conflict_message(&namespace, secret_name, secret));
        write_status(token, ctx, &old_status, kept, want).await?;
        return Ok(Action::requeue(CONFLICT_RECHECK));
    }

    let stored = existing.as_ref().and_then(Credentials::from_secret);
    let rotate_request = token.annotations().get(ROTATE_ANNOTATION).map(String::as_str);
    let plan = plan::plan(&settings, rotate_request, stored.as_ref(), now);
    let next = plan::apply(&plan, stored.as_ref(), generate_client_id, generate_client_secret)?;
    if existing.is_none() || stored.as_ref() != Some(&next) {
        write_secret(&secrets, token, &namespace, &next).await?;
    }
    publish_step(token, ctx, &plan, &next).await;
    ctx.metrics.token_expiry(&namespace, &token.name_any(), plan.expires_at.map(|t| t.as_second()));
    let (status, want) = issued_status(&plan, &next, &old_status, now, secret_name);
    write_status(token, ctx, &old_status, status, want).await?;
    Ok(match plan.next_deadline {
        Some(at) => Action::requeue(until(now, at)),
        None => Action::await_change(),
    })
}

/// Applies the token's Secret holding `next` (server-side apply, forced: the Secret is ours).
async fn write_secret(
    secrets: &Api<Secret>,
    token: &AccessServiceToken,
    namespace: &str,
    next: &Credentials,
) -> Result<()> {
    let secret_name = &token.spec.secret_name;
    let desired = desired_secret(token, namespace, next)?;
    secrets
        .patch(secret_name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&desired))
        .await
        .map_err(Error::write_secret(format!("{namespace}/{secret_name}")))?;
    Ok(())
}

/// Why the operator leaves a Secret it does not control alone, and what the user can do.
fn conflict_message(namespace: &str, secret_name: &str, secret: &Secret) -> String {
    format!(
        "Secret {namespace}/{secret_name} exists and is not controlled by this AccessServiceToken ({}); \
         the operator will not overwrite it: delete that Secret or set spec.secretName to an unused name",
        owner_of(secret)
    )
}

/// The Normal event of a step that changed the credentials (an issue or a rotation).
async fn publish_step(token: &AccessServiceToken, ctx: &Context, plan: &Plan, next: &Credentials) {
    let secret_name = &token.spec.secret_name;
    let (reason, note) = match plan.step {
        Step::Issue => ("Issued", format!("issued client id {} into Secret {secret_name}", next.client_id)),
        Step::Rotate(cause) => {
            let why = match cause {
                Cause::Annotation => format!("annotation {ROTATE_ANNOTATION} changed"),
                Cause::Expiry => "expiry is near".to_owned(),
            };
            let previous = match plan.previous_valid_until {
                Some(until) => format!("the previous secret is accepted until {until}"),
                None => "the previous secret is no longer accepted".to_owned(),
            };
            ("Rotated", format!("rotated the client secret in Secret {secret_name} ({why}); {previous}"))
        }
        Step::DropPrevious | Step::Keep => return,
    };
    events::publish(ctx, &token.object_ref(&()), EventType::Normal, reason, note).await;
}

/// The credential fields of status and `Ready=True` once `next` is in the Secret.
fn issued_status(
    plan: &Plan,
    next: &Credentials,
    old: &AccessServiceTokenStatus,
    now: jiff::Timestamp,
    secret_name: &str,
) -> (AccessServiceTokenStatus, Want) {
    let rotated_now = matches!(plan.step, Step::Rotate(_));
    let status = AccessServiceTokenStatus {
        client_id: Some(next.client_id.clone()),
        expires_at: plan.expires_at.map(|t| t.to_string()),
        last_rotated: if rotated_now { Some(now.to_string()) } else { old.last_rotated.clone() },
        ..Default::default()
    };
    let expiry = match plan.expires_at {
        Some(at) => format!("they expire at {at}"),
        None => "they do not expire (no spec.duration)".to_owned(),
    };
    let want = Want {
        type_: READY,
        status: true,
        reason: "CredentialsIssued",
        message: format!("client-id and client-secret are in Secret {secret_name}; {expiry}"),
    };
    (status, want)
}

/// The wait from `now` to `at`, at least a second (a deadline just passed is acted on at once,
/// not in a busy loop) and at most [`MAX_REQUEUE`].
fn until(now: jiff::Timestamp, at: jiff::Timestamp) -> Duration {
    let secs = at.as_second().saturating_sub(now.as_second()).max(1);
    Duration::from_secs(secs.unsigned_abs()).min(MAX_REQUEUE)
}

fn not_ready(reason: &'static str, message: String) -> Want {
    Want { type_: READY, status: false, reason, message }
}

/// The credential fields of a status when nothing new is known: unchanged.
fn keep_credentials_status(old: &AccessServiceTokenStatus) -> AccessServiceTokenStatus {
    AccessServiceTokenStatus {
        client_id: old.client_id.clone(),
        expires_at: old.expires_at.clone(),
        last_rotated: old.last_rotated.clone(),
        ..Default::default()
    }
}

/// Writes `Ready` with the shared [`super::write_status`]: every transition to `Ready=False`
/// is a warning.
async fn write_status(
    token: &AccessServiceToken,
    ctx: &Context,
    old: &AccessServiceTokenStatus,
    new: AccessServiceTokenStatus,
    want: Want,
) -> Result<()> {
    super::write_status(ctx, token, old, new, [want], |_, _| false).await
}

/// The Secret as this operator wants it: our keys, annotations and label, owned by the token
/// (ownerReference with `controller: true`, so deleting the token deletes its credentials).
fn desired_secret(token: &AccessServiceToken, namespace: &str, c: &Credentials) -> Result<Secret> {
    let owner =
        token.controller_owner_ref(&()).ok_or(Error::MissingObjectKey { kind: "AccessServiceToken", field: "uid" })?;
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(token.spec.secret_name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into()),
            annotations: Some(c.annotations()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(c.data()),
        ..Default::default()
    })
}

fn controlled_by(secret: &Secret, uid: &str) -> bool {
    secret.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Who controls a Secret, for the conflict message.
fn owner_of(secret: &Secret) -> String {
    match secret.owner_references().iter().find(|o| o.controller == Some(true)) {
        Some(o) => format!("it is controlled by {} {}", o.kind, o.name),
        None => "it has no controlling owner".to_owned(),
    }
}

#[cfg(test)]
mod tests;
