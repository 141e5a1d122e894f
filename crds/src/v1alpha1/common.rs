//! Small reference types shared by both kinds. Plain data: no validation here (that is `compile`'s job).

use schemars::JsonSchema;
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
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}
