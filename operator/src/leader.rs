//! Leader election on a `coordination.k8s.io/v1` Lease, so that several operator replicas can
//! run and exactly one reconciles (two would push interleaved sequences to the same sidecars and
//! fight over status).
//!
//! The protocol is client-go's: the holder renews `spec.renewTime` every [`Timing::retry`]; a
//! candidate takes the Lease over once `renewTime + leaseDurationSeconds` has passed; every
//! write carries the `resourceVersion` it read, so of two candidates racing for an expired Lease
//! the API server lets one win (409 for the other). A leader that cannot renew within
//! [`Timing::renew_deadline`] stops leading before its Lease can expire under it, so two
//! replicas never both believe they lead. On shutdown the leader empties `holderIdentity`, which
//! hands over at once instead of after a lease duration.
//!
//! [`next_step`] is the decision (pure, table-tested); [`Elector`] does the API calls.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::{Error, Result};

/// The Lease's default name (in the operator's namespace).
pub const LEASE_NAME: &str = "portcullis-operator";

/// How long a Lease lasts and how often it is tried. client-go's defaults: 15 s / 10 s / 2 s.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a Lease stays valid after its last renewal.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long steps down. Shorter than `lease_duration`,
    /// so it has stopped before anyone may take over.
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew.
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// What a candidate does after reading the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The Lease is ours: write a new `renewTime`.
    Renew,
    /// Nobody holds it, or its holder let it expire: write ourselves in as holder.
    TakeOver,
    /// Someone else holds a live Lease.
    Follow { holder: String },
}

/// Decides the next step from the Lease as read (`None`: it does not exist, so creating it is
/// taking it over). A Lease without a renew time or duration counts as expired: no live holder
/// writes one like that.
pub fn next_step(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Step {
    let Some(spec) = spec else { return Step::TakeOver };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Step::TakeOver;
    }
    if holder == me {
        return Step::Renew;
    }
    let expires = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(MicroTime(renewed)), Some(secs)) if secs > 0 => {
            renewed.checked_add(SignedDuration::from_secs(i64::from(secs))).unwrap_or(Timestamp::MAX)
        }
        _ => return Step::TakeOver,
    };
    if now >= expires {
        Step::TakeOver
    } else {
        Step::Follow { holder: holder.to_owned() }
    }
}

/// The spec we write when we take over or renew: `previous` is the spec as read.
pub fn claimed(previous: Option<&LeaseSpec>, me: &str, now: Timestamp, timing: &Timing) -> LeaseSpec {
    let ours = previous.and_then(|p| p.holder_identity.as_deref()) == Some(me);
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(i32::try_from(timing.lease_duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: if ours { previous.and_then(|p| p.acquire_time.clone()) } else { Some(MicroTime(now)) },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours || previous.is_none() { transitions } else { transitions.saturating_add(1) }),
        ..LeaseSpec::default()
    }
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
}

/// What one acquire-or-renew attempt found.
enum Attempt {
    Holding,
    Following(String),
}

// === impl Elector ===

