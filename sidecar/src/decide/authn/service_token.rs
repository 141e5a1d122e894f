//! Service-token verification (skeleton; the policy work fills it in).

/// Why a service token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceTokenFailure {
    UnknownClientId,
}

impl ServiceTokenFailure {
    pub fn reason(&self) -> &'static str {
        "service_token_unknown"
    }
}
