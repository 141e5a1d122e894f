//! Arbitrary bytes as a JWT through the verifier (`JwtConfig::authenticate` with the test
//! JWKS, as the decide target's application trusts it) and as a JWKS document through the key
//! parser (`KeySet::from_jwks_json`, what a fetched JWKS goes through). Invariants: no panic;
//! a second verification of the same token (answered from the verified-token cache) agrees with
//! the first; the identity headers of a verified user render.

use portcullis_sidecar::decide::authn::jwt::{identity_header_values, KeySet};

/// A fixed "now" inside the validity of the seed tokens (which `examples/write-seeds.rs` mints).
pub const NOW: i64 = 1_900_000_000;

pub fn run(data: &[u8]) {
    if let Ok(set) = KeySet::from_jwks_json(data) {
        assert!(set.kids().count() <= set.len(), "every kid names a key");
    }
    let Ok(token) = std::str::from_utf8(data) else { return };
    let app = &crate::decide::harness().apps[0];
    let first = app.jwt.authenticate(token, &app.keys, NOW);
    let again = app.jwt.authenticate(token, &app.keys, NOW);
    match (&first, &again) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.email, b.email, "the cache answers what verification did");
            let _ = identity_header_values(token, a);
        }
        (Err(a), Err(b)) => assert_eq!(a.reason(), b.reason(), "a refusal is stable"),
        _ => panic!("verification and its cached answer disagree: {first:?} then {again:?}"),
    }
}
