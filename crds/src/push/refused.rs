//! The one table of push refusals: the reason a sidecar answers (`{"error": "<reason>"}`), its
//! HTTP status, and the label both sides count it under. The sidecar answers with it, the
//! operator parses it back for its metrics, events and retry decisions; neither keeps a string
//! table of its own.

/// Why a sidecar refused a push. The wire name is [`Refused::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refused {
    /// This sidecar takes no pushes (standalone `--manifests`, or no `--push-public-key`).
    Disabled,
    /// The body is over the sidecar's cap.
    TooLarge,
    /// Not a push envelope (not JSON, fields missing, bad base64).
    Malformed,
    /// A push envelope of another format, e.g. the unsealed one of operators before sealing.
    UnsupportedFormat,
    /// Signed by a key id the sidecar does not trust.
    UnknownKey,
    /// The signature does not verify (forged or altered in transit).
    BadSignature,
    /// Made for an earlier boot of this sidecar (or another sidecar's): re-read the boot info.
    StaleBoot,
    /// Addressed to another pod.
    WrongTarget,
    /// Older than the config the sidecar runs.
    Stale,
    /// Issued longer ago than the sidecar's `--push-max-age`.
    Expired,
    /// Signed and addressed to this boot, yet the sealed config does not open with its key.
    Unsealable,
    /// The config opened but does not render (the sidecar re-validates what it is given).
    InvalidSnapshot,
}

impl Refused {
    pub const ALL: [Refused; 12] = [
        Refused::Disabled,
        Refused::TooLarge,
        Refused::Malformed,
        Refused::UnsupportedFormat,
        Refused::UnknownKey,
        Refused::BadSignature,
        Refused::StaleBoot,
        Refused::WrongTarget,
        Refused::Stale,
        Refused::Expired,
        Refused::Unsealable,
        Refused::InvalidSnapshot,
    ];

    /// The wire reason, metric label and event reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Disabled => "push_disabled",
            Refused::TooLarge => "too_large",
            Refused::Malformed => "malformed",
            Refused::UnsupportedFormat => "unsupported_format",
            Refused::UnknownKey => "unknown_key",
            Refused::BadSignature => "bad_signature",
            Refused::StaleBoot => "stale_boot",
            Refused::WrongTarget => "wrong_target",
            Refused::Stale => "stale",
            Refused::Expired => "expired",
            Refused::Unsealable => "unsealable",
            Refused::InvalidSnapshot => "invalid_snapshot",
        }
    }

    /// The HTTP status: 400 unreadable, 401 not signed by a trusted key, 404 no pushes here,
    /// 409 not for this sidecar's boot, pod or order, 413 too large, 422 signed but unusable.
    pub fn status(self) -> u16 {
        match self {
            Refused::Malformed | Refused::UnsupportedFormat | Refused::Unsealable => 400,
            Refused::UnknownKey | Refused::BadSignature => 401,
            Refused::Disabled => 404,
            Refused::StaleBoot | Refused::WrongTarget | Refused::Stale | Refused::Expired => 409,
            Refused::TooLarge => 413,
            Refused::InvalidSnapshot => 422,
        }
    }

    /// The reason a sidecar answered; `None` for one this build does not know (a newer sidecar).
    pub fn parse(reason: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == reason)
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_parses_back_and_names_are_unique() {
        let mut names: Vec<&str> = Refused::ALL.iter().map(|r| r.as_str()).collect();
        for r in Refused::ALL {
            assert_eq!(Refused::parse(r.as_str()), Some(r));
            assert!((400..500).contains(&r.status()), "{r}: a refusal is the client's push, never a 5xx");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Refused::ALL.len());
        assert_eq!(Refused::parse("something a later sidecar says"), None);
    }
}
