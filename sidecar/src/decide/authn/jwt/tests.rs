//! Table tests for every refusal of api.md's JWT rules, the successes, the token sources and
//! the cache; a property that random input never authenticates.

use std::sync::Arc;

use base64::Engine;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::EncodingKey;
use portcullis_crds::snapshot::{Algorithm, Identity, Issuer, JwksSource};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

const RSA: &[u8] = include_bytes!("../../../../../tests/fixtures/keys/rsa.pem");
const RSA2: &[u8] = include_bytes!("../../../../../tests/fixtures/keys/rsa2.pem");
const RSA_PUB: &[u8] = include_bytes!("../../../../../tests/fixtures/keys/rsa.pub.pem");
const EC: &[u8] = include_bytes!("../../../../../tests/fixtures/keys/ec.pem");
const ED: &[u8] = include_bytes!("../../../../../tests/fixtures/keys/ed25519.pem");
const JWKS: &str = include_str!("../../../../../tests/fixtures/keys/jwks.json");
const JWKS_RSA2: &str = include_str!("../../../../../tests/fixtures/keys/jwks-rsa2.json");

const ISS: &str = "https://idp.test";
const AUD: &str = "aud-1";
const NOW: i64 = 1_700_000_000;

fn identity(algorithms: &[Algorithm]) -> Identity {
    Identity {
        cookie_name: "CF_Authorization".into(),
        header_name: "cf-access-jwt-assertion".into(),
        issuers: vec![
            Issuer {
                issuer: "https://other.test".into(),
                jwks: JwksSource::Inline(JWKS.into()),
                audiences: vec!["other".into()],
                algorithms: Algorithm::DEFAULT.to_vec(),
                clock_skew_secs: 30,
            },
            Issuer {
                issuer: ISS.into(),
                jwks: JwksSource::Inline(JWKS.into()),
                audiences: vec!["aud-0".into(), AUD.into()],
                algorithms: algorithms.to_vec(),
                clock_skew_secs: 30,
            },
        ],
    }
}

fn config() -> JwtConfig {
    JwtConfig::new(&identity(&Algorithm::DEFAULT)).expect("valid identity")
}

fn key_set(json: &str) -> Arc<KeySet> {
    Arc::new(KeySet::from_jwks_json(json.as_bytes()).expect("fixture JWKS parses"))
}

/// Issuer 0 has no keys loaded; issuer 1 (ours) has `json`'s.
fn keys_of(json: &str) -> Vec<Option<Arc<KeySet>>> {
    vec![None, Some(key_set(json))]
}

fn keys() -> Vec<Option<Arc<KeySet>>> {
    keys_of(JWKS)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "exp": NOW + 600, "iat": NOW, "sub": "u1", "email": "Ann@Example.com", "groups": ["staff"]})
}

/// A compact JWS over exactly these header and claims JSON values.
fn sign(header: &Value, claims: &Value, key: &EncodingKey, alg: jsonwebtoken::Algorithm) -> String {
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("fixture key signs");
    format!("{input}.{sig}")
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA).expect("fixture")
}

fn rs256(claims: &Value) -> String {
    sign(&json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}), claims, &rsa_key(), jsonwebtoken::Algorithm::RS256)
}

fn with(claims: Value, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = claims;
    if let Value::Object(m) = &mut c {
        f(m);
    }
    c
}

