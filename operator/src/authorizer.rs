//! What the external authorizer (`portcullis-sidecar authz`, the chart's `authorizer.enabled`)
//! runs: one snapshot with every application whose `enforcement` is External or Both, from every
//! namespace.
//!
//! The application controller works one namespace at a time; this module keeps what each
//! namespace last gave the authorizer ([`Authorizers::record`]) and assembles the cluster-wide
//! snapshot from it ([`Authorizers::plan`]). Pure: no API calls, no clock, no pushing (the
//! controller lists the authorizer pods and pushes with [`crate::push`], the same sealed,
//! boot-bound push as to sidecars). Must not judge applications: `compile` did.
//!
//! The authorizer is shared by every namespace, so a domain there belongs to one application:
//! the oldest one claiming it (creation time, then namespace and name, as Gateway API resolves
//! conflicting routes). A newer application cannot take over another team's host by claiming
//! it; it is left out of the authorizer and its status says why.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use portcullis_crds::snapshot::{Application, ResourceId};
use portcullis_crds::Snapshot;

use crate::desired::{ExternalApp, ExternalState};

/// The label (key, value) the chart puts on the authorizer pods, and the operator lists them by.
/// Only pods of the authorizer namespace (the operator's own) count: anyone who may create pods
/// elsewhere could set the label, and the authorizer is sent every External application's
/// configuration, secrets included.
pub const ROLE_LABEL: (&str, &str) = ("access.portcullis.dev/role", "authorizer");

/// The label selector for [`ROLE_LABEL`].
pub fn selector() -> String {
    format!("{}={}", ROLE_LABEL.0, ROLE_LABEL.1)
}

/// Whether `pod` is an authorizer pod of `namespace`.
pub fn is_authorizer(pod: &Pod, namespace: &str) -> bool {
    pod.metadata.namespace.as_deref() == Some(namespace)
        && pod.metadata.labels.as_ref().and_then(|l| l.get(ROLE_LABEL.0)).map(String::as_str) == Some(ROLE_LABEL.1)
}

/// One application as the authorizer runs it.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    created: Option<Timestamp>,
    app: Application,
}

/// What every namespace last gave the authorizer.
#[derive(Debug, Default)]
pub struct Authorizers {
    /// Per namespace: its applications on the authorizer (compiled, or the last good version of
    /// an application that no longer compiles).
    entries: BTreeMap<String, BTreeMap<ResourceId, Entry>>,
    /// Per namespace: applications asking for the authorizer that do not compile and have no
    /// last good version this process knows (it restarted since): the authorizer is not pushed
    /// until they compile, so that it keeps the version it runs (as held sidecars do).
    unknown: BTreeMap<String, BTreeSet<ResourceId>>,
    /// Authorizer pods (`namespace/name`) pushed to last, so the push client can forget the
    /// ones that went.
    pub pods: BTreeSet<String>,
}

/// Why the authorizer is not pushed now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting(pub String);

/// The authorizer's snapshot, and how each External application fared in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub snapshot: Snapshot,
    /// Applications left out because an older one claims one of their domains: (the domain
    /// index in `spec.domains`, the older application).
    pub conflicts: BTreeMap<ResourceId, (usize, ResourceId)>,
}

// === impl Authorizers ===

impl Authorizers {
    /// Whether namespace `ns`'s pass concerns the authorizer: it gives it applications now, or
    /// gave it some before (which must then be taken away).
    pub fn concerns(&self, ns: &str, external: &[ExternalApp]) -> bool {
        let asks =
            |e: &ExternalApp| matches!(e.state, ExternalState::Enforced(_) | ExternalState::Invalid { wanted: true });
        external.iter().any(asks)
            || self.entries.get(ns).is_some_and(|e| !e.is_empty())
            || self.unknown.contains_key(ns)
    }

    /// Records namespace `ns`'s applications for the authorizer: the compiled ones replace what
    /// it had, an invalid one keeps its last good version (if any), the rest are dropped.
    pub fn record(&mut self, ns: &str, external: &[ExternalApp]) {
        let old = self.entries.remove(ns).unwrap_or_default();
        let mut now = BTreeMap::new();
        let mut unknown = BTreeSet::new();
        for e in external {
            match &e.state {
                ExternalState::Enforced(app) => {
                    now.insert(e.id.clone(), Entry { created: e.created, app: app.as_ref().clone() });
                }
                ExternalState::Invalid { wanted } => match old.get(&e.id) {
                    Some(last_good) => {
                        now.insert(e.id.clone(), last_good.clone());
                    }
                    None if *wanted => {
                        unknown.insert(e.id.clone());
                    }
                    None => {}
                },
            }
        }
        self.entries.insert(ns.to_owned(), now);
        if unknown.is_empty() {
            self.unknown.remove(ns);
        } else {
            self.unknown.insert(ns.to_owned(), unknown);
        }
    }

    /// The snapshot for the authorizer, once every namespace in `expected` (those with an
    /// application asking for the authorizer) has been recorded: until then a push would take
    /// their applications away from the authorizer.
    pub fn plan(&self, expected: &BTreeSet<String>) -> Result<Plan, Waiting> {
        let missing: Vec<&str> =
            expected.iter().filter(|ns| !self.entries.contains_key(*ns)).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(Waiting(format!(
                "the applications of namespace(s) {} are not read yet; the authorizer keeps what it runs until they are",
                missing.join(", ")
            )));
        }
        if let Some(id) = self.unknown.values().flatten().next() {
            return Err(Waiting(format!(
                "AccessApplication {id} asks for the authorizer but does not compile, and its last good version is unknown to this operator (it restarted); the authorizer keeps what it runs until it compiles"
            )));
        }
        let mut all: Vec<(&ResourceId, &Entry)> = self.entries.values().flatten().collect();
        all.sort_by(|(a, ea), (b, eb)| (ea.created, *a).cmp(&(eb.created, *b)));
        let mut claimed: BTreeMap<String, &ResourceId> = BTreeMap::new();
        let mut apps = Vec::new();
        let mut conflicts = BTreeMap::new();
        for (id, entry) in all {
            let keys: Vec<String> = entry.app.domains.iter().map(|d| d.claim_key()).collect();
            if let Some((i, other)) = keys.iter().enumerate().find_map(|(i, k)| claimed.get(k).map(|o| (i, *o))) {
                conflicts.insert(id.clone(), (i, other.clone()));
                continue;
            }
            for k in keys {
                claimed.insert(k, id);
            }
            apps.push(entry.app.clone());
        }
        Ok(Plan { snapshot: Snapshot::new(apps), conflicts })
    }
}

#[cfg(test)]
mod tests;
