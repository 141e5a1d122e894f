//! `AccessApplication`: one protected application — its domains, who may reach it, and its CORS.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Empty, SecretKeyRef, TokenRef};

// CEL rules (`x-kubernetes-validations`, via `KubeSchema`) refuse at `kubectl apply` time the
// invalid combinations a rule over one object can express; everything else (origins, CIDRs,
// durations, references) is `compile`'s job. Lists that hold rule-carrying objects have
// `maxItems`, because the API server multiplies each rule's estimated cost by the list's
// worst-case length and refuses a CRD over its budget (K8s CRD docs, "Validation rules",
// resource use by validation functions).
/// An application protected by Portcullis sidecars.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "access.portcullis.dev",
    version = "v1alpha1",
    kind = "AccessApplication",
    doc = "An application protected by Portcullis: the domains it is reached on, where identities come from, the access policies and CORS settings that the sidecars beside its pods enforce, and optional browser sign-in. The operator compiles it and pushes it to every selected sidecar.",
    namespaced,
    status = "AccessApplicationStatus",
    shortname = "accessapp",
    printcolumn = r#"{"name":"Domains","type":"string","jsonPath":".spec.domains"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Enforcement","type":"string","jsonPath":".spec.enforcement"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Synced","type":"integer","jsonPath":".status.sidecars.synced"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.enforcement) && self.enforcement == 'External' && has(self.selector))")
    .message("spec.selector picks the sidecars that enforce this application, but spec.enforcement External has it enforced by the external authorizer only: remove spec.selector, or set spec.enforcement to Both")
    .field_path(".selector")
    .reason(Reason::FieldValueForbidden))]
pub struct AccessApplicationSpec {
    /// Pods whose sidecars enforce this application. Ignored by a standalone sidecar. Forbidden
    /// with `enforcement: External`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Which enforcer the operator configures with this application: `Sidecar` (default) the
    /// sidecars `selector` picks; `External` the external authorizer (`portcullis-sidecar authz`,
    /// the chart's `authorizer.enabled`) that the proxy you already run asks; `Both` both. Ignored
    /// by a standalone sidecar or authorizer, which enforce every application they are given.
    // The schema default makes the API server store `Sidecar`, so `kubectl get` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Sidecar"))]
    pub enforcement: Option<Enforcement>,
    /// `host`, `host/path-prefix` or `*.wildcard` host; the most specific match wins.
    #[x_kube(validation = Rule::new("size(self) > 0")
        .message("spec.domains must list at least one host: an application without domains routes no request")
        .reason(Reason::FieldValueRequired))]
    pub domains: Vec<String>,
    /// Lifetime of sessions the sidecar mints, as a Go duration (`24h`, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_duration: Option<String>,
    /// Where identities come from: JWT issuers, cookie and header names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentitySpec>,
    /// Browser sign-in through an OpenID Connect provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginSpec>,
    /// Access policies, evaluated as Cloudflare Access does.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub policies: Vec<PolicySpec>,
    /// Cross-origin settings. Absent: every preflight is refused with 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSpec>,
    /// Paths proxied to another (protected) application with a service token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub forward_routes: Vec<ForwardRouteSpec>,
    /// What an unauthenticated request gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unauthenticated_response: Option<UnauthenticatedResponse>,
    /// `Enforce` (default) or `Audit`: forward would-be denials and count them.
    // The schema default makes the API server store `Enforce`, so `kubectl get` shows the mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Enforce"))]
    pub mode: Option<Mode>,
    /// How request paths that servers read in different ways are handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<PathsSpec>,
}

/// Request-path handling (docs/behaviour.md, routing rules).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathsSpec {
    /// What a path holding an encoded slash, backslash, semicolon or percent sign (`%2F`, `%5C`,
    /// `%3B`, `%25`: a double-encoded path), a raw `\`, or an encoded NUL or control byte gets. `RejectRequest` (default): `400 ambiguous_path`.
    /// `KeepUnchanged`: forwarded as sent, the escapes matched as ordinary bytes — only for apps
    /// that need encoded slashes in a path segment (object keys, some REST APIs). The risk: an app
    /// or framework that decodes `%2F` after the sidecar routed the request may serve another
    /// path than the one that was decided; the sidecar still refuses such a request when any way
    /// servers read it (its escapes decoded once or more, a backslash taken as a byte or as `/`,
    /// escapes inside `;parameters` included) would route it to another application or forward
    /// route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escaped_slashes: Option<EscapedSlashes>,
}

/// What a path with escaped slashes gets (like Envoy's `path_with_escaped_slashes_action`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum EscapedSlashes {
    /// Refuse with `400 ambiguous_path`.
    #[default]
    RejectRequest,
    /// Forward unchanged; match the escapes as ordinary bytes.
    KeepUnchanged,
}

/// Where JWTs are read from and who may issue them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySpec {
    /// Session cookie name. Default `CF_Authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_name: Option<String>,
    /// Header carrying the JWT. Default `Cf-Access-Jwt-Assertion`; `Authorization: Bearer` is also read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    /// Issuers whose JWTs are accepted.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub issuers: Vec<IssuerSpec>,
}