#[test]
fn accepts_rs256_es256_eddsa() {
    let cfg = config();
    let tokens = [
        ("RS256", rs256(&claims())),
        (
            "ES256",
            sign(
                &json!({"alg": "ES256", "kid": "ec-1"}),
                &claims(),
                &EncodingKey::from_ec_pem(EC).expect("fixture"),
                jsonwebtoken::Algorithm::ES256,
            ),
        ),
        (
            "EdDSA",
            sign(
                &json!({"alg": "EdDSA", "kid": "ed-1"}),
                &claims(),
                &EncodingKey::from_ed_pem(ED).expect("fixture"),
                jsonwebtoken::Algorithm::EdDSA,
            ),
        ),
        // Without kid: the one key of the type its alg implies.
        ("RS256 no kid", sign(&json!({"alg": "RS256"}), &claims(), &rsa_key(), jsonwebtoken::Algorithm::RS256)),
        (
            "ES256 no kid",
            sign(
                &json!({"alg": "ES256"}),
                &claims(),
                &EncodingKey::from_ec_pem(EC).expect("fixture"),
                jsonwebtoken::Algorithm::ES256,
            ),
        ),
        ("aud array", rs256(&with(claims(), |c| drop(c.insert("aud".into(), json!(["x", AUD])))))),
        ("expired within skew", rs256(&with(claims(), |c| drop(c.insert("exp".into(), json!(NOW - 29)))))),
        ("nbf within skew", rs256(&with(claims(), |c| drop(c.insert("nbf".into(), json!(NOW + 29)))))),
        ("fractional exp", rs256(&with(claims(), |c| drop(c.insert("exp".into(), json!(NOW as f64 + 0.5)))))),
        ("no email", rs256(&with(claims(), |c| drop(c.remove("email"))))),
    ];
    for (desc, token) in tokens {
        let user = cfg.authenticate(&token, &keys(), NOW).unwrap_or_else(|e| panic!("{desc}: {e:?}"));
        assert_eq!(user.issuer, ISS, "{desc}");
        assert!(user.claims.get("sub").is_some(), "{desc}");
        if desc == "no email" {
            assert_eq!(user.email, None);
        } else {
            assert_eq!(user.email.as_deref(), Some("Ann@Example.com"), "{desc}");
        }
    }
    let user = cfg.authenticate(&rs256(&claims()), &keys(), NOW).expect("valid");
    assert_eq!(user.expires_at, NOW + 600);
    assert_eq!(user.claims.get("groups"), Some(&json!(["staff"])));
}

