//! Remembers each application's compile, so that a reconcile recompiles only what changed.
//!
//! A reconcile works on its whole namespace (every sidecar pod gets the snapshot of every
//! application selecting it), so a burst of N changes in one namespace used to compile N × N
//! applications: with 1,000 applications in one namespace the propagation bench saw 156 s and
//! 182 MiB. A compile depends only on the application (uid + resourceVersion: any change gives
//! a new one) and on the namespace's tokens and Secrets; this cache keys on exactly that, so it
//! can never hand out a compile of other inputs.

use std::borrow::Borrow;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::Secret;
use portcullis_crds::compile::{compile_application, CompileErrors, SecretIndex, TokenIndex};
use portcullis_crds::snapshot::Application;
use portcullis_crds::v1alpha1::{AccessApplication, AccessServiceToken};

/// An application's compile: the compiled form, or every error with its field.
pub type Outcome = Result<Application, CompileErrors>;

/// Compiles by (application version, inputs version).
#[derive(Default)]
pub struct CompileCache {
    entries: HashMap<Key, Outcome>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    uid: String,
    resource_version: String,
    /// Digest of the namespace's tokens and Secrets (their uids and resourceVersions).
    inputs: u64,
}

/// A version of the inputs every application of a namespace compiles against. Objects without
/// a resourceVersion (never the case for objects from the API server) make it unique per call,
/// so nothing is cached for them.
pub fn inputs_version(tokens: &[AccessServiceToken], secrets: &[Secret]) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    for meta in tokens.iter().map(|t| &t.metadata).chain(secrets.iter().map(|s| &s.metadata)) {
        meta.uid.as_deref()?.hash(&mut hasher);
        meta.resource_version.as_deref()?.hash(&mut hasher);
    }
    Some(hasher.finish())
}

// === impl CompileCache ===

impl CompileCache {
    /// The compile of `app` against `tokens`/`secrets` (whose version is `inputs`, `None`:
    /// uncacheable), from the cache when this exact version was compiled before.
    pub fn compile(
        &mut self,
        app: &AccessApplication,
        default_namespace: &str,
        inputs: Option<u64>,
        tokens: &TokenIndex,
        secrets: &SecretIndex<'_>,
    ) -> Outcome {
        let key = match (inputs, &app.metadata.uid, &app.metadata.resource_version) {
            (Some(inputs), Some(uid), Some(rv)) => Some(Key {
                namespace: app.metadata.namespace.clone().unwrap_or_else(|| default_namespace.to_owned()),
                uid: uid.clone(),
                resource_version: rv.clone(),
                inputs,
            }),
            _ => None,
        };
        if let Some(hit) = key.as_ref().and_then(|k| self.entries.get(k)) {
            return hit.clone();
        }
        let mut compiled = compile_application(app, default_namespace, tokens, secrets);
        let outcome = match compiled.application.take() {
            Some(a) if !compiled.diagnostics.has_errors() => Ok(a),
            _ => Err(CompileErrors(compiled.diagnostics.errors().to_vec())),
        };
        if let Some(key) = key {
            self.entries.insert(key, outcome.clone());
        }
        outcome
    }

    /// Drops the entries of `namespace` that are not `keep`-ing versions any more: applications
    /// gone or changed, or compiled against older inputs. Called after each pass over a
    /// namespace, so the cache holds at most one compile per live application.
    pub fn retain_namespace<A: Borrow<AccessApplication>>(&mut self, namespace: &str, live: &[A], inputs: Option<u64>) {
        self.entries.retain(|key, _| {
            key.namespace != namespace
                || (Some(key.inputs) == inputs
                    && live.iter().map(Borrow::borrow).any(|a: &AccessApplication| {
                        a.metadata.uid.as_deref() == Some(key.uid.as_str())
                            && a.metadata.resource_version.as_deref() == Some(key.resource_version.as_str())
                    }))
        });
    }

    /// How many compiles are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn app(name: &str, rv: &str, session: &str) -> AccessApplication {
        serde_json::from_value(json!({
            "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessApplication",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "resourceVersion": rv},
            "spec": {"domains": [format!("{name}.example.com")], "sessionDuration": session,
                     "policies": [{"name": "all", "action": "Allow", "include": [{"everyone": {}}]}]},
        }))
        .unwrap()
    }

    fn compile(cache: &mut CompileCache, a: &AccessApplication, inputs: Option<u64>) -> Outcome {
        let secrets = SecretIndex::new(&[], "default");
        let tokens = TokenIndex::build(&[], &secrets, "default").index;
        cache.compile(a, "default", inputs, &tokens, &secrets)
    }

    #[test]
    fn a_version_is_compiled_once_and_a_new_version_again() {
        let mut cache = CompileCache::default();
        let v1 = app("api", "1", "1h");
        let first = compile(&mut cache, &v1, Some(7)).unwrap();
        assert_eq!(cache.len(), 1);
        assert_eq!(compile(&mut cache, &v1, Some(7)).unwrap(), first);
        assert_eq!(cache.len(), 1, "a hit adds nothing");

        // The same resourceVersion with other content cannot happen in a cluster; a new version
        // (here an invalid one) is compiled, not served from the cache.
        let v2 = app("api", "2", "forever");
        let errors = compile(&mut cache, &v2, Some(7)).unwrap_err();
        assert_eq!(errors.0[0].field, "spec.sessionDuration");
        // New inputs (a token or Secret changed): compiled again.
        compile(&mut cache, &v1, Some(8)).unwrap();
        assert_eq!(cache.len(), 3);

        cache.retain_namespace("shop", std::slice::from_ref(&v2), Some(7));
        assert_eq!(cache.len(), 1, "only the live version against the current inputs stays");
        cache.retain_namespace::<AccessApplication>("shop", &[], Some(7));
        assert!(cache.is_empty());
    }

    #[test]
    fn objects_without_versions_are_never_cached() {
        let mut cache = CompileCache::default();
        let mut a = app("api", "1", "1h");
        a.metadata.resource_version = None;
        compile(&mut cache, &a, Some(7)).unwrap();
        compile(&mut cache, &app("api", "1", "1h"), None).unwrap();
        assert!(cache.is_empty());
        let token: AccessServiceToken = serde_json::from_value(json!({
            "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessServiceToken",
            "metadata": {"name": "t", "namespace": "shop", "uid": "u"},
            "spec": {"secretName": "s"},
        }))
        .unwrap();
        assert_eq!(inputs_version(&[token], &[]), None);
        assert!(inputs_version(&[], &[]).is_some());
    }
}