/// One trusted JWT issuer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.jwksUri) != has(self.jwks)")
    .message("an issuer needs exactly one of jwksUri (where its keys are published) or jwks (the keys inline)")
    .reason(Reason::FieldValueInvalid))]
pub struct IssuerSpec {
    /// The exact `iss` claim.
    pub issuer: String,
    /// Where the issuer's keys are published (`https`, or `http` on a loopback address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The issuer's keys inline, as JWKS JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Accepted `aud` values; at least one must be present in the token.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Allowed signature algorithms. Default RS256, ES256, EdDSA; `none` and HS* are never allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    /// Tolerance on `exp`/`nbf`, as a Go duration. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew: Option<String>,
}

/// Browser sign-in settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.applicationSessionDuration) || has(self.authenticationHost)")
    .message("applicationSessionDuration is the lifetime of sessions handed off by an authentication host; set authenticationHost too")
    .field_path(".applicationSessionDuration")
    .reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("!has(self.authenticationHost) || self.authenticationHost.matches('^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?$')")
    .message("authenticationHost is a host name, optionally with :port (no scheme, path or wildcard), e.g. auth.example.com")
    .field_path(".authenticationHost")
    .reason(Reason::FieldValueInvalid))]
pub struct LoginSpec {
    /// The OpenID Connect provider.
    pub oidc: OidcSpec,
    /// Attributes of the session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<LoginCookieSpec>,
    /// Secret key (PEM Ed25519 or ECDSA P-256) that signs session tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key_ref: Option<SecretKeyRef>,
    /// One sign-in for many applications: the host (`auth.example.com`, optionally `:port`)
    /// that holds the one redirect URI registered with the provider
    /// (`https://<authenticationHost>/.portcullis/callback`) and the user's identity session.
    /// Applications naming the same host share one provider sign-in: they send the browser
    /// there and get it back with a short-lived, single-use code for their own session. The
    /// host must not be one of any application's domains, and every application naming it must
    /// use the same `oidc` settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_host: Option<String>,
    /// With `authenticationHost`: the lifetime of this application's own session, as a Go
    /// duration (default `5m`, at most `sessionDuration`). It bounds how long the application
    /// still admits a user after they signed out elsewhere; when it ends, a browser navigation
    /// is handed a new session without a provider sign-in while the identity session lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_session_duration: Option<String>,
}

/// An OpenID Connect client registration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OidcSpec {
    /// Issuer URL; discovery is read from `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// Client id registered with the provider.
    pub client_id: String,
    /// Secret holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<SecretKeyRef>,
    /// Scopes requested. Default `openid email profile`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Accept an ID token whose `email_verified` claim is `false` (default false: such a
    /// sign-in gets `403 email_unverified`, since anyone can claim an unverified address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_unverified_email: Option<bool>,
}

/// Session cookie attributes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
// `secure` defaults to true, so only an explicit `secure: false` breaks the pair. Browsers drop
// `SameSite=None` cookies without `Secure` (RFC 6265bis §5.6.19).
#[x_kube(validation = Rule::new("!(has(self.sameSite) && self.sameSite == 'None' && has(self.secure) && !self.secure)")
    .message("sameSite: None requires secure: true (browsers drop SameSite=None cookies that are not Secure)")
    .field_path(".secure")
    .reason(Reason::FieldValueInvalid))]
pub struct LoginCookieSpec {
    /// `Strict`, `Lax` (default) or `None` (cross-site API calls need `None`, which needs `secure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSite>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
}

/// The cookie `SameSite` attribute.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// One access policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.include) && size(self.include) > 0")
    .message("a policy needs at least one include rule (include: [ { everyone: {} } ] matches every signed-in identity)")
    .field_path(".include")
    .reason(Reason::FieldValueRequired))]
pub struct PolicySpec {
    /// Name, shown in logs, metrics and `explain`.
    pub name: String,
    /// What a match does.
    pub action: PolicyAction,
    /// At least one of these must match.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub include: Vec<RuleSpec>,
    /// None of these may match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub exclude: Vec<RuleSpec>,
    /// All of these must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub require: Vec<RuleSpec>,
}

/// Policy actions, as in Cloudflare Access.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum PolicyAction {
    Allow,
    Block,
    Bypass,
    ServiceAuth,
}

/// One selector. Exactly one field must be set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(
    "[has(self.email), has(self.emailDomain), has(self.group), has(self.everyone), has(self.ipRange), \
     has(self.serviceToken), has(self.anyValidServiceToken), has(self.claim)].filter(x, x).size() == 1")
    .message("a rule sets exactly one of email, emailDomain, group, everyone, ipRange, serviceToken, anyValidServiceToken, claim; write several rules to combine them")
    .reason(Reason::FieldValueInvalid))]
