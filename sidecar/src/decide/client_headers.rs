//! Which client headers never reach the app: every spelling of a name the sidecar owns
//! (api.md, "What the app receives is what was decided").
//!
//! CGI, WSGI, PHP and Rack expose a header as `HTTP_` + its name upper-cased with `-` → `_`, so
//! `Cf_Access_Authenticated_User_Email` and `Cf-Access-Authenticated-User-Email` are the same
//! variable to them: a client could claim an identity by spelling the header with underscores.
//! A name is read case-insensitively with `_` as `-`; one that is protected is removed on every
//! path, whatever `--headers-with-underscores` says of the others (Envoy's
//! `headers_with_underscores_action`, nginx's `underscores_in_headers`).
//!
//! Owns the protected-name list and the underscore policy. Must not edit the request (the glue
//! removes what this names), authenticate or route.

use http::header::{HeaderMap, HeaderName};

/// Names the sidecar sets, or that would let a client override what was decided. The first
/// four are the identity headers (api.md); `X-Forwarded-*` are set by the sidecar; `Forwarded`
/// would contradict them; `X-Original-URL` / `X-Rewrite-URL` make some frameworks (Symfony,
/// IIS URL Rewrite, CVE-2018-14773) serve another path than the one routed.
pub static PROTECTED_NAMES: [HeaderName; 10] = [
    HeaderName::from_static("cf-access-jwt-assertion"),
    HeaderName::from_static("cf-access-authenticated-user-email"),
    HeaderName::from_static("cf-access-client-id"),
    HeaderName::from_static("cf-access-client-secret"),
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
];

/// `--headers-with-underscores`: what other names with an underscore get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnderscoreHeaders {
    /// Forwarded as sent (nginx's and hyper's default); protected spellings are still removed.
    #[default]
    Allow,
    /// Removed before forwarding.
    Drop,
    /// The request is refused: `400 underscore_header`.
    Reject,
}

/// A request refused for a header name (`--headers-with-underscores Reject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnderscoreRefused;

// === impl UnderscoreRefused ===

impl UnderscoreRefused {
    pub fn reason(&self) -> &'static str {
        "underscore_header"
    }
}

/// The client headers to remove besides the canonical spellings of [`PROTECTED_NAMES`] (which the glue
/// strips by name): every underscore spelling of a protected name, or of the application's own
/// JWT header `configured`, and under [`UnderscoreHeaders::Drop`] every name with an underscore.
/// Allocates only when a name has an underscore.
pub fn underscore_names(
    headers: &HeaderMap,
    policy: UnderscoreHeaders,
    configured: &HeaderName,
) -> Result<Vec<HeaderName>, UnderscoreRefused> {
    let mut drop = Vec::new();
    for name in headers.keys() {
        let s = name.as_str();
        if !has_underscore(s.as_bytes()) {
            continue;
        }
        if policy == UnderscoreHeaders::Reject {
            return Err(UnderscoreRefused);
        }
        if policy == UnderscoreHeaders::Drop || is_protected_spelling(s, configured.as_str()) {
            drop.push(name.clone());
        }
    }
    Ok(drop)
}

/// Whether `name` holds a `_`, eight bytes at a time (every request's every name is scanned; a
/// byte loop cost ~6 instructions a byte, and memchr's set-up is too much for 4–40 bytes).
fn has_underscore(name: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const UNDERSCORES: u64 = ONES * b'_' as u64;
    let mut words = name.chunks_exact(8);
    for word in &mut words {
        let mut w = [0; 8];
        w.copy_from_slice(word);
        // A byte of `x` is zero exactly where the name has `_`; the expression below is non-zero
        // exactly when some byte of `x` is zero (no false positive for "any").
        let x = u64::from_le_bytes(w) ^ UNDERSCORES;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            return true;
        }
    }
    words.remainder().contains(&b'_')
}

/// Whether `name` (lower-case, as `HeaderMap` keeps names) reads as a protected name with `_`
/// taken as `-`.
fn is_protected_spelling(name: &str, configured: &str) -> bool {
    let same = |want: &str| {
        want.len() == name.len() && want.bytes().zip(name.bytes()).all(|(w, n)| w == n || (w == b'-' && n == b'_'))
    };
    PROTECTED_NAMES.iter().any(|p| same(p.as_str())) || same(configured)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn map(names: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for n in names {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_static("x"));
        }
        h
    }

    const JWT: HeaderName = HeaderName::from_static("x-my-jwt");

    #[test]
    fn protected_spellings_are_dropped_under_every_policy() {
        let h = map(&[
            "Cf_Access_Authenticated_User_Email",
            "cf_access-jwt_assertion",
            "X_Forwarded_Host",
            "x_my_jwt",
            "my_app",
        ]);
        for policy in [UnderscoreHeaders::Allow, UnderscoreHeaders::Drop] {
            let got = underscore_names(&h, policy, &JWT).unwrap();
            for n in ["cf_access_authenticated_user_email", "cf_access-jwt_assertion", "x_forwarded_host", "x_my_jwt"] {
                assert!(got.iter().any(|g| g == n), "{policy:?} keeps {n}");
            }
            assert_eq!(got.iter().any(|g| g == "my_app"), policy == UnderscoreHeaders::Drop);
        }
        assert_eq!(underscore_names(&h, UnderscoreHeaders::Reject, &JWT), Err(UnderscoreRefused));
    }

    #[test]
    fn names_without_underscores_are_left_to_the_glue() {
        let h = map(&["cf-access-client-secret", "x-app", "accept"]);
        for policy in [UnderscoreHeaders::Allow, UnderscoreHeaders::Drop, UnderscoreHeaders::Reject] {
            assert_eq!(underscore_names(&h, policy, &JWT), Ok(vec![]));
        }
    }

    proptest! {
        #[test]
        fn word_scan_finds_underscores_as_a_byte_scan_does(name in prop::collection::vec(prop_oneof![Just(b'_'), Just(b'-'), Just(0x5e_u8), Just(0xdf), any::<u8>()], 0..40)) {
            prop_assert_eq!(has_underscore(&name), name.contains(&b'_'));
        }

        #[test]
        fn every_underscore_spelling_of_a_protected_name_is_caught(i in 0..PROTECTED_NAMES.len(), mask in any::<u64>(), upper in any::<u64>()) {
            // Replace a random subset of the dashes with underscores and change case at random.
            let spelled: String = PROTECTED_NAMES[i].as_str().bytes().enumerate().map(|(k, b)| {
                let b = if b == b'-' && mask >> (k % 64) & 1 == 1 { b'_' } else { b };
                if upper >> (k % 64) & 1 == 1 { b.to_ascii_uppercase() as char } else { b as char }
            }).collect();
            let h = map(&[&spelled]);
            let got = underscore_names(&h, UnderscoreHeaders::Allow, &JWT).unwrap();
            let has_underscore = spelled.contains('_');
            prop_assert_eq!(got.len(), usize::from(has_underscore), "{}", spelled);
        }
    }
}
