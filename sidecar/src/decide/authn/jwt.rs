//! JWT verification (skeleton; the JWT work fills it in).

/// Why a JWT was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtFailure {
    Malformed,
}

impl JwtFailure {
    pub fn reason(&self) -> &'static str {
        "jwt_malformed"
    }
}
