//! Status conditions, built one way for every controller (K8s API conventions, "Typical status
//! properties"): type, status, CamelCase reason, a message a user can act on, observedGeneration,
//! and a lastTransitionTime that only moves when the status does. Pure: time is an argument.
//! Must not patch anything itself; controllers decide whether to write.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition every Portcullis resource carries.
pub const READY: &str = "Ready";

/// One condition as a controller wants it, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub type_: &'static str,
    pub status: bool,
    /// CamelCase (K8s API conventions: reasons are machine-readable).
    pub reason: &'static str,
    pub message: String,
}

/// `conditions` with `want` set: other types are kept as they are; the condition of `want`'s
/// type keeps its `lastTransitionTime` when its status does not change ("the last time the
/// condition transitioned from one status to another"), else gets `now`.
pub fn set(conditions: &[Condition], want: Want, observed_generation: Option<i64>, now: Timestamp) -> Vec<Condition> {
    let status = if want.status { "True" } else { "False" };
    let previous = conditions.iter().find(|c| c.type_ == want.type_);
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: want.type_.to_owned(),
        status: status.to_owned(),
        reason: want.reason.to_owned(),
        message: want.message,
        observed_generation,
        last_transition_time,
    };
    let mut out: Vec<Condition> = conditions.iter().filter(|c| c.type_ != want.type_).cloned().collect();
    out.push(condition);
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// Whether two condition lists differ in anything but timestamps: the test for "patch only when
/// something changed", so a reconcile that finds nothing new writes nothing.
pub fn changed(old: &[Condition], new: &[Condition]) -> bool {
    let key =
        |c: &Condition| (c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone(), c.observed_generation);
    let mut a: Vec<_> = old.iter().map(key).collect();
    let mut b: Vec<_> = new.iter().map(key).collect();
    a.sort();
    b.sort();
    a != b
}

/// Whether condition `type_` moved to a different status or reason: the test for "events only on
/// transitions", so a resource that stays broken does not get an event per reconcile.
pub fn transitioned(old: &[Condition], new: &[Condition], type_: &str) -> bool {
    let find = |cs: &[Condition]| cs.iter().find(|c| c.type_ == type_).map(|c| (c.status.clone(), c.reason.clone()));
    find(old) != find(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn ready(status: bool, reason: &'static str, message: &str) -> Want {
        Want { type_: READY, status, reason, message: message.into() }
    }

    #[test]
    fn a_new_condition_gets_now_and_the_generation() {
        let cs = set(&[], ready(true, "CredentialsIssued", "ok"), Some(3), t(100));
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].type_, "Ready");
        assert_eq!(cs[0].status, "True");
        assert_eq!(cs[0].reason, "CredentialsIssued");
        assert_eq!(cs[0].observed_generation, Some(3));
        assert_eq!(cs[0].last_transition_time, Time(t(100)));
    }

    #[test]
    fn last_transition_time_moves_only_with_the_status() {
        let first = set(&[], ready(true, "A", "one"), Some(1), t(100));
        let same_status = set(&first, ready(true, "B", "two"), Some(2), t(200));
        assert_eq!(same_status[0].last_transition_time, Time(t(100)));
        assert_eq!(same_status[0].reason, "B");
        let flipped = set(&same_status, ready(false, "C", "three"), Some(2), t(300));
        assert_eq!(flipped[0].last_transition_time, Time(t(300)));
    }

    #[test]
    fn other_condition_types_are_kept() {
        let other = Condition {
            type_: "Synced".into(),
            status: "True".into(),
            reason: "X".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(t(1)),
        };
        let cs = set(std::slice::from_ref(&other), ready(true, "A", ""), None, t(5));
        assert_eq!(cs.len(), 2);
        assert!(cs.contains(&other));
    }

    #[test]
    fn changed_ignores_timestamps_only() {
        let a = set(&[], ready(true, "A", "m"), Some(1), t(100));
        let mut b = a.clone();
        b[0].last_transition_time = Time(t(999));
        assert!(!changed(&a, &b));
        assert!(changed(&a, &set(&a, ready(true, "A", "other message"), Some(1), t(100))));
        assert!(changed(&a, &set(&a, ready(true, "A", "m"), Some(2), t(100))));
        assert!(changed(&[], &a));
    }

    #[test]
    fn transitions_are_status_or_reason_changes() {
        let a = set(&[], ready(false, "InvalidDuration", "m1"), Some(1), t(100));
        let same = set(&a, ready(false, "InvalidDuration", "m2"), Some(2), t(200));
        assert!(!transitioned(&a, &same, READY));
        assert!(transitioned(&a, &set(&a, ready(false, "SecretOwnedElsewhere", "m"), Some(2), t(200)), READY));
        assert!(transitioned(&a, &set(&a, ready(true, "CredentialsIssued", "m"), Some(2), t(200)), READY));
        assert!(transitioned(&[], &a, READY));
    }
}
