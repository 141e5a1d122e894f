//! Service-token authentication: `CF-Access-Client-Id` and `CF-Access-Client-Secret` checked
//! against the digests of the application's AccessServiceTokens.
//!
//! Owns the live token index (built once per config) and the per-request check. It must not see
//! or keep a secret beyond hashing the one presented, read a clock (`now` is an argument), log,
//! or decide whether a token is *admitted*: that is a `serviceToken` / `anyValidServiceToken`
//! rule in the policies (api.md, "Service tokens").

use std::collections::HashMap;

use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_crds::snapshot::ServiceToken;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Service;
use crate::decide::observe::{Observer, Quiet};

/// The header carrying the token's client id (Cloudflare Access's name; reaches the app).
pub const CLIENT_ID_HEADER: HeaderName = HeaderName::from_static("cf-access-client-id");
/// The header carrying the token's secret (never reaches the app).
pub const CLIENT_SECRET_HEADER: HeaderName = HeaderName::from_static("cf-access-client-secret");

/// Why a service token was refused (always a 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceTokenFailure {
    /// Only one of the two headers was sent.
    Incomplete,
    /// A header was repeated, empty, or not visible ASCII.
    Malformed,
    /// No token of this application has this client id.
    UnknownClientId,
    /// The secret matches neither the current nor a previous secret.
    WrongSecret,
    /// The secret is the previous one, but the rotation grace period is over.
    RotatedOut,
    /// The right secret of a token past its expiry.
    Expired,
}

// === impl ServiceTokenFailure ===

impl ServiceTokenFailure {
    /// Stable label for metrics, logs and the JSON body.
    pub fn reason(&self) -> &'static str {
        match self {
            ServiceTokenFailure::Incomplete => "service_token_incomplete",
            ServiceTokenFailure::Malformed => "service_token_malformed",
            ServiceTokenFailure::UnknownClientId => "service_token_unknown",
            ServiceTokenFailure::WrongSecret => "service_token_wrong_secret",
            ServiceTokenFailure::RotatedOut => "service_token_rotated_out",
            ServiceTokenFailure::Expired => "service_token_expired",
        }
    }

    /// The check that failed, as `Observer::check_passed` names the ones that passed.
    pub fn check(&self) -> &'static str {
        match self {
            ServiceTokenFailure::Incomplete | ServiceTokenFailure::Malformed => "headers",
            ServiceTokenFailure::UnknownClientId => "client_id",
            ServiceTokenFailure::WrongSecret | ServiceTokenFailure::RotatedOut => "secret",
            ServiceTokenFailure::Expired => "expiry",
        }
    }
}

/// A snapshot's service tokens that cannot be used; the push or reload carrying them is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidServiceTokens {
    /// Names the token, never the digest.
    #[error("service token {token}: the secret digest is not 64 hex digits")]
    BadDigest { token: String },
    #[error("service tokens {first} and {second} share a client id")]
    DuplicateClientId { first: String, second: String },
}

/// One application's service tokens, indexed by client id, digests decoded.
#[derive(Clone, Debug, Default)]
pub struct ServiceTokens {
    by_client_id: HashMap<Box<str>, Live>,
}

/// One token as checked per request.
#[derive(Clone, Debug)]
struct Live {
    service: Service,
    secret_sha256: [u8; 32],
    expires_at: Option<i64>,
    /// The rotated-out digest and the end of its grace period (Unix seconds, exclusive).
    previous: Option<([u8; 32], i64)>,
}

// === impl ServiceTokens ===

