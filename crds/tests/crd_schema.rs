//! The generated CRDs: every CEL rule is present where it belongs with a message naming the
//! fields, and the schemas stay structural and within the API server's CEL cost budget.
//!
//! The rules' behaviour needs an API server (or kube's `cel` feature) to evaluate; these tests
//! hold the shape, the end-to-end suite holds the behaviour.

use kube::CustomResourceExt;
use portcullis_crds::v1alpha1::{AccessApplication, AccessServiceToken};
use serde_json::Value;

/// The `openAPIV3Schema` of a CRD's only version.
fn schema(crd: impl serde::Serialize) -> Value {
    let v = serde_json::to_value(crd).expect("a CRD serializes");
    v.pointer("/spec/versions/0/schema/openAPIV3Schema").cloned().expect("the CRD has a schema")
}

/// Every schema node, with its path (`.spec.policies[].include[]`).
fn nodes(schema: &Value) -> Vec<(String, &Value)> {
    fn walk<'a>(path: String, node: &'a Value, out: &mut Vec<(String, &'a Value)>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                walk(format!("{path}.{name}"), child, out);
            }
        }
        if let Some(items) = node.get("items") {
            walk(format!("{path}[]"), items, out);
        }
        if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
            walk(format!("{path}{{}}"), values, out);
        }
        out.push((path, node));
    }
    let mut out = Vec::new();
    walk(String::new(), schema, &mut out);
    out
}

/// `(path, rule, message)` of every `x-kubernetes-validations` entry.
fn rules(schema: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (path, node) in nodes(schema) {
        for rule in node.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten() {
            let text = |k: &str| rule.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            out.push((path.clone(), text("rule"), text("message")));
        }
    }
    out
}

#[test]
fn each_invalid_combination_has_a_rule_whose_message_names_the_fields() {
    struct Case {
        desc: &'static str,
        path: &'static str,
        rule_mentions: &'static [&'static str],
        message_mentions: &'static [&'static str],
    }
    let cases = [
        Case {
            desc: "allowCredentials with allowAllOrigins",
            path: ".spec.cors",
            rule_mentions: &["self.allowCredentials", "self.allowAllOrigins"],
            message_mentions: &["allowCredentials", "allowAllOrigins"],
        },
        Case {
            desc: "exactly one of jwksUri/jwks",
            path: ".spec.identity.issuers[]",
            rule_mentions: &["has(self.jwksUri) != has(self.jwks)"],
            message_mentions: &["jwksUri", "jwks"],
        },
        Case {
            desc: "policy without include",
            path: ".spec.policies[]",
            rule_mentions: &["size(self.include) > 0"],
            message_mentions: &["include"],
        },
        Case {
            desc: "rule with zero or several selectors (include)",
            path: ".spec.policies[].include[]",
            rule_mentions: &["filter(x, x).size() == 1", "has(self.anyValidServiceToken)", "has(self.claim)"],
            message_mentions: &["exactly one of", "email", "emailDomain", "serviceToken", "claim"],
        },
        Case {
            desc: "rule with zero or several selectors (exclude)",
            path: ".spec.policies[].exclude[]",
            rule_mentions: &["filter(x, x).size() == 1"],
            message_mentions: &["exactly one of"],
        },
        Case {
            desc: "rule with zero or several selectors (require)",
            path: ".spec.policies[].require[]",
            rule_mentions: &["filter(x, x).size() == 1"],
            message_mentions: &["exactly one of"],
        },
        Case {
            desc: "sameSite None without secure",
            path: ".spec.login.cookie",
            rule_mentions: &["self.sameSite == 'None'", "!self.secure"],
            message_mentions: &["sameSite: None", "secure: true"],
        },
        Case {
            desc: "applicationSessionDuration without authenticationHost",
            path: ".spec.login",
            rule_mentions: &["has(self.applicationSessionDuration)", "has(self.authenticationHost)"],
            message_mentions: &["applicationSessionDuration", "authenticationHost"],
        },
        Case {
            desc: "authenticationHost is host[:port]",
            path: ".spec.login",
            rule_mentions: &["self.authenticationHost.matches("],
            message_mentions: &["authenticationHost", ":port"],
        },
        Case {
            desc: "forward route without upstream",
            path: ".spec.forwardRoutes[]",
            rule_mentions: &["has(self.upstream)"],
            message_mentions: &["upstream"],
        },
        Case {
            desc: "domains non-empty",
            path: ".spec.domains",
            rule_mentions: &["size(self) > 0"],
            message_mentions: &["spec.domains"],
        },
    ];
    let all = rules(&schema(AccessApplication::crd()));
    for case in cases {
        let found = all.iter().find(|(path, rule, message)| {
            path == case.path
                && case.rule_mentions.iter().all(|m| rule.contains(m))
                && case.message_mentions.iter().all(|m| message.contains(m))
        });
        assert!(found.is_some(), "{}: no matching rule at {}; rules: {all:#?}", case.desc, case.path);
    }
}

#[test]
fn bypass_options_to_origin_with_other_cors_fields_is_not_refused() {
    // compile() warns instead: refusing would break an apply that only turns the bypass on.
    let all = rules(&schema(AccessApplication::crd()));
    assert!(all.iter().all(|(_, rule, _)| !rule.contains("bypassOptionsToOrigin")), "{all:#?}");
}

#[test]
fn schemas_are_structural() {
    for (kind, schema) in [
        ("AccessApplication", schema(AccessApplication::crd())),
        ("AccessServiceToken", schema(AccessServiceToken::crd())),
    ] {
        for (path, node) in nodes(&schema) {
            let preserves = node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
                || node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
            assert!(node.get("type").is_some() || preserves, "{kind} {path}: a structural schema needs a type");
            assert_ne!(
                node.get("additionalProperties"),
                Some(&Value::Bool(false)),
                "{kind} {path}: additionalProperties: false is not structural"
            );
            assert!(
                !(node.get("properties").is_some() && node.get("additionalProperties").is_some()),
                "{kind} {path}: properties and additionalProperties are mutually exclusive"
            );
            for keyword in ["anyOf", "oneOf", "allOf", "$ref"] {
                assert!(node.get(keyword).is_none(), "{kind} {path}: {keyword} is not generated structurally here");
            }
        }
    }
}

#[test]
fn lists_of_rule_carrying_objects_are_bounded() {
    // The API server multiplies a rule's cost by the worst-case length of every list around it;
    // unbounded nested lists push the estimate over the per-CRD budget and the CRD is refused.
    let schema = schema(AccessApplication::crd());
    for (path, node) in nodes(&schema) {
        let Some(items) = node.get("items") else { continue };
        let items_carry_rules = nodes(items).iter().any(|(_, n)| n.get("x-kubernetes-validations").is_some());
        if items_carry_rules {
            assert!(node.get("maxItems").is_some(), "{path}: list of objects with CEL rules needs maxItems");
        }
    }
}

#[test]
fn mode_defaults_to_enforce_so_kubectl_get_shows_it() {
    let s = schema(AccessApplication::crd());
    assert_eq!(s["properties"]["spec"]["properties"]["mode"]["default"], "Enforce");
}