pub struct RuleSpec {
    /// An email address (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The exact domain after `@` (case-insensitive, no subdomains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_domain: Option<String>,
    /// A value of the `groups` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Every authenticated identity (`everyone: {}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub everyone: Option<Empty>,
    /// A CIDR matched against the peer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    /// One named service token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_token: Option<TokenRef>,
    /// Any unexpired service token of this namespace (`anyValidServiceToken: {}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_valid_service_token: Option<Empty>,
    /// Any JWT claim equal to (or, for arrays, containing) a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimRule>,
}

/// `claim: {name, value}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ClaimRule {
    /// Claim name.
    pub name: String,
    /// Required value.
    pub value: String,
}

// `bypassOptionsToOrigin` together with other fields is accepted on purpose: `compile` warns that
// they are ignored, and refusing it would break an apply that only flips the bypass on.
/// Cross-origin settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
// Fetch §3.2.5: a credentialed response must not carry `Access-Control-Allow-Origin: *`.
#[x_kube(validation = Rule::new("!(has(self.allowCredentials) && self.allowCredentials && has(self.allowAllOrigins) && self.allowAllOrigins)")
    .message("allowCredentials: true cannot be combined with allowAllOrigins: true (browsers refuse credentials with Access-Control-Allow-Origin: *); list the origins in allowedOrigins instead")
    .field_path(".allowCredentials")
    .reason(Reason::FieldValueForbidden))]
pub struct CorsSpec {
    /// Preflights go to the app unauthenticated, and the sidecar sets no CORS headers at all.
    #[serde(default)]
    pub bypass_options_to_origin: bool,
    /// Exact origins (`https://example.com`) or any subdomain (`https://*.example.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Answer `*`; refused together with `allowCredentials`.
    #[serde(default)]
    pub allow_all_origins: bool,
    /// Methods allowed cross-origin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_methods: Vec<String>,
    /// Echo whatever method a preflight asks for.
    #[serde(default)]
    pub allow_all_methods: bool,
    /// Request headers allowed cross-origin (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    /// Echo whatever headers a preflight asks for.
    #[serde(default)]
    pub allow_all_headers: bool,
    /// Send `Access-Control-Allow-Credentials: true`.
    #[serde(default)]
    pub allow_credentials: bool,
    /// `Access-Control-Max-Age`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
    /// `Access-Control-Expose-Headers`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_headers: Vec<String>,
    /// Answer `Access-Control-Request-Private-Network` preflights.
    #[serde(default)]
    pub allow_private_network: bool,
}

/// A path proxied to another application with a service token.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.upstream) && size(self.upstream) > 0")
    .message("a forward route needs upstream: the URL (https://host[/base]) its requests are sent to")
    .field_path(".upstream")
    .reason(Reason::FieldValueRequired))]
pub struct ForwardRouteSpec {
    /// Path prefix on this application's domains (matched on segment boundaries).
    pub path_prefix: String,
    /// `https://host[:port][/base]`, or `http://` for a loopback or in-cluster target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Remove `pathPrefix` from the path sent upstream.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Service token whose `CF-Access-Client-Id`/`-Secret` are added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_token_ref: Option<TokenRef>,
    /// Remove `Set-Cookie` from the upstream's answer. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_set_cookie: Option<bool>,
}

/// What an unauthenticated request gets.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UnauthenticatedResponse {
    /// Browser navigations get the login redirect (with `login`), everything else 401.
    #[default]
    Auto,
    /// Always 401.
    Status401,
    /// Always the login redirect (needs `login`).
    Redirect,
}

/// Enforcement mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Mode {
    /// Deny what the policies deny.
    #[default]
    Enforce,
    /// Forward would-be denials without identity headers; log and count them.
    Audit,
}

/// Which enforcer the operator configures with an application.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Enforcement {
    /// The sidecars `spec.selector` picks.
    #[default]
    Sidecar,
    /// The external authorizer only (`portcullis-sidecar authz`): the proxy in front of the app
    /// asks it.
    External,
    /// The sidecars and the external authorizer.
    Both,
}

// === impl Enforcement ===

impl Enforcement {
    /// Whether the sidecars `spec.selector` picks enforce it.
    pub fn by_sidecars(self) -> bool {
        matches!(self, Enforcement::Sidecar | Enforcement::Both)
    }

    /// Whether the external authorizer enforces it.
    pub fn by_authorizer(self) -> bool {
        matches!(self, Enforcement::External | Enforcement::Both)
    }
}

/// Observed state of an AccessApplication, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessApplicationStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (compiled) and `Synced` (every matched sidecar and authorizer runs it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Sidecar counts (`enforcement` Sidecar or Both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecars: Option<SidecarCounts>,
    /// External-authorizer counts (`enforcement` External or Both): `matched` is the running
    /// authorizer pods, `synced` those running this application's current configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizers: Option<SidecarCounts>,
    /// Version (digest) of the compiled configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<String>,
}

/// How many selected enforcers (sidecars, or external-authorizer pods) run and how many run the
/// current config.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SidecarCounts {
    pub matched: u32,
    pub synced: u32,
}
