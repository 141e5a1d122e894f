//! The pure decision for one AccessServiceToken: from its spec, the credentials its Secret holds
//! and the time, what the Secret should hold next and when to look again. No I/O, no clock, no
//! randomness: new credentials are passed in by the caller, which only generates them when the
//! plan asks.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use portcullis_crds::compile::parse_duration_secs;
use portcullis_crds::v1alpha1::{secret_keys, AccessServiceTokenSpec};

use crate::credentials::ClientSecret;

/// Annotation on the Secret: when its current secret was issued (RFC 3339). Expiry counts from
/// it, and it lives with the credentials so that a lost status cannot extend a token's life.
pub const ISSUED_AT_ANNOTATION: &str = "access.portcullis.dev/issued-at";
/// Annotation on the Secret: the value of the token's `access.portcullis.dev/rotate` annotation
/// already acted on, so each new value rotates exactly once.
pub const ROTATED_FOR_ANNOTATION: &str = "access.portcullis.dev/rotated-for";

/// The longest a token is rotated ahead of its expiry.
const MAX_ROTATION_LEAD: SignedDuration = SignedDuration::from_hours(24);

/// The parsed, valid spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Lifetime from issue; `None`: the credentials do not expire.
    pub duration: Option<SignedDuration>,
    /// How long the previous secret stays accepted after a rotation.
    pub grace: SignedDuration,
}

/// A spec the operator cannot act on. Reported in `Ready=False`, never retried until edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSpec {
    #[error("spec.secretName is empty: name the Secret (in this namespace) to hold client-id and client-secret")]
    SecretName,
    #[error("spec.duration {value:?} is invalid: {why}")]
    Duration { value: String, why: String },
    #[error("spec.rotationGracePeriod {value:?} is invalid: {why}")]
    RotationGracePeriod { value: String, why: String },
}

// === impl InvalidSpec ===

impl InvalidSpec {
    /// Condition and event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            InvalidSpec::SecretName => "InvalidSecretName",
            InvalidSpec::Duration { .. } => "InvalidDuration",
            InvalidSpec::RotationGracePeriod { .. } => "InvalidRotationGracePeriod",
        }
    }
}

/// Parses the spec with the same duration rules `compile` applies (Go durations).
pub fn settings(spec: &AccessServiceTokenSpec) -> Result<Settings, InvalidSpec> {
    if spec.secret_name.is_empty() {
        return Err(InvalidSpec::SecretName);
    }
    let parse =
        |value: &str| parse_duration_secs(value).map(|s| SignedDuration::from_secs(s.min(i64::MAX as u64) as i64));
    let duration = match spec.duration.as_deref() {
        None => None,
        Some(value) => Some(parse(value).map_err(|why| InvalidSpec::Duration { value: value.to_owned(), why })?),
    };
    if duration == Some(SignedDuration::ZERO) {
        return Err(InvalidSpec::Duration {
            value: spec.duration.clone().unwrap_or_default(),
            why: "a token that expires when it is issued is unusable; remove duration for no expiry".into(),
        });
    }
    let grace = match spec.rotation_grace_period.as_deref() {
        None => SignedDuration::ZERO,
        Some(value) => parse(value).map_err(|why| InvalidSpec::RotationGracePeriod { value: value.to_owned(), why })?,
    };
    Ok(Settings { duration, grace })
}

/// The previous secret after a rotation and the end of its grace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    pub secret: ClientSecret,
    pub valid_until: Timestamp,
}

/// Everything the operator keeps in the Secret. Both what is there and what should be there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: ClientSecret,
    pub previous: Option<Previous>,
    pub issued_at: Timestamp,
    /// The rotate-annotation value handled last.
    pub rotated_for: Option<String>,
}

// === impl Credentials ===

impl Credentials {
    /// Reads the credentials from a Secret the operator wrote. `None` when the id or the secret
    /// is missing (a Secret created empty, or edited by hand): then new ones must be issued.
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text =
            |key: &str| data.get(key).and_then(|v| String::from_utf8(v.0.clone()).ok()).filter(|s| !s.is_empty());
        let annotation = |key: &str| secret.metadata.annotations.as_ref().and_then(|a| a.get(key)).cloned();
        let previous = match (
            text(secret_keys::PREVIOUS_CLIENT_SECRET),
            text(secret_keys::PREVIOUS_CLIENT_SECRET_VALID_UNTIL).and_then(|t| t.parse().ok()),
        ) {
            (Some(prev), Some(valid_until)) => Some(Previous { secret: ClientSecret::new(prev), valid_until }),
            _ => None,
        };
        Some(Self {
            client_id: text(secret_keys::CLIENT_ID)?,
            client_secret: ClientSecret::new(text(secret_keys::CLIENT_SECRET)?),
            previous,
            // A Secret without the annotation (written by an older operator, or edited) counts
            // as issued at the epoch, so a token with a duration rotates now rather than never.
            issued_at: annotation(ISSUED_AT_ANNOTATION).and_then(|t| t.parse().ok()).unwrap_or(Timestamp::UNIX_EPOCH),
            rotated_for: annotation(ROTATED_FOR_ANNOTATION),
        })
    }

    /// The Secret's `data`, keys from `portcullis_crds::v1alpha1::secret_keys` (what `compile` reads).
    pub fn data(&self) -> BTreeMap<String, ByteString> {
        let mut data = BTreeMap::new();
        let mut put = |k: &str, v: &str| data.insert(k.to_owned(), ByteString(v.as_bytes().to_vec()));
        put(secret_keys::CLIENT_ID, &self.client_id);
        put(secret_keys::CLIENT_SECRET, self.client_secret.expose());
        if let Some(p) = &self.previous {
            put(secret_keys::PREVIOUS_CLIENT_SECRET, p.secret.expose());
            put(secret_keys::PREVIOUS_CLIENT_SECRET_VALID_UNTIL, &p.valid_until.to_string());
        }
        data
    }

    /// The Secret's annotations the operator owns.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::from([(ISSUED_AT_ANNOTATION.to_owned(), self.issued_at.to_string())]);
        if let Some(v) = &self.rotated_for {
            a.insert(ROTATED_FOR_ANNOTATION.to_owned(), v.clone());
        }
        a
    }
}

