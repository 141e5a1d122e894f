//! Mints a test JWT signed with a PEM key, to try the sidecar by hand and to drive benchmarks.
//! Test keys live in tests/fixtures/keys (public, test-only: never trust them anywhere).
//!
//! `cargo run --example mint-jwt -- KEY.pem ALG KID ISSUER AUDIENCE EMAIL [TTL_SECONDS]`
//! e.g. `cargo run --example mint-jwt -- tests/fixtures/keys/rsa.pem RS256 rsa-1 https://issuer.example.test quickstart alice@mysite.com`

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [key, alg, kid, iss, aud, email, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: mint-jwt KEY.pem ALG KID ISSUER AUDIENCE EMAIL [TTL_SECONDS]");
    };
    let ttl: i64 = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(3600);
    let alg: Algorithm = alg.parse().map_err(|_| anyhow::anyhow!("unknown algorithm {alg}"))?;
    let pem = std::fs::read(key)?;
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem)?,
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem)?,
        _ => EncodingKey::from_rsa_pem(&pem)?,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let claims = serde_json::json!({
        "iss": iss, "aud": aud, "email": email, "sub": email, "iat": now, "exp": now + ttl,
    });
    let mut header = Header::new(alg);
    header.kid = Some(kid.clone());
    println!("{}", encode(&header, &claims, &key)?);
    Ok(())
}