impl Elector {
    /// `identity` must be unique per replica (the pod name).
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, timing: Timing) -> Self {
        Self { api: Api::namespaced(client, namespace), name: name.to_owned(), identity: identity.to_owned(), timing }
    }

    /// Waits until this replica holds the Lease. API errors are logged and retried: a replica
    /// that cannot reach the API server cannot lead, and has nothing else to do.
    pub async fn acquire(&self) {
        let mut last_holder = None;
        loop {
            match self.try_once().await {
                Ok(Attempt::Holding) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                    return;
                }
                Ok(Attempt::Following(holder)) => {
                    if last_holder.as_ref() != Some(&holder) {
                        tracing::info!(lease = %self.name, %holder, "another replica leads; standing by");
                        last_holder = Some(holder);
                    }
                }
                Err(e) => tracing::warn!(lease = %self.name, error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.timing.retry).await;
        }
    }

    /// Renews the Lease every `retry` while it is ours. Returns when leadership is lost: another
    /// replica holds it, or no renewal succeeded within `renew_deadline`.
    pub async fn hold(&self) -> LostLeadership {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry).await;
            match self.try_once().await {
                Ok(Attempt::Holding) => last_renewed = tokio::time::Instant::now(),
                Ok(Attempt::Following(holder)) => return LostLeadership::TakenBy(holder),
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "renewing the leader Lease failed");
                    if last_renewed.elapsed() >= self.timing.renew_deadline {
                        return LostLeadership::RenewDeadline(self.timing.renew_deadline);
                    }
                }
            }
        }
    }

    /// Gives the Lease up if it is still ours, so that a standby replica takes over at its next
    /// attempt instead of waiting for the Lease to expire.
    pub async fn release(&self) {
        let result = async {
            let lease = self.api.get_opt(&self.name).await.map_err(self.kube("reading"))?;
            let Some(mut lease) = lease else { return Ok(()) };
            if lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(self.identity.as_str()) {
                return Ok(());
            }
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
            }
            self.api.replace(&self.name, &PostParams::default(), &lease).await.map_err(self.kube("releasing"))?;
            Ok::<_, Error>(())
        };
        match result.await {
            Ok(()) => tracing::info!(lease = %self.name, "released the leader Lease"),
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "releasing the leader Lease failed; a standby takes over when it expires")
            }
        }
    }

    /// Reads the Lease and, when it is ours or free, writes ourselves in. A 409 (someone wrote
    /// in between) is not an error: the next read tells who won.
    async fn try_once(&self) -> Result<Attempt> {
        let now = Timestamp::now();
        let lease = self.api.get_opt(&self.name).await.map_err(self.kube("reading"))?;
        let spec = lease.as_ref().and_then(|l| l.spec.as_ref());
        if let Step::Follow { holder } = next_step(spec, &self.identity, now) {
            return Ok(Attempt::Following(holder));
        }
        let claimed = claimed(spec, &self.identity, now, &self.timing);
        let written = match lease {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                    spec: Some(claimed),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // Keeps metadata.resourceVersion: the write fails with 409 if the Lease changed.
                lease.spec = Some(claimed);
                self.api.replace(&self.name, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(_) => Ok(Attempt::Holding),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Following("(concurrent writer)".into())),
            Err(e) => Err(self.kube("writing")(e)),
        }
    }

    fn kube(&self, doing: &str) -> impl FnOnce(kube::Error) -> Error {
        Error::kube(format!("{doing} Lease {}", self.name))
    }
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LostLeadership {
    #[error("another replica ({0}) took the leader Lease over")]
    TakenBy(String),
    #[error("the leader Lease could not be renewed for {0:?}; check the API server and the operator's RBAC (leases get/update)")]
    RenewDeadline(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn lease(holder: Option<&str>, renewed: Option<i64>, duration: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            renew_time: renewed.map(|s| MicroTime(at(s))),
            lease_duration_seconds: duration,
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decides_from_the_lease() {
        let follow = |h: &str| Step::Follow { holder: h.to_owned() };
        let cases = [
            ("absent", None, Step::TakeOver),
            ("no holder", Some(lease(None, Some(0), Some(15))), Step::TakeOver),
            ("released (empty holder)", Some(lease(Some(""), Some(0), Some(15))), Step::TakeOver),
            ("ours, live", Some(lease(Some("me"), Some(0), Some(15))), Step::Renew),
            ("ours, expired: still renew", Some(lease(Some("me"), Some(-100), Some(15))), Step::Renew),
            ("theirs, live", Some(lease(Some("other"), Some(-14), Some(15))), follow("other")),
            ("theirs, expires exactly now", Some(lease(Some("other"), Some(-15), Some(15))), Step::TakeOver),
            ("theirs, expired", Some(lease(Some("other"), Some(-16), Some(15))), Step::TakeOver),
            (
                "theirs, renewed in the future (clock skew)",
                Some(lease(Some("other"), Some(5), Some(15))),
                follow("other"),
            ),
            ("theirs, no renew time", Some(lease(Some("other"), None, Some(15))), Step::TakeOver),
            ("theirs, zero duration", Some(lease(Some("other"), Some(0), Some(0))), Step::TakeOver),
            ("theirs, no duration", Some(lease(Some("other"), Some(0), None)), Step::TakeOver),
        ];
        for (name, spec, want) in cases {
            assert_eq!(next_step(spec.as_ref(), "me", at(0)), want, "{name}");
        }
    }

    #[test]
    fn a_take_over_counts_a_transition_and_a_renewal_keeps_the_acquire_time() {
        let timing = Timing::default();
        let mut theirs = lease(Some("other"), Some(-60), Some(15));
        theirs.lease_transitions = Some(3);
        let taken = claimed(Some(&theirs), "me", at(0), &timing);
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(taken.lease_duration_seconds, Some(15));

        let renewed = claimed(Some(&taken), "me", at(2), &timing);
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(2))));

        let created = claimed(None, "me", at(0), &timing);
        assert_eq!(created.lease_transitions, Some(0));
    }

    #[test]
    fn the_renew_deadline_ends_before_the_lease_does() {
        let timing = Timing::default();
        assert!(timing.renew_deadline + timing.retry <= timing.lease_duration);
    }
}
