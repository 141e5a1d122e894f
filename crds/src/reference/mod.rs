//! The API reference (`docs/reference/`): one Markdown page per kind, rendered from the same
//! schemars schema the CRDs come from, with every named type as its own section (the shape of
//! cert-manager's and Envoy Gateway's API reference pages). Pure: it returns the pages' text;
//! `crdgen --reference <dir>` writes them and a test compares them with the checked-in files.
//!
//! The schema is generated with subschemas kept as named definitions (the CRD inlines them,
//! which loses the type names and the enum values' own docs); a test checks that the fields it
//! documents are exactly the CRD schema's fields, so that the two cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use kube::core::crd::v1::CustomResourceExt;
use kube::Resource;
use schemars::generate::SchemaSettings;
use schemars::transform::AddNullable;
use schemars::JsonSchema;
use serde_json::{Map, Value};

use crate::v1alpha1::{AccessApplication, AccessServiceToken};

/// The command that regenerates the pages, quoted in each page and in the stale-file test.
pub const REGENERATE: &str = "cargo run -p portcullis-crds --bin crdgen -- --reference docs/reference";

/// One generated file of `docs/reference/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub file_name: String,
    pub text: String,
}

/// Why the reference could not be rendered: a schema shape this renderer does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("{type_name}: the validation rule `{rule}` has no message; give it one with .message(\"…\") so that the reference and `kubectl apply` can say what it requires")]
    RuleWithoutMessage { type_name: String, rule: String },
    #[error("{at}: reference {reference:?} names no definition")]
    UnknownReference { at: String, reference: String },
    #[error("the schema of {kind} does not serialize: {message}")]
    Schema { kind: &'static str, message: String },
}

impl ReferenceError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::RuleWithoutMessage { .. } => "rule_without_message",
            Self::UnknownReference { .. } => "unknown_reference",
            Self::Schema { .. } => "schema",
        }
    }
}

/// Every page: an index and one page per kind.
pub fn pages() -> Result<Vec<Page>, ReferenceError> {
    let kinds = [kind_page::<AccessApplication>()?, kind_page::<AccessServiceToken>()?];
    let mut index = String::new();
    index.push_str("# API reference\n\n");
    index.push_str(&generated_note());
    index.push_str(
        "The resources of the `access.portcullis.dev/v1alpha1` API, field by field: type, default, \
         validation and meaning. What the sidecar does with them (statuses, precedence, CORS, \
         metrics) is in [behaviour.md](../behaviour.md).\n\n| Kind | What it is |\n|---|---|\n",
    );
    for (page, kind, doc) in &kinds {
        let _ = writeln!(index, "| [{kind}]({}) | {} |", page.file_name, cell(doc));
    }
    let mut out = vec![Page { file_name: "README.md".into(), text: index }];
    out.extend(kinds.into_iter().map(|(page, _, _)| page));
    Ok(out)
}

/// The field paths (`.spec.identity.issuers[].jwksUri`) a kind's page documents, for the test
/// that holds them equal to the CRD schema's.
pub fn documented_paths<K: JsonSchema>() -> Result<BTreeSet<String>, ReferenceError> {
    let schema = Schema::of::<K>()?;
    let mut out = BTreeSet::new();
    schema.collect_paths(String::new(), &schema.root, &mut out)?;
    Ok(out)
}

fn generated_note() -> String {
    format!("<!-- Generated from the Rust types (crds/src/v1alpha1/) by `{REGENERATE}`. Do not edit: a test fails when this file is stale. -->\n\n")
}

