//! Service-token credentials: generating them from the OS CSPRNG and holding the secret half in a
//! type that never prints. Must not log, format or hash secrets anywhere but where they belong.

use std::fmt;

use crate::Error;

/// Random bytes in a client id: 128 bits, as unguessable as a UUID, rendered as 32 hex digits.
const CLIENT_ID_BYTES: usize = 16;
/// Random bytes in a client secret: 256 bits (api.md: "at least 256 bits of randomness").
const CLIENT_SECRET_BYTES: usize = 32;
/// Suffix of every client id, as Cloudflare's service tokens have (`<hex>.access`).
pub const CLIENT_ID_SUFFIX: &str = ".access";

/// A client secret. `Debug` redacts and there is no `Display`, so it cannot slip into a log
/// line, an error, an event or a status by formatting.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

// === impl ClientSecret ===

impl ClientSecret {
    /// Wraps a secret read from the Secret that holds it.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself, for writing it into its Secret and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// A new client id: `<32 hex digits>.access`.
pub fn generate_client_id() -> Result<String, Error> {
    Ok(format!("{}{CLIENT_ID_SUFFIX}", hex::encode(random::<CLIENT_ID_BYTES>()?)))
}

/// A new client secret: 64 lowercase hex digits (URL- and header-safe), 256 bits of entropy.
pub fn generate_client_secret() -> Result<ClientSecret, Error> {
    Ok(ClientSecret(hex::encode(random::<CLIENT_SECRET_BYTES>()?)))
}

/// Bytes straight from the operating system's CSPRNG (getrandom(2) on Linux).
fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(Error::Entropy)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn client_ids_are_128_random_bits_in_hex_with_the_access_suffix() {
        let id = generate_client_id().unwrap();
        let hex = id.strip_suffix(".access").expect("suffix");
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
    }

    #[test]
    fn client_secrets_carry_256_bits_in_url_safe_text() {
        let s = generate_client_secret().unwrap();
        assert_eq!(s.expose().len(), 64, "32 bytes as hex");
        assert!(s.expose().bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn generated_values_do_not_repeat() {
        // A fixed or badly seeded source would repeat within a few draws.
        let secrets: HashSet<String> = (0..64).map(|_| generate_client_secret().unwrap().0).collect();
        assert_eq!(secrets.len(), 64);
        let ids: HashSet<String> = (0..64).map(|_| generate_client_id().unwrap()).collect();
        assert_eq!(ids.len(), 64);
    }

    #[test]
    fn generated_secrets_use_the_whole_alphabet() {
        // 64 draws of 64 hex digits: every digit shows up unless the source is biased or constant.
        let seen: HashSet<u8> =
            (0..64).flat_map(|_| generate_client_secret().unwrap().expose().as_bytes().to_vec()).collect();
        assert_eq!(seen.len(), 16, "{seen:?}");
    }

    #[test]
    fn debug_redacts() {
        let s = ClientSecret::new("hunter2-hunter2".into());
        assert_eq!(format!("{s:?}"), "ClientSecret(<redacted>)");
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
    }
}
