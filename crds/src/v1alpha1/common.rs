//! Small reference types shared by both kinds. Plain data: no validation here (that is `compile`'s job).

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// A key inside a Secret in the resource's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret's `data` (or `stringData`).
    pub key: String,
}

/// A reference by name to an `AccessServiceToken` in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct TokenRef {
    /// Name of the AccessServiceToken.
    pub name: String,
}

/// The empty object used by selectors that take no argument (`everyone: {}`).
///
/// Its schema is written by hand: the derived one says `additionalProperties: false`, which a
/// structural schema may not (K8s CRD "Specifying a structural schema": additionalProperties is
/// only for maps). A plain `type: object` without properties makes the API server prune whatever
/// is inside, so `everyone: {x: 1}` is stored as `everyone: {}`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

// === impl Empty ===

impl JsonSchema for Empty {
    fn schema_name() -> Cow<'static, str> {
        "Empty".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "object" })
    }
}