impl ServiceTokens {
    /// Builds the index. The snapshot was validated by `compile`; this re-checks what the request
    /// path relies on, so a bad push fails here rather than silently never matching.
    pub fn new(tokens: &[ServiceToken]) -> Result<Self, InvalidServiceTokens> {
        let mut by_client_id: HashMap<Box<str>, Live> = HashMap::with_capacity(tokens.len());
        for t in tokens {
            let bad = || InvalidServiceTokens::BadDigest { token: t.name.clone() };
            let live = Live {
                service: Service { name: t.name.clone(), client_id: t.client_id.clone() },
                secret_sha256: decode_digest(&t.secret_sha256).ok_or_else(bad)?,
                expires_at: t.expires_at,
                previous: match &t.previous {
                    Some(p) => Some((decode_digest(&p.secret_sha256).ok_or_else(bad)?, p.valid_until)),
                    None => None,
                },
            };
            if let Some(first) = by_client_id.get(t.client_id.as_str()) {
                return Err(InvalidServiceTokens::DuplicateClientId {
                    first: first.service.name.clone(),
                    second: t.name.clone(),
                });
            }
            by_client_id.insert(t.client_id.as_str().into(), live);
        }
        Ok(Self { by_client_id })
    }

    pub fn is_empty(&self) -> bool {
        self.by_client_id.is_empty()
    }
}

fn decode_digest(hex_digest: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).ok()?;
    Some(out)
}

/// Checks the service-token headers of a request.
///
/// `None` when neither header is present: the request may still carry a JWT. Otherwise the
/// token's verdict: a client that sends one of the headers meant to use a token, so a broken
/// token is a 401 and never silently falls back to other credentials. The secret is compared as
/// SHA-256 digests in constant time (`subtle`), against the current secret and, while
/// `now < valid_until`, the previous one (api.md, AccessServiceToken rotation). Expiry is checked
/// only after the secret, so only the holder of a secret learns that its token expired.
pub fn authenticate(
    tokens: &ServiceTokens,
    headers: &HeaderMap,
    now: i64,
) -> Option<Result<Service, ServiceTokenFailure>> {
    authenticate_with(tokens, headers, now, &mut Quiet)
}

/// Whether `name` is a header [`authenticate`] reads (the id and secret pair). A request
/// naming neither presents no service token.
pub fn reads(name: &HeaderName) -> bool {
    name == CLIENT_ID_HEADER || name == CLIENT_SECRET_HEADER
}

/// [`authenticate`], reporting each check it passes to `obs`.
pub fn authenticate_with<O: Observer>(
    tokens: &ServiceTokens,
    headers: &HeaderMap,
    now: i64,
    obs: &mut O,
) -> Option<Result<Service, ServiceTokenFailure>> {
    let id = single(headers, &CLIENT_ID_HEADER);
    let secret = single(headers, &CLIENT_SECRET_HEADER);
    let (id, secret) = match (id, secret) {
        (Header::Absent, Header::Absent) => return None,
        (Header::Invalid, _) | (_, Header::Invalid) => return Some(Err(ServiceTokenFailure::Malformed)),
        (Header::One(id), Header::One(secret)) => (id, secret),
        _ => return Some(Err(ServiceTokenFailure::Incomplete)),
    };
    obs.check_passed("headers");
    Some(verify(tokens, id, secret, now, obs))
}

fn verify<O: Observer>(
    tokens: &ServiceTokens,
    id: &str,
    secret: &str,
    now: i64,
    obs: &mut O,
) -> Result<Service, ServiceTokenFailure> {
    let token = tokens.by_client_id.get(id).ok_or(ServiceTokenFailure::UnknownClientId)?;
    obs.check_passed("client_id");
    let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let current = bool::from(digest.ct_eq(&token.secret_sha256));
    if !current {
        let (previous_digest, valid_until) = token.previous.ok_or(ServiceTokenFailure::WrongSecret)?;
        if !bool::from(digest.ct_eq(&previous_digest)) {
            return Err(ServiceTokenFailure::WrongSecret);
        }
        if now >= valid_until {
            return Err(ServiceTokenFailure::RotatedOut);
        }
    }
    obs.check_passed("secret");
    // The token's own expiry covers both secrets: a grace period never outlives the token.
    if token.expires_at.is_some_and(|at| at <= now) {
        return Err(ServiceTokenFailure::Expired);
    }
    obs.check_passed("expiry");
    Ok(token.service.clone())
}

