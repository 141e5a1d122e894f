//! `AccessServiceToken`: a client id + secret pair for machine callers (Cloudflare's service tokens).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Secret keys the operator writes and `compile` reads.
pub mod secret_keys {
    /// The token's client id (`CF-Access-Client-Id`).
    pub const CLIENT_ID: &str = "client-id";
    /// The current secret (`CF-Access-Client-Secret`).
    pub const CLIENT_SECRET: &str = "client-secret";
    /// The secret before the last rotation, accepted until `PREVIOUS_CLIENT_SECRET_VALID_UNTIL`.
    pub const PREVIOUS_CLIENT_SECRET: &str = "previous-client-secret";
    /// RFC 3339 instant until which the previous secret is accepted.
    pub const PREVIOUS_CLIENT_SECRET_VALID_UNTIL: &str = "previous-client-secret-valid-until";
}

/// A service token: credentials that a `ServiceAuth` policy can admit.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "access.portcullis.dev",
    version = "v1alpha1",
    kind = "AccessServiceToken",
    doc = "A service token for machine callers, as in Cloudflare Access: a client id and secret sent as CF-Access-Client-Id and CF-Access-Client-Secret, admitted by ServiceAuth policies. The operator generates the credentials into the named Secret, rotates them ahead of expiry and on request (the access.portcullis.dev/rotate annotation); sidecars receive only a digest of the secret.",
    namespaced,
    status = "AccessServiceTokenStatus",
    shortname = "accesstoken",
    printcolumn = r#"{"name":"Client ID","type":"string","jsonPath":".status.clientId"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AccessServiceTokenSpec {
    /// Lifetime after creation or rotation, as a Go duration (`8760h`). Unset: the token does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// After a rotation the previous secret keeps working this long (`24h`). Default: no grace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_grace_period: Option<String>,
    /// The Secret (same namespace) holding `client-id` and `client-secret`.
    pub secret_name: String,
}

/// Observed state of an AccessServiceToken, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessServiceTokenStatus {
    /// The public half of the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// RFC 3339 instant after which the token is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// RFC 3339 instant of the last rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotated: Option<String>,
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Kubernetes conditions (`Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