/// A kind's page, its kind name and its description.
fn kind_page<K>() -> Result<(Page, String, String), ReferenceError>
where
    K: JsonSchema + CustomResourceExt + Resource<DynamicType = ()>,
{
    let crd = K::crd();
    let kind = K::kind(&()).into_owned();
    let schema = Schema::of::<K>()?;
    let doc = description(&schema.root);
    let names = &crd.spec.names;
    let mut t = String::new();
    let _ = write!(t, "# {kind}\n\n{}{doc}\n\n", generated_note());
    t.push_str("| | |\n|---|---|\n");
    let _ = writeln!(t, "| API version | `{}` |", K::api_version(&()));
    let _ = writeln!(t, "| Scope | {} |", crd.spec.scope);
    let _ =
        writeln!(t, "| Plural, short names | `{}`, {} |", names.plural, code_list(names.short_names.iter().flatten()));
    if let Some(columns) = crd.spec.versions.first().and_then(|v| v.additional_printer_columns.as_ref()) {
        let columns: Vec<String> = columns.iter().map(|c| format!("{} (`{}`)", c.name, c.json_path)).collect();
        let _ = writeln!(t, "| Columns of `kubectl get` | {} |", cell(&columns.join(", ")));
    }
    let _ = write!(
        t,
        "\nEach object below is its own section, named by its path in the resource (as `kubectl \
         explain {}` takes it). What the sidecar does with these fields — statuses, precedence, \
         CORS, metrics — is in [behaviour.md](../behaviour.md).\n\n",
        names.plural
    );

    let mut sections = Sections::default();
    let mut top = Vec::new();
    top.push(format!("| `apiVersion` | string | yes | | `{}` |", K::api_version(&())));
    top.push(format!("| `kind` | string | yes | | `{kind}` |"));
    top.push("| `metadata` | ObjectMeta | yes | | Standard Kubernetes object metadata: name, namespace, labels, annotations. |".into());
    top.extend(schema.rows("", &schema.root, &mut sections)?);
    let _ = write!(t, "## {kind}\n\n{TABLE_HEAD}{}\n\n", top.join("\n"));
    for section in sections.list {
        let _ = write!(t, "## `{}`\n\n", section.path);
        if !section.also_at.is_empty() {
            let _ = write!(t, "Also at {}.\n\n", code_list(section.also_at.iter()));
        }
        if !section.doc.is_empty() {
            let _ = write!(t, "{}\n\n", section.doc);
        }
        if !section.rules.is_empty() {
            t.push_str("Validation (checked by the API server at `kubectl apply`):\n\n");
            for rule in &section.rules {
                let _ = writeln!(t, "- {rule}");
            }
            t.push('\n');
        }
        let _ = write!(t, "{TABLE_HEAD}{}\n\n", section.rows.join("\n"));
    }
    let text = format!("{}\n", t.trim_end());
    let file_name = format!("{}.md", kind.to_lowercase());
    Ok((Page { file_name, text }, kind, doc))
}

const TABLE_HEAD: &str = "| Field | Type | Required | Default | Description |\n|---|---|---|---|---|\n";

/// The object sections of a page, in the order of first use.
#[derive(Default)]
struct Sections {
    list: Vec<Section>,
    /// An object's schema (without its field's description) → its section, so that a type used
    /// at several paths (a policy's include, exclude and require rules) is documented once.
    by_schema: BTreeMap<String, usize>,
}

struct Section {
    path: String,
    also_at: Vec<String>,
    doc: String,
    rules: Vec<String>,
    rows: Vec<String>,
}

/// A root schema with its definitions.
struct Schema {
    root: Value,
    definitions: Map<String, Value>,
}

// === impl Schema ===

impl Schema {
    /// The schema of `K` as the CRD generator makes it, but with named definitions where the
    /// types allow it (`KubeSchema` types are always inlined).
    fn of<K: JsonSchema>() -> Result<Self, ReferenceError> {
        let generator = SchemaSettings::openapi3()
            .with(|s| {
                s.inline_subschemas = false;
                s.meta_schema = None;
            })
            .with_transform(AddNullable::default())
            .into_generator();
        let err =
            |e: serde_json::Error| ReferenceError::Schema { kind: std::any::type_name::<K>(), message: e.to_string() };
        let mut root = serde_json::to_value(generator.into_root_schema_for::<K>()).map_err(err)?;
        let definitions = take_definitions(&mut root);
        Ok(Self { root, definitions })
    }

    /// The schema a field's schema stands for: the named type it refers to, through `Option`
    /// (`anyOf [$ref, null]`) and `allOf [$ref]` wrappers, or itself.
    fn resolve<'a>(&'a self, node: &'a Value, at: &str) -> Result<&'a Value, ReferenceError> {
        let Some(name) = referenced(node) else { return Ok(node) };
        self.definitions
            .get(name)
            .ok_or_else(|| ReferenceError::UnknownReference { at: at.to_owned(), reference: name.to_owned() })
    }

    /// One table row per property of `object` (at `path`), adding a section for each object field.
    fn rows(&self, path: &str, object: &Value, sections: &mut Sections) -> Result<Vec<String>, ReferenceError> {
        let required: BTreeSet<&str> =
            object.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let mut rows = Vec::new();
        for (name, field) in object.get("properties").and_then(Value::as_object).into_iter().flatten() {
            let at = format!("{path}.{name}");
            let ty = self.type_of(&at, field, description(field), sections)?;
            let resolved = self.resolve(field, &at)?;
            let default = field.get("default").map(|d| format!("`{d}`")).unwrap_or_default();
            let mut text = description(field);
            if text.is_empty() {
                text = description(resolved);
            }
            let mut lines = vec![cell(&text)];
            if let Some(values) = enum_values(resolved) {
                for (value, doc) in values.iter().filter(|(_, doc)| !doc.is_empty()) {
                    lines.push(format!("`{value}`: {}", cell(doc)));
                }
            }
            lines.extend(self.field_validation(&at, field)?.iter().map(|l| cell(&format!("Validation: {l}"))));
            lines.retain(|l| !l.is_empty());
            let req = if required.contains(name.as_str()) { "yes" } else { "no" };
            rows.push(format!("| `{name}` | {ty} | {req} | {default} | {} |", lines.join("<br>")));
        }
        Ok(rows)
    }