#[test]
fn refuses_every_bad_token() {
    struct Case {
        desc: &'static str,
        token: String,
        cfg: Option<JwtConfig>,
        keys: Option<Vec<Option<Arc<KeySet>>>>,
        want: JwtFailure,
    }
    fn case(desc: &'static str, token: String, want: JwtFailure) -> Case {
        Case { desc, token, cfg: None, keys: None, want }
    }
    let rsa2 = EncodingKey::from_rsa_pem(RSA2).expect("fixture");
    let ec = EncodingKey::from_ec_pem(EC).expect("fixture");
    let set = |c: Value, k: &str, v: Value| with(c, |m| drop(m.insert(k.into(), v)));
    let good = rs256(&claims());
    let (good_head, good_rest) = good.split_once('.').expect("three parts");
    let two_rsa = {
        let mut a: Value = serde_json::from_str(JWKS).expect("fixture");
        let b: Value = serde_json::from_str(JWKS_RSA2).expect("fixture");
        if let (Some(ka), Some(kb)) = (a["keys"].as_array_mut(), b["keys"].as_array()) {
            ka.extend(kb.iter().cloned());
        }
        a.to_string()
    };
    let cases = vec![
        case(
            "alg none",
            format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(claims().to_string().as_bytes())),
            JwtFailure::AlgorithmNotAllowed,
        ),
        case(
            "HS256 signed with the RSA public key (PEM bytes)",
            sign(
                &json!({"alg": "HS256", "kid": "rsa-1"}),
                &claims(),
                &EncodingKey::from_secret(RSA_PUB),
                jsonwebtoken::Algorithm::HS256,
            ),
            JwtFailure::AlgorithmNotAllowed,
        ),
        case(
            "HS256 without kid",
            sign(
                &json!({"alg": "HS256"}),
                &claims(),
                &EncodingKey::from_secret(RSA_PUB),
                jsonwebtoken::Algorithm::HS256,
            ),
            JwtFailure::AlgorithmNotAllowed,
        ),
        case(
            "signed by the attacker's key under our kid",
            sign(&json!({"alg": "RS256", "kid": "rsa-1"}), &claims(), &rsa2, jsonwebtoken::Algorithm::RS256),
            JwtFailure::BadSignature,
        ),
        case(
            "attacker key offered in the header (jwk, jku) is ignored",
            sign(
                &json!({"alg": "RS256", "jku": "https://evil.test/jwks", "jwk": serde_json::from_str::<Value>(JWKS_RSA2).expect("fixture")["keys"][0]}),
                &claims(),
                &rsa2,
                jsonwebtoken::Algorithm::RS256,
            ),
            JwtFailure::BadSignature,
        ),
        case(
            "attacker kid with jku",
            sign(
                &json!({"alg": "RS256", "kid": "rsa-2", "jku": "https://evil.test/jwks"}),
                &claims(),
                &rsa2,
                jsonwebtoken::Algorithm::RS256,
            ),
            JwtFailure::UnknownKey { issuer: 1 },
        ),
        case("wrong iss", rs256(&set(claims(), "iss", json!("https://evil.test"))), JwtFailure::UnknownIssuer),
        case(
            "iss differs by a slash",
            rs256(&set(claims(), "iss", json!("https://idp.test/"))),
            JwtFailure::UnknownIssuer,
        ),
        case("no iss", rs256(&with(claims(), |c| drop(c.remove("iss")))), JwtFailure::UnknownIssuer),
        case("iss not a string", rs256(&set(claims(), "iss", json!(1))), JwtFailure::UnknownIssuer),
        case(
            "issuer without keys loaded",
            rs256(&set(claims(), "iss", json!("https://other.test"))),
            JwtFailure::NoKeys { issuer: 0 },
        ),
        case("wrong aud", rs256(&set(claims(), "aud", json!("other"))), JwtFailure::WrongAudience),
        case("aud of another issuer", rs256(&set(claims(), "aud", json!(["other"]))), JwtFailure::WrongAudience),
        case("no aud", rs256(&with(claims(), |c| drop(c.remove("aud")))), JwtFailure::WrongAudience),
        case("expired", rs256(&set(claims(), "exp", json!(NOW - 31))), JwtFailure::Expired),
        case("expired at the skew edge", rs256(&set(claims(), "exp", json!(NOW - 30))), JwtFailure::Expired),
        case("nbf in the future", rs256(&set(claims(), "nbf", json!(NOW + 31))), JwtFailure::NotYetValid),
        case("missing exp", rs256(&with(claims(), |c| drop(c.remove("exp")))), JwtFailure::MissingExp),
        case("exp as string", rs256(&set(claims(), "exp", json!("1800000000"))), JwtFailure::InvalidClaims),
        case("nbf as string", rs256(&set(claims(), "nbf", json!("0"))), JwtFailure::InvalidClaims),
        case(
            "unknown kid",
            sign(&json!({"alg": "RS256", "kid": "rsa-9"}), &claims(), &rsa_key(), jsonwebtoken::Algorithm::RS256),
            JwtFailure::UnknownKey { issuer: 1 },
        ),
        case(
            "kid of another key type",
            sign(&json!({"alg": "ES256", "kid": "rsa-1"}), &claims(), &ec, jsonwebtoken::Algorithm::ES256),
            JwtFailure::KeyMismatch,
        ),
        Case {
            desc: "no kid, two keys of the type",
            token: sign(&json!({"alg": "RS256"}), &claims(), &rsa_key(), jsonwebtoken::Algorithm::RS256),
            cfg: None,
            keys: Some(keys_of(&two_rsa)),
            want: JwtFailure::AmbiguousKey,
        },
        Case {
            desc: "no kid, no key of the type",
            token: sign(&json!({"alg": "RS256"}), &claims(), &rsa_key(), jsonwebtoken::Algorithm::RS256),
            cfg: None,
            keys: Some(vec![
                None,
                Some(key_set(
                    &serde_json::json!({"keys": [serde_json::from_str::<Value>(JWKS).expect("fixture")["keys"][1]]})
                        .to_string(),
                )),
            ]),
            want: JwtFailure::UnknownKey { issuer: 1 },
        },
        case("oversized", rs256(&set(claims(), "pad", json!("x".repeat(MAX_TOKEN_BYTES)))), JwtFailure::TooLarge),
        case(
            "unknown crit",
            sign(
                &json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp-ext"], "exp-ext": 1}),
                &claims(),
                &rsa_key(),
                jsonwebtoken::Algorithm::RS256,
            ),
            JwtFailure::UnknownCrit,
        ),
        case(
            "empty crit",
            sign(
                &json!({"alg": "RS256", "kid": "rsa-1", "crit": []}),
                &claims(),
                &rsa_key(),
                jsonwebtoken::Algorithm::RS256,
            ),
            JwtFailure::UnknownCrit,
        ),
        case("header not base64", format!("!!!.{good_rest}"), JwtFailure::Malformed),
        case("header padded", format!("{good_head}=.{good_rest}"), JwtFailure::Malformed),
        case("header not JSON", format!("{}.{good_rest}", b64(b"alg")), JwtFailure::Malformed),
        case("header without alg", format!("{}.{good_rest}", b64(br#"{"kid":"rsa-1"}"#)), JwtFailure::Malformed),
        case(
            "header with alg twice",
            format!("{}.{good_rest}", b64(br#"{"alg":"RS256","alg":"none"}"#)),
            JwtFailure::Malformed,
        ),
        case(
            "payload not JSON",
            sign(
                &json!({"alg": "RS256", "kid": "rsa-1"}),
                &json!("just a string"),
                &rsa_key(),
                jsonwebtoken::Algorithm::RS256,
            ),
            JwtFailure::Malformed,
        ),
        case("two parts", good.rsplit_once('.').map(|(a, _)| a.to_owned()).unwrap_or_default(), JwtFailure::Malformed),
        case("five parts (JWE)", format!("{good}.a.b"), JwtFailure::Malformed),
        case("empty", String::new(), JwtFailure::Malformed),
        case(
            "signature not base64",
            format!("{}.***", good.rsplit_once('.').map(|(a, _)| a).unwrap_or_default()),
            JwtFailure::Malformed,
        ),
        case(
            "signature stripped",
            format!("{}.", good.rsplit_once('.').map(|(a, _)| a).unwrap_or_default()),
            JwtFailure::BadSignature,
        ),
        case(
            "claims swapped after signing",
            {
                let parts: Vec<&str> = good.split('.').collect();
                let forged = b64(set(claims(), "email", json!("admin@example.com")).to_string().as_bytes());
                format!("{}.{}.{}", parts[0], forged, parts[2])
            },
            JwtFailure::BadSignature,
        ),
        Case {
            desc: "ES256 when only RS256 is allowed",
            token: sign(&json!({"alg": "ES256", "kid": "ec-1"}), &claims(), &ec, jsonwebtoken::Algorithm::ES256),
            cfg: Some(JwtConfig::new(&identity(&[Algorithm::RS256])).expect("valid")),
            keys: None,
            want: JwtFailure::AlgorithmNotAllowed,
        },
        case(
            "unknown alg name",
            sign(&json!({"alg": "RS1024", "kid": "rsa-1"}), &claims(), &rsa_key(), jsonwebtoken::Algorithm::RS256),
            JwtFailure::AlgorithmNotAllowed,
        ),
        case(
            "RS256 signature presented as PS256",
            sign(&json!({"alg": "PS256", "kid": "rsa-1"}), &claims(), &rsa_key(), jsonwebtoken::Algorithm::RS256),
            JwtFailure::AlgorithmNotAllowed,
        ),
    ];
    let default_cfg = config();
    for c in cases {
        let cfg = c.cfg.as_ref().unwrap_or(&default_cfg);
        let keys = c.keys.unwrap_or_else(keys);
        assert_eq!(cfg.authenticate(&c.token, &keys, NOW), Err(c.want), "{}", c.desc);
    }
}

#[test]
fn a_kid_restricted_to_one_alg_refuses_another() {
    // rsa-1's JWK says alg RS256; a PS256 token naming it must not be verified with it.
    let cfg = JwtConfig::new(&identity(&[Algorithm::RS256, Algorithm::PS256])).expect("valid");
    let token = sign(&json!({"alg": "PS256", "kid": "rsa-1"}), &claims(), &rsa_key(), jsonwebtoken::Algorithm::PS256);
    assert_eq!(cfg.authenticate(&token, &keys(), NOW), Err(JwtFailure::KeyMismatch));
}

#[test]
fn failure_reasons_are_snake_case_labels() {
    let all = [
        JwtFailure::TooLarge,
        JwtFailure::Malformed,
        JwtFailure::UnknownCrit,
        JwtFailure::AlgorithmNotAllowed,
        JwtFailure::UnknownIssuer,
        JwtFailure::NoKeys { issuer: 0 },
        JwtFailure::UnknownKey { issuer: 0 },
        JwtFailure::KeyMismatch,
        JwtFailure::AmbiguousKey,
        JwtFailure::BadSignature,
        JwtFailure::WrongAudience,
        JwtFailure::MissingExp,
        JwtFailure::Expired,
        JwtFailure::NotYetValid,
        JwtFailure::InvalidClaims,
    ];
    let mut seen = std::collections::BTreeSet::new();
    for f in all {
        let r = f.reason();
        assert!(r.starts_with("jwt_") && r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{r}");
        assert!(seen.insert(r), "duplicate {r}");
    }
    assert_eq!(JwtFailure::UnknownKey { issuer: 3 }.refresh_issuer(), Some(3));
    assert_eq!(JwtFailure::NoKeys { issuer: 3 }.refresh_issuer(), None);
}

#[test]
fn cache_hit_then_expiry() {
    let cfg = config();
    let token = rs256(&with(claims(), |c| drop(c.insert("exp".into(), json!(NOW + 60)))));
    let first = cfg.authenticate(&token, &keys(), NOW).expect("valid");
    // A hit returns the very same identity (no new verification).
    let second = cfg.authenticate(&token, &keys(), NOW + 10).expect("cached");
    assert!(Arc::ptr_eq(&first, &second));
    // Fresh KeySets with the same keys have the same generation: still a hit.
    let third = cfg.authenticate(&token, &keys(), NOW + 20).expect("cached");
    assert!(Arc::ptr_eq(&first, &third));
    // The cached entry honours exp and the skew.
    assert!(cfg.authenticate(&token, &keys(), NOW + 60 + 29).is_ok());
    assert_eq!(cfg.authenticate(&token, &keys(), NOW + 60 + 30), Err(JwtFailure::Expired));
    assert_eq!(cfg.authenticate(&token, &keys(), NOW + 3600), Err(JwtFailure::Expired));
}

#[test]
fn cache_is_invalidated_when_keys_change() {
    let cfg = config();
    let token = rs256(&claims());
    let first = cfg.authenticate(&token, &keys(), NOW).expect("valid");
    // Rotated: rsa-1 still published beside rsa-2 → new generation, verified again, accepted.
    let mut both: Value = serde_json::from_str(JWKS).expect("fixture");
    let extra: Value = serde_json::from_str(JWKS_RSA2).expect("fixture");
    if let (Some(a), Some(b)) = (both["keys"].as_array_mut(), extra["keys"].as_array()) {
        a.extend(b.iter().cloned());
    }
    let rotated = keys_of(&both.to_string());
    assert_ne!(rotated[1].as_ref().map(|k| k.generation()), keys()[1].as_ref().map(|k| k.generation()));
    let again = cfg.authenticate(&token, &rotated, NOW).expect("still valid");
    assert!(!Arc::ptr_eq(&first, &again));
    // rsa-1 withdrawn: the cached verification no longer counts.
    assert_eq!(cfg.authenticate(&token, &keys_of(JWKS_RSA2), NOW), Err(JwtFailure::UnknownKey { issuer: 1 }));
    // Keys gone entirely.
    assert_eq!(cfg.authenticate(&token, &vec![None, None], NOW), Err(JwtFailure::NoKeys { issuer: 1 }));
}

#[test]
fn the_cache_never_serves_a_refused_token() {
    let cfg = config();
    let expired = rs256(&with(claims(), |c| drop(c.insert("exp".into(), json!(NOW - 100)))));
    assert_eq!(cfg.authenticate(&expired, &keys(), NOW), Err(JwtFailure::Expired));
    assert_eq!(cfg.authenticate(&expired, &keys(), NOW), Err(JwtFailure::Expired));
    // Verified once before nbf is impossible, but a hit still re-checks nbf.
    let later = rs256(&with(claims(), |c| drop(c.insert("nbf".into(), json!(NOW)))));
    assert!(cfg.authenticate(&later, &keys(), NOW).is_ok());
    assert_eq!(cfg.authenticate(&later, &keys(), NOW - 100), Err(JwtFailure::NotYetValid));
}

#[test]
fn key_sets_skip_what_they_cannot_use() {
    let jwks = json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "RSA", "kid": "small", "n": b64(&[0xff; 128]), "e": "AQAB"},
        {"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"},
        {"kty": "EC", "crv": "P-256", "kid": "short", "x": "AA", "y": "AA"},
        {"kty": "OKP", "crv": "X25519", "kid": "x", "x": b64(&[1; 32])},
        {"kty": "RSA", "alg": "RSA-OAEP", "kid": "oaep", "n": b64(&[0xff; 256]), "e": "AQAB"},
        {"kty": "RSA", "alg": "ES256", "kid": "confused", "n": b64(&[0xff; 256]), "e": "AQAB"},
        {"kty": "RSA", "key_ops": ["encrypt"], "kid": "ops", "n": b64(&[0xff; 256]), "e": "AQAB"},
        "not an object",
        {"kty": "OKP", "crv": "Ed25519", "kid": "ok", "x": b64(&[1; 32])},
    ]});
    let set = KeySet::from_jwks_json(jwks.to_string().as_bytes()).expect("one usable key");
    assert_eq!(set.len(), 1);
    assert_eq!(set.skipped(), 10);
    assert_eq!(set.kids().collect::<Vec<_>>(), ["ok"]);

    assert!(matches!(KeySet::from_jwks_json(b"{}"), Err(JwksError::NotJwks(_))));
    assert!(matches!(KeySet::from_jwks_json(b"[1]"), Err(JwksError::NotJwks(_))));
    assert_eq!(
        KeySet::from_jwks_json(br#"{"keys":[{"kty":"oct"}]}"#).err(),
        Some(JwksError::NoUsableKeys { skipped: 1 })
    );
    let full = KeySet::from_jwks_json(JWKS.as_bytes()).expect("fixture");
    assert_eq!(full.kids().collect::<Vec<_>>(), ["rsa-1", "ec-1", "ed-1"]);
    assert_eq!(full.generation(), KeySet::from_jwks_json(JWKS.as_bytes()).expect("fixture").generation());
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("test header"),
            HeaderValue::from_str(v).expect("test value"),
        );
    }
    h
}