/// Why the secret is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The token's `access.portcullis.dev/rotate` annotation has a value not handled yet.
    Annotation,
    /// Less than the rotation lead is left before expiry.
    Expiry,
}

/// What to do with the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No usable credentials (no Secret, or one without both keys): issue a client id and a secret.
    Issue,
    /// Replace the secret, keep the client id, keep the old secret as the previous one.
    Rotate(Cause),
    /// The previous secret's grace is over: remove it.
    DropPrevious,
    /// Nothing to change.
    Keep,
}

/// The decision, as a function of (settings, rotate annotation, stored credentials, now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub step: Step,
    /// When the current secret (after the step) was issued.
    pub issued_at: Timestamp,
    /// When it expires: `issued_at + duration`.
    pub expires_at: Option<Timestamp>,
    /// Until when the previous secret (after the step) is accepted.
    pub previous_valid_until: Option<Timestamp>,
    /// The rotate-annotation value handled after the step.
    pub rotated_for: Option<String>,
    /// The next instant something is due: a rotation ahead of expiry or the end of a grace.
    pub next_deadline: Option<Timestamp>,
}

/// How long before expiry a token is rotated: a tenth of its duration, at most 24 h. A tenth keeps
/// short-lived tokens rotating with proportional headroom; the cap keeps a year-long token from
/// rotating five weeks early while still giving consumers a day to pick up the new secret,
/// during which the old one still works (it stays valid until its own expiry, see [`plan`]).
pub fn rotation_lead(duration: SignedDuration) -> SignedDuration {
    (duration / 10).min(MAX_ROTATION_LEAD)
}

fn add(at: Timestamp, d: SignedDuration) -> Timestamp {
    at.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// Decides the next step.
///
/// A rotation asked for by the annotation (often a suspected leak) keeps the previous secret for
/// exactly `rotationGracePeriod` (none when 0). A rotation ahead of expiry keeps it until
/// `max(now + grace, its own expiry)`: rotating early must not cut off a consumer that has not yet
/// picked up the new secret before the old one was due to expire anyway.
pub fn plan(settings: &Settings, rotate_request: Option<&str>, stored: Option<&Credentials>, now: Timestamp) -> Plan {
    let expiry = |issued_at: Timestamp| settings.duration.map(|d| add(issued_at, d));
    let rotate_at = |issued_at: Timestamp| settings.duration.map(|d| add(issued_at, d - rotation_lead(d)));
    let grace_end = |from: Timestamp| (settings.grace > SignedDuration::ZERO).then(|| add(from, settings.grace));

    let (step, issued_at, previous_valid_until, rotated_for) = match stored {
        None => (Step::Issue, now, None, rotate_request.map(str::to_owned)),
        Some(c) => {
            let asked = rotate_request.is_some() && rotate_request != c.rotated_for.as_deref();
            let due = rotate_at(c.issued_at).is_some_and(|at| now >= at);
            let previous = c.previous.as_ref().map(|p| p.valid_until).filter(|until| *until > now);
            if asked {
                (Step::Rotate(Cause::Annotation), now, grace_end(now), rotate_request.map(str::to_owned))
            } else if due {
                let until = grace_end(now).into_iter().chain(expiry(c.issued_at)).max().filter(|u| *u > now);
                (Step::Rotate(Cause::Expiry), now, until, c.rotated_for.clone())
            } else if c.previous.is_some() && previous.is_none() {
                (Step::DropPrevious, c.issued_at, None, c.rotated_for.clone())
            } else {
                (Step::Keep, c.issued_at, previous, c.rotated_for.clone())
            }
        }
    };
    let next_deadline = rotate_at(issued_at).into_iter().chain(previous_valid_until).min();
    Plan { step, issued_at, expires_at: expiry(issued_at), previous_valid_until, rotated_for, next_deadline }
}

/// The credentials the Secret should hold after `plan`. `fresh` is called (and randomness drawn)
/// only when the plan issues or rotates; a rotation keeps the client id.
pub fn apply<E>(
    plan: &Plan,
    stored: Option<&Credentials>,
    fresh_id: impl FnOnce() -> Result<String, E>,
    fresh_secret: impl FnOnce() -> Result<ClientSecret, E>,
) -> Result<Credentials, E> {
    let (client_id, client_secret, previous) = match (plan.step, stored) {
        (Step::Issue, _) | (_, None) => (fresh_id()?, fresh_secret()?, None),
        (Step::Rotate(_), Some(c)) => {
            let previous =
                plan.previous_valid_until.map(|valid_until| Previous { secret: c.client_secret.clone(), valid_until });
            (c.client_id.clone(), fresh_secret()?, previous)
        }
        (Step::DropPrevious | Step::Keep, Some(c)) => {
            let previous = c.previous.clone().filter(|_| plan.previous_valid_until.is_some());
            (c.client_id.clone(), c.client_secret.clone(), previous)
        }
    };
    Ok(Credentials {
        client_id,
        client_secret,
        previous,
        issued_at: plan.issued_at,
        rotated_for: plan.rotated_for.clone(),
    })
}

#[cfg(test)]
mod tests;
