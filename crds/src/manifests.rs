//! Parsing the YAML that `kubectl apply` takes into the resources `compile` reads, and
//! rendering the CRDs. Pure: callers read the files and pass their text.

use k8s_openapi::api::core::v1::Secret;
use kube::CustomResourceExt;
use serde::Deserialize;

use crate::compile::{compile, CompileErrors, Compiled, Inputs};
use crate::v1alpha1::{AccessApplication, AccessServiceToken, API_VERSION};

/// The resources found in a set of manifests.
#[derive(Default, Debug)]
pub struct Resources {
    pub applications: Vec<AccessApplication>,
    pub service_tokens: Vec<AccessServiceToken>,
    pub secrets: Vec<Secret>,
    /// Documents of other kinds, skipped: `(source, document index, kind)`.
    pub skipped: Vec<(String, usize, String)>,
    /// Where each resource was read: `(kind, namespace as written, name, source)`, so that a
    /// compile error can name its file.
    origins: Vec<(String, Option<String>, String, String)>,
}

/// A document that could not be read, located by file and document index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: document {index}: {message}")]
pub struct ManifestError {
    pub source_name: String,
    /// 0-based index of the YAML document in the file.
    pub index: usize,
    pub message: String,
}

impl Resources {
    /// Adds every document of one YAML stream. `source_name` (a file path) names it in errors.
    pub fn add_yaml(&mut self, source_name: &str, text: &str) -> Result<(), ManifestError> {
        for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let err = |message: String| ManifestError { source_name: source_name.to_owned(), index, message };
            let value = serde_json::Value::deserialize(doc).map_err(|e| err(format!("invalid YAML: {e}")))?;
            self.add_value(source_name, index, value).map_err(err)?;
        }
        Ok(())
    }

    /// The source (file) a resource was read from, by the name compile errors give it
    /// (`AccessApplication shop/api`).
    pub fn source_of(&self, resource: &str, default_namespace: &str) -> Option<&str> {
        self.origins
            .iter()
            .find(|(kind, ns, name, _)| {
                let ns = ns.as_deref().unwrap_or(default_namespace);
                resource.strip_prefix(kind.as_str()).and_then(|r| r.strip_prefix(' '))
                    == Some(format!("{ns}/{name}").as_str())
            })
            .map(|(_, _, _, source)| source.as_str())
    }

    /// Compiles everything read so far; `default_namespace` applies to resources without one.
    pub fn compile(&self, default_namespace: &str) -> Result<Compiled, CompileErrors> {
        compile(&Inputs {
            applications: &self.applications,
            service_tokens: &self.service_tokens,
            secrets: &self.secrets,
            default_namespace,
        })
    }

    fn add_value(&mut self, source: &str, index: usize, value: serde_json::Value) -> Result<(), String> {
        if value.is_null() {
            return Ok(()); // an empty document (`---` at the end of a file)
        }
        let api_version = value.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let name = value.pointer("/metadata/name").and_then(|v| v.as_str()).unwrap_or("<unnamed>").to_owned();
        let what = |e: serde_json::Error| format!("{kind} {name}: {e}");
        let namespace = value.pointer("/metadata/namespace").and_then(|v| v.as_str()).map(str::to_owned);
        if matches!(kind.as_str(), "AccessApplication" | "AccessServiceToken" | "Secret") {
            self.origins.push((kind.clone(), namespace, name.clone(), source.to_owned()));
        }
        match (api_version.as_str(), kind.as_str()) {
            (API_VERSION, "AccessApplication") => {
                self.applications.push(serde_json::from_value(value).map_err(what)?);
            }
            (API_VERSION, "AccessServiceToken") => {
                self.service_tokens.push(serde_json::from_value(value).map_err(what)?);
            }
            ("v1", "Secret") => self.secrets.push(serde_json::from_value(value).map_err(what)?),
            ("v1", "List") => {
                let items = value.get("items").and_then(|v| v.as_array()).cloned().unwrap_or_default();
                for item in items {
                    self.add_value(source, index, item)?;
                }
            }
            (_, "AccessApplication" | "AccessServiceToken") => {
                return Err(format!("{kind} {name}: apiVersion must be {API_VERSION}, found {api_version:?}"));
            }
            ("", _) | (_, "") => return Err("not a Kubernetes object (apiVersion and kind are required)".into()),
            _ => self.skipped.push((source.to_owned(), index, kind)),
        }
        Ok(())
    }
}

/// The CRDs of both kinds as one multi-document YAML stream.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in [AccessApplication::crd(), AccessServiceToken::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kinds_and_skips_others() {
        let yaml = r#"
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: { name: api, namespace: shop }
spec:
  domains: [api.mysite.com]
  policies:
    - name: all
      action: Allow
      include: [ { everyone: {} } ]
---
apiVersion: v1
kind: Secret
metadata: { name: s }
stringData: { client-id: a, client-secret: b }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: d }
---
"#;
        let mut r = Resources::default();
        r.add_yaml("f.yaml", yaml).unwrap();
        assert_eq!(r.applications.len(), 1);
        assert_eq!(r.secrets.len(), 1);
        assert_eq!(r.skipped, vec![("f.yaml".to_owned(), 2, "Deployment".to_owned())]);
    }

    #[test]
    fn errors_name_file_document_and_field() {
        let yaml = "apiVersion: access.portcullis.dev/v1alpha1\nkind: AccessApplication\nmetadata: {name: x}\nspec: {domains: 5}\n";
        let e = Resources::default().add_yaml("f.yaml", yaml).unwrap_err();
        assert_eq!(e.index, 0);
        assert!(e.to_string().starts_with("f.yaml: document 0: AccessApplication x:"), "{e}");

        let e = Resources::default().add_yaml("g.yaml", "a: [").unwrap_err();
        assert!(e.message.contains("invalid YAML"), "{e}");

        let e = Resources::default()
            .add_yaml("h.yaml", "apiVersion: v1beta9\nkind: AccessApplication\nmetadata: {name: x}\n")
            .unwrap_err();
        assert!(e.message.contains("apiVersion must be"), "{e}");
    }

    #[test]
    fn compile_errors_can_name_their_file() {
        let mut r = Resources::default();
        let app = "apiVersion: access.portcullis.dev/v1alpha1\nkind: AccessApplication\nmetadata: {name: api}\nspec: {domains: []}\n";
        r.add_yaml("/etc/p/apps.yaml", app).unwrap();
        let errors = r.compile("shop").unwrap_err();
        assert_eq!(r.source_of(&errors.0[0].resource, "shop"), Some("/etc/p/apps.yaml"), "{errors}");
        assert_eq!(r.source_of("AccessApplication other/api", "shop"), None);
    }

    #[test]
    fn generated_crds_match_the_checked_in_file() {
        let want = crd_yaml().unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds.yaml");
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "crds/crds.yaml is stale: run `cargo run -p portcullis-crds --bin crdgen > crds/crds.yaml`"
        );
    }
}
