//! AccessServiceTokens + their Secrets → `ServiceToken`s (digests only) and forward credentials.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::duration::parse_duration_secs;
use super::error::{CompileError, CompileWarning, Diagnostics};
use super::secrets::SecretIndex;
use crate::snapshot::{PreviousSecret, SecretString, ServiceToken};
use crate::v1alpha1::{secret_keys, AccessServiceToken};

/// A token ready for applications: what sidecars verify against, and the secret itself for
/// forward routes that must send it.
#[derive(Clone, Debug)]
pub struct CompiledToken {
    pub token: ServiceToken,
    pub client_secret: SecretString,
}

/// Every service token that compiled, by `(namespace, name)`.
#[derive(Default)]
pub struct TokenIndex {
    by_name: BTreeMap<(String, String), CompiledToken>,
    /// Tokens that exist but could not be compiled (their Secret is missing, say): a reference
    /// to one is a warning that says why, not "does not exist".
    unusable: BTreeMap<(String, String), String>,
}

/// The outcome of indexing tokens: errors are problems in a token's own spec.
pub struct TokenIndexBuild {
    pub index: TokenIndex,
    pub errors: Vec<CompileError>,
    pub warnings: Vec<CompileWarning>,
}

impl TokenIndex {
    pub fn build(tokens: &[AccessServiceToken], secrets: &SecretIndex<'_>, default_namespace: &str) -> TokenIndexBuild {
        let mut index = TokenIndex::default();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for t in tokens {
            let ns = t.metadata.namespace.clone().unwrap_or_else(|| default_namespace.to_owned());
            let name = t.metadata.name.clone().unwrap_or_default();
            let mut d = Diagnostics::new("AccessServiceToken", format_args!("{ns}/{name}"));
            match compile_token(t, &ns, &name, secrets, &mut d) {
                Ok(Some(c)) if !d.has_errors() => {
                    // Two tokens with one client id would make the id ambiguous at the sidecar.
                    let clash = index
                        .in_namespace(&ns)
                        .find(|other| other.token.client_id == c.token.client_id)
                        .map(|other| other.token.name.clone());
                    match clash {
                        Some(other) => d.error(
                            "spec.secretName",
                            Some(&t.spec.secret_name),
                            format!("client-id is already used by AccessServiceToken {ns}/{other}; client ids must be unique"),
                        ),
                        None => {
                            index.by_name.insert((ns, name), c);
                        }
                    }
                }
                Ok(_) => {}
                Err(why) => {
                    index.unusable.insert((ns, name), why);
                }
            }
            errors.append(&mut d.errors);
            warnings.append(&mut d.warnings);
        }
        TokenIndexBuild { index, errors, warnings }
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<&CompiledToken> {
        self.by_name.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Why a token of that name cannot be used (missing, or its Secret is incomplete).
    pub fn why_unusable(&self, namespace: &str, name: &str) -> String {
        match self.unusable.get(&(namespace.to_owned(), name.to_owned())) {
            Some(why) => why.clone(),
            None => format!("no AccessServiceToken {namespace}/{name} exists"),
        }
    }

    /// All usable tokens of a namespace, by name.
    pub fn in_namespace<'s>(&'s self, namespace: &'s str) -> impl Iterator<Item = &'s CompiledToken> + 's {
        self.by_name.iter().filter(move |((ns, _), _)| ns == namespace).map(|(_, t)| t)
    }
}

/// `Err(why)` when the token is fine but not usable yet (its Secret is not there).
fn compile_token(
    t: &AccessServiceToken,
    ns: &str,
    name: &str,
    secrets: &SecretIndex<'_>,
    d: &mut Diagnostics,
) -> Result<Option<CompiledToken>, String> {
    if t.spec.secret_name.is_empty() {
        d.error("spec.secretName", None, "must name the Secret holding client-id and client-secret");
        return Ok(None);
    }
    let expires_at = token_expiry(t, d);
    let secret_name = &t.spec.secret_name;
    if !secrets.contains(ns, secret_name) {
        let why = format!("its Secret {ns}/{secret_name} does not exist (yet)");
        d.warn("spec.secretName", format!("token is not usable: {why}"));
        return Err(format!("AccessServiceToken {ns}/{name} is not usable: {why}"));
    }
    let Some((client_id, client_secret)) = token_credentials(t, ns, secrets, d) else {
        return Ok(None);
    };
    let previous = previous_secret(ns, secret_name, secrets, d);
    Ok(Some(CompiledToken {
        token: ServiceToken {
            name: name.to_owned(),
            client_id,
            secret_sha256: sha256_hex(&client_secret),
            expires_at,
            previous,
        },
        client_secret: SecretString::new(client_secret),
    }))
}

/// When the token expires: `status.expiresAt`, else its creation plus `spec.duration`, else
/// never (with a warning saying why).
fn token_expiry(t: &AccessServiceToken, d: &mut Diagnostics) -> Option<i64> {
    let duration = match t.spec.duration.as_deref().map(parse_duration_secs) {
        Some(Err(e)) => {
            d.error("spec.duration", t.spec.duration.as_deref(), e);
            None
        }
        Some(Ok(s)) => Some(s),
        None => None,
    };
    if let Some(Err(e)) = t.spec.rotation_grace_period.as_deref().map(parse_duration_secs) {
        d.error("spec.rotationGracePeriod", t.spec.rotation_grace_period.as_deref(), e);
    }
    match t.status.as_ref().and_then(|s| s.expires_at.as_deref()) {
        Some(at) => match parse_rfc3339(at) {
            Ok(secs) => Some(secs),
            Err(e) => {
                d.error("status.expiresAt", Some(at), e);
                None
            }
        },
        None => match (t.metadata.creation_timestamp.as_ref(), duration) {
            (Some(created), Some(secs)) => Some(created.0.as_second().saturating_add(secs as i64)),
            (None, Some(_)) => {
                d.warn(
                    "spec.duration",
                    "there is no creationTimestamp to count the duration from (a manifest file), so this token \
                     does not expire; set status.expiresAt to give it an end",
                );
                None
            }
            _ => {
                d.warn("spec.duration", "no duration and no status.expiresAt: this token does not expire");
                None
            }
        },
    }
}

/// The client id and secret from the token's Secret (the id may come from the status), both
/// non-empty visible ASCII (they travel in HTTP headers).
fn token_credentials(
    t: &AccessServiceToken,
    ns: &str,
    secrets: &SecretIndex<'_>,
    d: &mut Diagnostics,
) -> Option<(String, String)> {
    let secret_name = &t.spec.secret_name;
    let client_id = t
        .status
        .as_ref()
        .and_then(|s| s.client_id.clone())
        .or_else(|| secrets.get_str(ns, secret_name, secret_keys::CLIENT_ID));
    let client_secret = secrets.get_str(ns, secret_name, secret_keys::CLIENT_SECRET);
    let (Some(client_id), Some(client_secret)) = (client_id, client_secret) else {
        d.error(
            "spec.secretName",
            Some(secret_name),
            format!(
                "Secret must hold non-empty keys {:?} and {:?}",
                secret_keys::CLIENT_ID,
                secret_keys::CLIENT_SECRET
            ),
        );
        return None;
    };
    if client_id.is_empty() || client_secret.is_empty() {
        d.error("spec.secretName", Some(secret_name), "client-id and client-secret must not be empty");
        return None;
    }
    if client_id.bytes().any(|b| !(0x21..0x7f).contains(&b))
        || client_secret.bytes().any(|b| !(0x21..0x7f).contains(&b))
    {
        d.error(
            "spec.secretName",
            Some(secret_name),
            "client-id and client-secret must be visible ASCII (they travel in HTTP headers)",
        );
        return None;
    }
    Some((client_id, client_secret))
}

/// The previous secret during a rotation's grace period, with the instant it stops working.
fn previous_secret(
    ns: &str,
    secret_name: &str,
    secrets: &SecretIndex<'_>,
    d: &mut Diagnostics,
) -> Option<PreviousSecret> {
    match (
        secrets.get_str(ns, secret_name, secret_keys::PREVIOUS_CLIENT_SECRET),
        secrets.get_str(ns, secret_name, secret_keys::PREVIOUS_CLIENT_SECRET_VALID_UNTIL),
    ) {
        (Some(prev), Some(until)) if !prev.is_empty() => match parse_rfc3339(&until) {
            Ok(valid_until) => Some(PreviousSecret { secret_sha256: sha256_hex(&prev), valid_until }),
            Err(e) => {
                d.error(
                    format!("Secret {secret_name}: {}", secret_keys::PREVIOUS_CLIENT_SECRET_VALID_UNTIL),
                    Some(&until),
                    e,
                );
                None
            }
        },
        (Some(prev), None) if !prev.is_empty() => {
            d.warn(
                format!("Secret {secret_name}: {}", secret_keys::PREVIOUS_CLIENT_SECRET),
                format!(
                    "ignored: no {} key says until when it is valid",
                    secret_keys::PREVIOUS_CLIENT_SECRET_VALID_UNTIL
                ),
            );
            None
        }
        _ => None,
    }
}

/// Hex SHA-256 of a client secret: what sidecars compare against.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn parse_rfc3339(s: &str) -> Result<i64, String> {
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|_| "not an RFC 3339 timestamp (e.g. 2027-11-24T00:00:00Z)".to_owned())
}