#[test]
fn token_sources_in_order_without_fallback() {
    let cfg = config();
    type Want = Option<(TokenSource, Result<&'static [u8], JwtFailure>)>;
    type Case = (&'static str, Vec<(&'static str, &'static str)>, Want);
    let cases: Vec<Case> = vec![
        ("nothing", vec![("accept", "*/*")], None),
        ("header", vec![("Cf-Access-Jwt-Assertion", " h.t.x ")], Some((TokenSource::Header, Ok(&b"h.t.x"[..])))),
        (
            "header wins over cookie and bearer",
            vec![
                ("cookie", "CF_Authorization=c.t.x"),
                ("authorization", "Bearer b.t.x"),
                ("cf-access-jwt-assertion", "h.t.x"),
            ],
            Some((TokenSource::Header, Ok(&b"h.t.x"[..]))),
        ),
        (
            "empty header does not fall back to the cookie",
            vec![("cf-access-jwt-assertion", ""), ("cookie", "CF_Authorization=c.t.x")],
            Some((TokenSource::Header, Err(JwtFailure::Malformed))),
        ),
        (
            "two assertion headers",
            vec![("cf-access-jwt-assertion", "a.b.c"), ("cf-access-jwt-assertion", "d.e.f")],
            Some((TokenSource::Header, Err(JwtFailure::Malformed))),
        ),
        ("bearer", vec![("authorization", "Bearer b.t.x")], Some((TokenSource::Bearer, Ok(&b"b.t.x"[..])))),
        ("bearer any case", vec![("authorization", "bEaReR   b.t.x")], Some((TokenSource::Bearer, Ok(&b"b.t.x"[..])))),
        (
            "bearer wins over cookie",
            vec![("cookie", "CF_Authorization=c.t.x"), ("authorization", "Bearer b.t.x")],
            Some((TokenSource::Bearer, Ok(&b"b.t.x"[..]))),
        ),
        (
            "bearer without token",
            vec![("authorization", "Bearer")],
            Some((TokenSource::Bearer, Err(JwtFailure::Malformed))),
        ),
        ("bearer blank", vec![("authorization", "Bearer   ")], Some((TokenSource::Bearer, Err(JwtFailure::Malformed)))),
        (
            "basic is not a jwt source",
            vec![("authorization", "Basic dXNlcjpwYXNz"), ("cookie", "CF_Authorization=c.t.x")],
            Some((TokenSource::Cookie, Ok(&b"c.t.x"[..]))),
        ),
        ("bearerish scheme", vec![("authorization", "Bearerx a.b.c")], None),
        ("cookie", vec![("cookie", "CF_Authorization=c.t.x")], Some((TokenSource::Cookie, Ok(&b"c.t.x"[..])))),
        (
            "cookie among several",
            vec![("cookie", "a=1; CF_Authorization_old=zzz;CF_Authorization=c.t.x; b=2")],
            Some((TokenSource::Cookie, Ok(&b"c.t.x"[..]))),
        ),
        (
            "cookie in a second Cookie header",
            vec![("cookie", "a=1"), ("cookie", "b=2; CF_Authorization=c.t.x")],
            Some((TokenSource::Cookie, Ok(&b"c.t.x"[..]))),
        ),
        (
            "quoted cookie",
            vec![("cookie", "CF_Authorization=\"c.t.x\"")],
            Some((TokenSource::Cookie, Ok(&b"c.t.x"[..]))),
        ),
        ("cookie names are case-sensitive", vec![("cookie", "cf_authorization=c.t.x")], None),
        (
            "empty cookie",
            vec![("cookie", "CF_Authorization=")],
            Some((TokenSource::Cookie, Err(JwtFailure::Malformed))),
        ),
        (
            "first of two cookies",
            vec![("cookie", "CF_Authorization=one.t.x; CF_Authorization=two.t.x")],
            Some((TokenSource::Cookie, Ok(&b"one.t.x"[..]))),
        ),
    ];
    for (desc, pairs, want) in cases {
        let h = headers(&pairs);
        assert_eq!(find_token(&cfg, &h), want, "{desc}");
    }
    // Non-ASCII bytes in the header are that source's token, not skipped: verification
    // refuses them as malformed (before the size check, and whatever the keys).
    let mut h = HeaderMap::new();
    h.insert("cf-access-jwt-assertion", HeaderValue::from_bytes(b"a.b.\xffc").expect("obs-text is a valid value"));
    assert_eq!(find_token(&cfg, &h), Some((TokenSource::Header, Ok(&b"a.b.\xffc"[..]))));
    assert_eq!(cfg.authenticate(b"a.b.\xffc", &keys(), NOW), Err(JwtFailure::Malformed));
    let long = vec![0x7f; MAX_TOKEN_BYTES + 1];
    assert_eq!(cfg.authenticate(&long[..], &keys(), NOW), Err(JwtFailure::Malformed));
    let long = vec![b'a'; MAX_TOKEN_BYTES + 1];
    assert_eq!(cfg.authenticate(&long[..], &keys(), NOW), Err(JwtFailure::TooLarge));
}

#[test]
fn custom_header_and_cookie_names() {
    let mut id = identity(&Algorithm::DEFAULT);
    id.header_name = "x-jwt".into();
    id.cookie_name = "session".into();
    let cfg = JwtConfig::new(&id).expect("valid");
    assert_eq!(find_token(&cfg, &headers(&[("X-JWT", "a.b.c")])), Some((TokenSource::Header, Ok(&b"a.b.c"[..]))));
    assert_eq!(find_token(&cfg, &headers(&[("cf-access-jwt-assertion", "a.b.c")])), None);
    assert_eq!(
        find_token(&cfg, &headers(&[("cookie", "session=a.b.c")])),
        Some((TokenSource::Cookie, Ok(&b"a.b.c"[..])))
    );
}

#[test]
fn an_end_to_end_request() {
    let cfg = config();
    let token = rs256(&claims());
    let h = headers(&[("cookie", &format!("theme=dark; CF_Authorization={token}"))]);
    let Some((TokenSource::Cookie, Ok(found))) = find_token(&cfg, &h) else { panic!("cookie token expected") };
    assert_eq!(found, token.as_bytes());
    let user = cfg.authenticate(found, &keys(), NOW).expect("valid");
    let (assertion, email) = identity_header_values(&token, &user);
    assert_eq!(assertion.as_ref().map(|v| v.as_bytes()), Some(token.as_bytes()));
    assert_eq!(email, Some(HeaderValue::from_static("Ann@Example.com")));
    let nl = User { email: Some("a@b.c\r\nx: y".into()), ..(*user).clone() };
    assert_eq!(identity_header_values(&token, &nl).1, None);
}

#[test]
fn invalid_configs_are_refused() {
    let mut id = identity(&Algorithm::DEFAULT);
    id.header_name = "bad header".into();
    assert!(matches!(JwtConfig::new(&id), Err(JwtConfigError::HeaderName(_))));
    let mut id = identity(&Algorithm::DEFAULT);
    id.cookie_name = "a;b".into();
    assert!(matches!(JwtConfig::new(&id), Err(JwtConfigError::CookieName(_))));
    let mut id = identity(&Algorithm::DEFAULT);
    id.issuers[1].audiences.clear();
    assert!(matches!(JwtConfig::new(&id), Err(JwtConfigError::NoAudience(_))));
    let id = identity(&[]);
    assert!(matches!(JwtConfig::new(&id), Err(JwtConfigError::NoAlgorithm(_))));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_authenticate(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let cfg = config();
        let token = String::from_utf8_lossy(&bytes);
        prop_assert!(cfg.authenticate(&*token, &keys(), NOW).is_err());
    }

    #[test]
    fn random_jws_shapes_never_authenticate(
        parts in proptest::collection::vec("[A-Za-z0-9_-]{0,64}", 3..=3),
    ) {
        let cfg = config();
        let token = parts.join(".");
        prop_assert!(cfg.authenticate(&token, &keys(), NOW).is_err());
    }

    #[test]
    fn any_one_character_change_is_refused(index in any::<prop::sample::Index>(), c in "[A-Za-z0-9_.-]") {
        let cfg = config();
        let token = rs256(&claims());
        let i = index.index(token.len());
        let mut mutated = token.clone();
        mutated.replace_range(i..=i, &c);
        prop_assume!(mutated != token);
        // The original is verified first, so it is cached: a change outside the hashed tail
        // lands in its bucket and must still be refused (the key is compared whole).
        prop_assert!(cfg.authenticate(&token, &keys(), NOW).is_ok());
        prop_assert!(cfg.authenticate(&mutated, &keys(), NOW).is_err());
    }
}