    /// The type column: `string`, `[]T`, `map[string]T`, or a link to an object's section.
    fn type_of(
        &self,
        at: &str,
        node: &Value,
        field_doc: String,
        sections: &mut Sections,
    ) -> Result<String, ReferenceError> {
        let node = self.resolve(node, at)?;
        if enum_values(node).is_some() {
            return Ok("string (enum)".into());
        }
        match json_type(node) {
            Some("array") => {
                let items = node.get("items").unwrap_or(&Value::Null);
                Ok(format!("[]{}", self.type_of(&format!("{at}[]"), items, String::new(), sections)?))
            }
            Some("object") if node.get("properties").is_some() => {
                let slug = self.section(at, node, field_doc, sections)?;
                Ok(format!("[object](#{slug})"))
            }
            Some("object") if node.get("additionalProperties").is_some_and(Value::is_object) => {
                let values = node.get("additionalProperties").unwrap_or(&Value::Null);
                Ok(format!("map[string]{}", self.type_of(&format!("{at}{{}}"), values, String::new(), sections)?))
            }
            _ => Ok(primitive(node)),
        }
    }

    /// The section of the object at `at` (made on first use), as a heading anchor.
    fn section(
        &self,
        at: &str,
        node: &Value,
        field_doc: String,
        sections: &mut Sections,
    ) -> Result<String, ReferenceError> {
        let mut key = node.clone();
        if let Some(obj) = key.as_object_mut() {
            for k in ["description", "nullable", "default"] {
                obj.remove(k);
            }
        }
        let key = key.to_string();
        if let Some(&i) = sections.by_schema.get(&key) {
            sections.list[i].also_at.push(at.trim_start_matches('.').to_owned());
            return Ok(github_slug(&format!("`{}`", sections.list[i].path)));
        }
        let index = sections.list.len();
        sections.by_schema.insert(key, index);
        let own = description(node);
        let doc = if own.is_empty() { field_doc } else { own };
        let rules = rules(at, node)?;
        sections.list.push(Section {
            path: at.trim_start_matches('.').to_owned(),
            also_at: Vec::new(),
            doc,
            rules,
            rows: Vec::new(),
        });
        let rows = self.rows(at, node, sections)?;
        sections.list[index].rows = rows;
        Ok(github_slug(&format!("`{}`", sections.list[index].path)))
    }

    /// Validation of one field in words: enum values, bounds, patterns and its own CEL rules
    /// (rules of an object type are listed in the object's section).
    fn field_validation(&self, at: &str, field: &Value) -> Result<Vec<String>, ReferenceError> {
        let mut out = Vec::new();
        let resolved = self.resolve(field, at)?;
        let mut nodes = vec![("", field)];
        if let Some(items) = resolved.get("items") {
            nodes.push(("each item: ", self.resolve(items, at)?));
        }
        for (what, node) in nodes {
            if let Some(values) = enum_values(self.resolve(node, at)?) {
                let values: Vec<String> = values.into_iter().map(|(v, _)| v).collect();
                out.push(format!("{what}one of {}", code_list(values.iter())));
            }
            let bounds = [
                ("minimum", "at least {}"),
                ("maximum", "at most {}"),
                ("minLength", "at least {} characters"),
                ("maxLength", "at most {} characters"),
                ("minItems", "at least {} items"),
                ("maxItems", "at most {} items"),
            ];
            for (key, words) in bounds {
                if let Some(n) = node.get(key) {
                    out.push(format!("{what}{}", words.replace("{}", &n.to_string())));
                }
            }
            if let Some(p) = node.get("pattern").and_then(Value::as_str) {
                out.push(format!("{what}matches `{p}`"));
            }
        }
        // A field-level rule (on a list or a string) belongs to the field; an object's rules are
        // in its section.
        if resolved.get("properties").is_none() {
            out.extend(rules(at, resolved)?);
        }
        Ok(out)
    }

