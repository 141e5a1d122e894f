//! Test tokens: JWTs minted with the fixture keys, the seed's issuer, audience and service token.

use crate::*;

/// Mints a JWT signed with a fixture key (`rsa.pem`, `rsa2.pem`, `ec.pem`, `ed25519.pem`).
pub fn mint(key_file: &str, alg: jsonwebtoken::Algorithm, kid: Option<&str>, claims: serde_json::Value) -> String {
    let pem = std::fs::read(fixture(&format!("keys/{key_file}"))).expect("fixture key");
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 | jsonwebtoken::Algorithm::ES384 => jsonwebtoken::EncodingKey::from_ec_pem(&pem),
        jsonwebtoken::Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(&pem),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
    }
    .expect("fixture key parses");
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

/// Standard claims for the test issuer and audience.
pub fn claims(email: &str, exp_in: i64) -> serde_json::Value {
    serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "email": email, "sub": email,
        "iat": now(), "exp": now() + exp_in, "groups": ["staff"],
    })
}

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "aud-tag-1";
pub const TOKEN_ID: &str = "ci.access";
pub const TOKEN_SECRET: &str = "ci-secret-0123456789abcdef0123456789abcdef";

/// The fixture JWKS, for inline `jwks:` or a JWKS server.
pub fn jwks_json() -> String {
    std::fs::read_to_string(fixture("keys/jwks.json")).expect("fixture jwks")
}

/// The fixture JWKS without the key `kid`: a JWKS server that publishes the key later (an
/// unknown `kid` makes the sidecar fetch again).
pub fn jwks_json_without(kid: &str) -> String {
    let mut jwks: serde_json::Value = serde_json::from_str(&jwks_json()).expect("fixture jwks");
    if let Some(keys) = jwks["keys"].as_array_mut() {
        keys.retain(|k| k["kid"] != kid);
    }
    jwks.to_string()
}

/// Indents a JSON document for a YAML block scalar.
pub fn yaml_block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}
