use std::collections::BTreeSet;

use kube::CustomResourceExt;
use serde_json::Value;

use super::*;

/// Every property path of a CRD's `openAPIV3Schema`, as `documented_paths` writes them.
fn crd_paths(crd: impl serde::Serialize) -> BTreeSet<String> {
    fn walk(path: &str, node: &Value, out: &mut BTreeSet<String>) {
        for (name, child) in node.get("properties").and_then(Value::as_object).into_iter().flatten() {
            let p = format!("{path}.{name}");
            out.insert(p.clone());
            walk(&p, child, out);
        }
        if let Some(items) = node.get("items") {
            walk(&format!("{path}[]"), items, out);
        }
        if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
            walk(&format!("{path}{{}}"), values, out);
        }
    }
    let crd = serde_json::to_value(crd).unwrap();
    let mut out = BTreeSet::new();
    walk("", crd.pointer("/spec/versions/0/schema/openAPIV3Schema").unwrap(), &mut out);
    out
}

#[test]
fn the_reference_documents_exactly_the_crd_fields() {
    assert_eq!(documented_paths::<AccessApplication>().unwrap(), crd_paths(AccessApplication::crd()));
    assert_eq!(documented_paths::<AccessServiceToken>().unwrap(), crd_paths(AccessServiceToken::crd()));
}

#[test]
fn every_field_of_every_kind_has_a_row() {
    let pages = pages().unwrap();
    let kinds = [
        ("accessapplication.md", documented_paths::<AccessApplication>().unwrap()),
        ("accessservicetoken.md", documented_paths::<AccessServiceToken>().unwrap()),
    ];
    for (file, paths) in kinds {
        let text = &pages.iter().find(|p| p.file_name == file).unwrap().text;
        for path in paths {
            let field = path.rsplit('.').next().unwrap().trim_end_matches("[]").trim_end_matches("{}");
            assert!(text.contains(&format!("| `{field}` |")), "{file}: no row for {path}");
        }
    }
}

#[test]
fn cel_rules_enums_and_defaults_are_in_words() {
    let pages = pages().unwrap();
    let app = &pages.iter().find(|p| p.file_name == "accessapplication.md").unwrap().text;
    // A rule on a type, with its message and expression.
    assert!(app.contains("- allowCredentials: true cannot be combined with allowAllOrigins: true"), "{app}");
    assert!(app.contains("reported on `.allowCredentials`"));
    // A rule on a field, in the field's row.
    assert!(app.contains("Validation: spec.domains must list at least one host"));
    // Enum values with their own docs, bounds and defaults.
    assert!(app.contains("`Audit`: Forward would-be denials without identity headers; log and count them."), "{app}");
    assert!(app.contains("Validation: at most 64 items"));
    assert!(app.contains("| `mode` | string (enum) | no | `\"Enforce\"` |"), "{app}");
    assert!(app.contains("Validation: one of `Enforce`, `Audit`"));
    // A type used at several paths is one section.
    assert!(
        app.contains(
            "## `spec.policies[].exclude[]`\n\nAlso at `spec.policies[].include[]`, `spec.policies[].require[]`."
        ),
        "{app}"
    );
    assert!(app.contains("| `include` | [][object](#specpoliciesexclude) |"), "{app}");
    assert!(!app.contains("Auto-generated"));
}

#[test]
fn a_rule_without_a_message_is_an_error() {
    let node = serde_json::json!({"x-kubernetes-validations": [{"rule": "self.a > 0"}]});
    let err = rules("Spec", &node).unwrap_err();
    assert_eq!(err.reason(), "rule_without_message");
    assert!(err.to_string().contains("self.a > 0"));
}

#[test]
fn the_checked_in_reference_is_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reference");
    let pages = pages().unwrap();
    let want: BTreeSet<String> = pages.iter().map(|p| p.file_name.clone()).collect();
    let have: BTreeSet<String> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert_eq!(have, want, "docs/reference/ holds other files than the generated ones: run `{REGENERATE}`");
    for page in pages {
        let have = std::fs::read_to_string(dir.join(&page.file_name)).unwrap_or_default();
        assert!(have == page.text, "docs/reference/{} is stale: run `{REGENERATE}`", page.file_name);
    }
}
