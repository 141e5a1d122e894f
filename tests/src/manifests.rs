//! Manifests the tests configure sidecars with: the seed's application, a forward-route site,
//! a public Bypass path, and compiling them as the operator does.

use crate::*;

/// The two Secrets of a sign-in application in namespace `shop`, as documents that each start
/// with `---`: `oidc-client` (key `client-secret`) and `session-key` (key `key.pem`, the fixture
/// Ed25519 key `keys/ed25519.pem`).
pub fn sign_in_secrets(client_secret: &str) -> String {
    let key = std::fs::read_to_string(fixture("keys/ed25519.pem")).expect("fixture key");
    format!(
        r#"---
apiVersion: v1
kind: Secret
metadata: {{ name: oidc-client, namespace: shop }}
stringData: {{ client-secret: "{client_secret}" }}
---
apiVersion: v1
kind: Secret
metadata: {{ name: session-key, namespace: shop }}
stringData:
  key.pem: |
{}"#,
        yaml_block(&key, 4)
    )
}

/// Manifests of the seed's setup: `api.mysite.com` with the seed's CORS, a service token and
/// a staff policy; `extra` is appended verbatim (more documents or spec overrides).
pub fn seed_manifests(jwks_source: &str, cors: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: api, namespace: shop }}
spec:
  domains: [api.mysite.com, "*.apps.mysite.com"]
  identity:
    issuers:
      - issuer: {ISSUER}
        audiences: [{AUDIENCE}]
{jwks_source}
  policies:
    - name: ci
      action: ServiceAuth
      include: [ {{ serviceToken: {{ name: ci-token }} }} ]
    - name: contractors-out
      action: Block
      include: [ {{ email: contractor@mysite.com }} ]
    - name: staff
      action: Allow
      include: [ {{ emailDomain: mysite.com }} ]
{cors}
---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessServiceToken
metadata: {{ name: ci-token, namespace: shop }}
spec: {{ duration: 8760h, secretName: ci-token-credentials }}
---
apiVersion: v1
kind: Secret
metadata: {{ name: ci-token-credentials, namespace: shop }}
stringData: {{ client-id: {TOKEN_ID}, client-secret: {TOKEN_SECRET} }}
{extra}"#
    )
}

/// A second application `shop/site` on `example.com` (staff allowed) with a forward route
/// `/api/` to `upstream` carrying service token `token`: a document to append to
/// `seed_manifests`.
pub fn site_with_forward_route(upstream: &str, token: &str) -> String {
    format!(
        r#"---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: site, namespace: shop }}
spec:
  domains: [example.com]
  identity:
    issuers:
      - issuer: {ISSUER}
        audiences: [{AUDIENCE}]
{jwks}
  policies:
    - name: staff
      action: Allow
      include: [ {{ emailDomain: mysite.com }} ]
  forwardRoutes:
    - pathPrefix: /api/
      upstream: {upstream}
      stripPrefix: true
      serviceTokenRef: {{ name: {token} }}
      stripSetCookie: true
"#,
        jwks = inline_jwks()
    )
}

/// The seed's CORS section.
pub const SEED_CORS: &str = r#"  cors:
    allowedOrigins: ["https://example.com", "https://*.example.org"]
    allowedMethods: [GET, POST]
    allowedHeaders: [office]
    allowCredentials: true
    maxAge: 600
"#;

/// A document to append to `seed_manifests`: `api.mysite.com/public` is public (Bypass).
pub const PUBLIC_BYPASS: &str = r#"---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: { name: public, namespace: shop }
spec:
  domains: [api.mysite.com/public]
  policies:
    - name: open
      action: Bypass
      include: [ { everyone: {} } ]
"#;

/// Inline JWKS lines for `seed_manifests`.
pub fn inline_jwks() -> String {
    format!("        jwks: |\n{}", yaml_block(&jwks_json(), 10))
}

/// Compiles manifests as the operator and the standalone sidecar do.
pub fn compile_manifests(yaml: &str) -> portcullis_crds::Snapshot {
    let mut res = portcullis_crds::manifests::Resources::default();
    res.add_yaml("test manifests", yaml).expect("test manifests parse");
    res.compile("default").expect("test manifests compile").snapshot
}