enum Header<'a> {
    Absent,
    One(&'a str),
    /// Repeated, empty or not visible ASCII.
    Invalid,
}

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Header<'a> {
    let mut values = headers.get_all(name).iter();
    let first = match (values.next(), values.next()) {
        (None, _) => return Header::Absent,
        (Some(_), Some(_)) => return Header::Invalid,
        (Some(first), None) => first,
    };
    match HeaderValue::to_str(first) {
        Ok(v) if !v.is_empty() => Header::One(v),
        _ => Header::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_crds::snapshot::PreviousSecret;

    const NOW: i64 = 1_800_000_000;

    /// The digest `compile` stores, computed by `compile`'s own function.
    fn sha(secret: &str) -> String {
        portcullis_crds::compile::sha256_hex(secret)
    }

    fn tokens() -> ServiceTokens {
        ServiceTokens::new(&[
            ServiceToken {
                name: "ci-token".into(),
                client_id: "ci.access".into(),
                secret_sha256: sha("new-secret"),
                expires_at: Some(NOW + 100),
                previous: Some(PreviousSecret { secret_sha256: sha("old-secret"), valid_until: NOW + 10 }),
            },
            ServiceToken {
                name: "expired".into(),
                client_id: "expired.access".into(),
                secret_sha256: sha("s"),
                expires_at: Some(NOW),
                previous: None,
            },
            ServiceToken {
                name: "forever".into(),
                client_id: "forever.access".into(),
                secret_sha256: sha("f"),
                expires_at: None,
                previous: None,
            },
        ])
        .unwrap()
    }

    #[test]
    fn verifies_tokens() {
        use ServiceTokenFailure::*;
        struct Case {
            desc: &'static str,
            id: &'static [&'static [u8]],
            secret: &'static [&'static [u8]],
            now: i64,
            want: Option<Result<&'static str, ServiceTokenFailure>>,
        }
        let cases = [
            Case { desc: "no headers", id: &[], secret: &[], now: NOW, want: None },
            Case {
                desc: "right secret",
                id: &[b"ci.access"],
                secret: &[b"new-secret"],
                now: NOW,
                want: Some(Ok("ci-token")),
            },
            Case {
                desc: "wrong secret",
                id: &[b"ci.access"],
                secret: &[b"guess"],
                now: NOW,
                want: Some(Err(WrongSecret)),
            },
            Case {
                desc: "previous within grace",
                id: &[b"ci.access"],
                secret: &[b"old-secret"],
                now: NOW + 9,
                want: Some(Ok("ci-token")),
            },
            Case {
                desc: "previous at end of grace",
                id: &[b"ci.access"],
                secret: &[b"old-secret"],
                now: NOW + 10,
                want: Some(Err(RotatedOut)),
            },
            Case {
                desc: "current after grace",
                id: &[b"ci.access"],
                secret: &[b"new-secret"],
                now: NOW + 50,
                want: Some(Ok("ci-token")),
            },
            Case {
                desc: "expired at expires_at",
                id: &[b"expired.access"],
                secret: &[b"s"],
                now: NOW,
                want: Some(Err(Expired)),
            },
            Case {
                desc: "valid before expires_at",
                id: &[b"expired.access"],
                secret: &[b"s"],
                now: NOW - 1,
                want: Some(Ok("expired")),
            },
            Case {
                desc: "expired, wrong secret says wrong",
                id: &[b"expired.access"],
                secret: &[b"x"],
                now: NOW + 1,
                want: Some(Err(WrongSecret)),
            },
            Case {
                desc: "token past expiry",
                id: &[b"ci.access"],
                secret: &[b"new-secret"],
                now: NOW + 100,
                want: Some(Err(Expired)),
            },
            Case {
                desc: "no expiry",
                id: &[b"forever.access"],
                secret: &[b"f"],
                now: i64::MAX,
                want: Some(Ok("forever")),
            },
            Case {
                desc: "unknown id",
                id: &[b"nobody.access"],
                secret: &[b"new-secret"],
                now: NOW,
                want: Some(Err(UnknownClientId)),
            },
            Case {
                desc: "id is case-sensitive",
                id: &[b"CI.access"],
                secret: &[b"new-secret"],
                now: NOW,
                want: Some(Err(UnknownClientId)),
            },
            Case { desc: "id only", id: &[b"ci.access"], secret: &[], now: NOW, want: Some(Err(Incomplete)) },
            Case { desc: "secret only", id: &[], secret: &[b"new-secret"], now: NOW, want: Some(Err(Incomplete)) },
            Case {
                desc: "duplicate id",
                id: &[b"ci.access", b"ci.access"],
                secret: &[b"new-secret"],
                now: NOW,
                want: Some(Err(Malformed)),
            },
            Case {
                desc: "duplicate secret",
                id: &[b"ci.access"],
                secret: &[b"new-secret", b"new-secret"],
                now: NOW,
                want: Some(Err(Malformed)),
            },
            Case {
                desc: "duplicate secret, no id",
                id: &[],
                secret: &[b"a", b"b"],
                now: NOW,
                want: Some(Err(Malformed)),
            },
            Case {
                desc: "non-UTF-8 secret",
                id: &[b"ci.access"],
                secret: &[b"caf\xc3\xa9"],
                now: NOW,
                want: Some(Err(Malformed)),
            },
            Case { desc: "empty secret", id: &[b"ci.access"], secret: &[b""], now: NOW, want: Some(Err(Malformed)) },
        ];
        let tokens = tokens();
        for c in cases {
            let mut h = HeaderMap::new();
            for v in c.id {
                h.append(CLIENT_ID_HEADER, HeaderValue::from_bytes(v).unwrap());
            }
            for v in c.secret {
                h.append(CLIENT_SECRET_HEADER, HeaderValue::from_bytes(v).unwrap());
            }
            let got = authenticate(&tokens, &h, c.now);
            let got = got.map(|r| r.map(|s| s.name));
            assert_eq!(got, c.want.map(|r| r.map(str::to_owned)), "{}", c.desc);
        }
    }

    #[test]
    fn header_names_are_case_insensitive_and_service_carries_client_id() {
        let mut h = HeaderMap::new();
        h.insert("CF-Access-Client-Id", HeaderValue::from_static("ci.access"));
        h.insert("CF-Access-Client-Secret", HeaderValue::from_static("new-secret"));
        let got = authenticate(&tokens(), &h, NOW);
        assert_eq!(got, Some(Ok(Service { name: "ci-token".into(), client_id: "ci.access".into() })));
    }

    #[test]
    fn refuses_bad_snapshots_without_leaking_digests() {
        let t = |name: &str, id: &str, digest: String| ServiceToken {
            name: name.into(),
            client_id: id.into(),
            secret_sha256: digest,
            expires_at: None,
            previous: None,
        };
        let err = ServiceTokens::new(&[t("a", "x", "abc".into())]).unwrap_err();
        assert_eq!(err, InvalidServiceTokens::BadDigest { token: "a".into() });
        assert!(!err.to_string().contains("abc"));
        let err = ServiceTokens::new(&[t("a", "x", sha("1")), t("b", "x", sha("2"))]).unwrap_err();
        assert_eq!(err, InvalidServiceTokens::DuplicateClientId { first: "a".into(), second: "b".into() });
        let mut bad_prev = t("p", "y", sha("1"));
        bad_prev.previous = Some(PreviousSecret { secret_sha256: "zz".into(), valid_until: 0 });
        assert!(ServiceTokens::new(&[bad_prev]).is_err());
        assert!(ServiceTokens::new(&[]).unwrap().is_empty());
    }

    #[test]
    fn reasons_are_distinct_snake_case() {
        use ServiceTokenFailure::*;
        let all = [Incomplete, Malformed, UnknownClientId, WrongSecret, RotatedOut, Expired];
        let mut r: Vec<_> = all.iter().map(|f| f.reason()).collect();
        assert!(r
            .iter()
            .all(|s| s.starts_with("service_token_") && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        r.sort();
        r.dedup();
        assert_eq!(r.len(), all.len());
    }
}