    /// Every property path below `node`, through references, lists and maps.
    fn collect_paths(&self, path: String, node: &Value, out: &mut BTreeSet<String>) -> Result<(), ReferenceError> {
        let node = self.resolve(node, &path)?;
        for (name, field) in node.get("properties").and_then(Value::as_object).into_iter().flatten() {
            let child = format!("{path}.{name}");
            out.insert(child.clone());
            self.collect_paths(child, field, out)?;
        }
        if let Some(items) = node.get("items") {
            self.collect_paths(format!("{path}[]"), items, out)?;
        }
        if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
            self.collect_paths(format!("{path}{{}}"), values, out)?;
        }
        Ok(())
    }
}

/// The definition name a field schema refers to, through `Option` and `allOf` wrappers.
fn referenced(node: &Value) -> Option<&str> {
    if let Some(r) = node.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next();
    }
    for key in ["anyOf", "allOf", "oneOf"] {
        if let Some(list) = node.get(key).and_then(Value::as_array) {
            let refs: Vec<&str> = list.iter().filter_map(referenced).collect();
            let others = list.iter().filter(|s| referenced(s).is_none() && !is_null(s)).count();
            if refs.len() == 1 && others == 0 {
                return Some(refs[0]);
            }
        }
    }
    None
}

/// Moves the definitions (wherever the settings put them) out of the root schema.
fn take_definitions(root: &mut Value) -> Map<String, Value> {
    let mut out = Map::new();
    for pointer in ["/components/schemas", "/$defs", "/definitions"] {
        if let Some(Value::Object(defs)) = root.pointer_mut(pointer).map(Value::take) {
            out.extend(defs);
        }
    }
    if let Some(obj) = root.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
        if let Some(Value::Object(components)) = obj.get("components") {
            if components.values().all(Value::is_null) {
                obj.remove("components");
            }
        }
    }
    out
}

/// An enum's values with their own docs: `oneOf` of constants (variants with doc comments) or
/// a plain `enum` list.
fn enum_values(def: &Value) -> Option<Vec<(String, String)>> {
    if let Some(list) = def.get("oneOf").and_then(Value::as_array) {
        let mut out = Vec::new();
        for variant in list {
            let values = variant
                .get("const")
                .map(|c| vec![c.clone()])
                .or_else(|| variant.get("enum").and_then(Value::as_array).cloned())?;
            for value in values {
                out.push((plain(&value), description(variant)));
            }
        }
        return Some(out);
    }
    let values = def.get("enum").and_then(Value::as_array)?;
    Some(values.iter().filter(|v| !v.is_null()).map(|v| (plain(v), String::new())).collect())
}

/// A node's CEL rules in words: the message, the rule and the field it is reported on.
fn rules(at: &str, node: &Value) -> Result<Vec<String>, ReferenceError> {
    let mut out = Vec::new();
    for rule in node.get("x-kubernetes-validations").and_then(Value::as_array).into_iter().flatten() {
        let text = |k: &str| rule.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (expr, message) = (text("rule"), text("message"));
        if message.is_empty() {
            return Err(ReferenceError::RuleWithoutMessage { type_name: at.to_owned(), rule: expr });
        }
        let field = text("fieldPath");
        let on = if field.is_empty() { String::new() } else { format!(", reported on `{field}`") };
        out.push(format!("{message} (CEL: `{expr}`{on})"));
    }
    Ok(out)
}

fn description(node: &Value) -> String {
    node.get("description").and_then(Value::as_str).unwrap_or_default().trim().to_owned()
}

/// A node's `type`, without the `null` that an `Option` adds (`["object", "null"]`).
fn json_type(node: &Value) -> Option<&str> {
    match node.get("type")? {
        Value::String(s) => Some(s),
        Value::Array(list) => list.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

fn is_null(node: &Value) -> bool {
    node.get("type").and_then(Value::as_str) == Some("null")
        || node.get("enum") == Some(&Value::Array(vec![Value::Null]))
}

/// `string`, `integer (int64)`, `boolean`; `object` for a free-form object.
fn primitive(node: &Value) -> String {
    let ty = match node.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(list)) => {
            list.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect::<Vec<_>>().join(" or ")
        }
        _ => "any".to_owned(),
    };
    match node.get("format").and_then(Value::as_str) {
        Some(format) => format!("{ty} ({format})"),
        None => ty,
    }
}

/// A JSON value as text: strings without quotes.
fn plain(value: &Value) -> String {
    value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())
}

fn code_list<'a>(items: impl Iterator<Item = &'a String>) -> String {
    items.map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

/// Text for a Markdown table cell: one line, `|` escaped.
fn cell(text: &str) -> String {
    text.trim().replace('|', "\\|").replace("\n\n", "<br><br>").replace('\n', " ")
}

/// The anchor GitHub gives a Markdown heading: lower case, punctuation other than `-` and `_`
/// removed, spaces as `-`. (A repeated heading gets `-1`, `-2`, …; callers that need that count.)
pub fn github_slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
