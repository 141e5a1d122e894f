//! Read access to the Secrets given to `compile`, by namespace, name and key.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

/// Secrets indexed by `(namespace, name)`; reads `data` (base64 on the wire) and `stringData`.
pub struct SecretIndex<'a> {
    by_name: BTreeMap<(String, String), &'a Secret>,
}

impl<'a> SecretIndex<'a> {
    /// `default_namespace` applies to Secrets without one (manifest files often omit it).
    pub fn new(secrets: &'a [Secret], default_namespace: &str) -> Self {
        let by_name = secrets
            .iter()
            .filter_map(|s| {
                let name = s.metadata.name.clone()?;
                let ns = s.metadata.namespace.clone().unwrap_or_else(|| default_namespace.to_owned());
                Some(((ns, name), s))
            })
            .collect();
        Self { by_name }
    }

    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        self.by_name.contains_key(&(namespace.to_owned(), name.to_owned()))
    }

    /// The value of `key`, from `stringData` first (as the API server merges it), then `data`.
    pub fn get(&self, namespace: &str, name: &str, key: &str) -> Option<Vec<u8>> {
        let secret = self.by_name.get(&(namespace.to_owned(), name.to_owned()))?;
        if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
            return Some(v.as_bytes().to_vec());
        }
        secret.data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone())
    }

    /// Like [`get`](Self::get), as UTF-8 with surrounding whitespace trimmed (a trailing
    /// newline from `echo … | base64` is the classic mistake).
    pub fn get_str(&self, namespace: &str, name: &str, key: &str) -> Option<String> {
        let bytes = self.get(namespace, name, key)?;
        String::from_utf8(bytes).ok().map(|s| s.trim().to_owned())
    }
}
