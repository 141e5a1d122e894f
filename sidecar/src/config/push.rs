//! Receiving a config push from the operator (`PUT /config` on the admin port): size cap,
//! signature, target, order and age checked before the snapshot is rendered; a refused push
//! leaves the running config in force and says why (status, reason, metric, log).

use std::sync::Mutex;

use portcullis_crds::push::{self, PushError, PushTarget, Receiver, SignedPush, VerifyingKey};

use super::live::LiveError;
use super::store::ConfigStore;

/// Largest push body accepted (a snapshot of many applications is well under this).
pub const MAX_PUSH_BYTES: usize = 8 * 1024 * 1024;

/// Default replay window: a push older than this is refused even by a fresh sidecar.
pub const DEFAULT_MAX_AGE_SECS: i64 = 24 * 3600;

/// How this sidecar accepts pushes.
pub struct PushSettings {
    /// The operator's public keys (two during a key rotation).
    pub trusted: Vec<VerifyingKey>,
    /// This pod, from the downward API.
    pub target: PushTarget,
    pub max_age_secs: i64,
}

/// Accepts pushes and remembers the sequence it runs.
pub struct PushReceiver {
    settings: PushSettings,
    /// Sequence of the running pushed config (the admin path is rare: a mutex is fine here).
    running: Mutex<Option<u64>>,
}

/// Why a push was refused.
#[derive(Debug, thiserror::Error)]
pub enum PushRefusal {
    #[error("push body over {MAX_PUSH_BYTES} bytes")]
    TooLarge,
    #[error(transparent)]
    Push(#[from] PushError),
    #[error("the pushed config does not render: {0}")]
    Render(#[from] LiveError),
}

impl PushRefusal {
    pub fn reason(&self) -> &'static str {
        match self {
            PushRefusal::TooLarge => "too_large",
            PushRefusal::Push(e) => e.reason(),
            PushRefusal::Render(_) => "invalid_snapshot",
        }
    }

    /// HTTP status of the refusal: 400 unreadable, 401 not signed by a trusted key, 409 not
    /// for us or not newer, 413 too large, 422 signed but unusable.
    pub fn status(&self) -> u16 {
        match self {
            PushRefusal::TooLarge => 413,
            PushRefusal::Push(PushError::Malformed(_)) => 400,
            PushRefusal::Push(PushError::UnknownKey(_) | PushError::BadSignature) => 401,
            PushRefusal::Push(_) => 409,
            PushRefusal::Render(_) => 422,
        }
    }
}

/// An accepted push.
#[derive(Debug, PartialEq, Eq)]
pub struct Accepted {
    pub sequence: u64,
    pub version: String,
    /// The same config was already running (a re-push after an operator restart).
    pub unchanged: bool,
}

impl PushReceiver {
    pub fn new(settings: PushSettings) -> Self {
        Self { settings, running: Mutex::new(None) }
    }

    /// Verifies, checks and installs a push. `now` is Unix seconds.
    pub fn receive(&self, store: &ConfigStore, body: &[u8], now: i64) -> Result<Accepted, PushRefusal> {
        let result = self.receive_inner(store, body, now);
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        };
        store.metrics().config_pushes.with_label_values(&[label]).inc();
        result
    }

    fn receive_inner(&self, store: &ConfigStore, body: &[u8], now: i64) -> Result<Accepted, PushRefusal> {
        if body.len() > MAX_PUSH_BYTES {
            return Err(PushRefusal::TooLarge);
        }
        let signed: SignedPush =
            serde_json::from_slice(body).map_err(|e| PushError::Malformed(format!("envelope: {e}")))?;
        let pushed = push::verify(&signed, &self.settings.trusted)?;
        // Hold the lock across check and install so two concurrent pushes cannot both pass
        // the order check and install out of order.
        let mut running = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        push::check(
            &pushed,
            &Receiver {
                target: &self.settings.target,
                running: *running,
                now,
                max_age_secs: self.settings.max_age_secs,
            },
        )?;
        let version = pushed.snapshot.version.clone();
        if store.load().is_some_and(|live| live.version == version) && *running == Some(pushed.sequence) {
            return Ok(Accepted { sequence: pushed.sequence, version, unchanged: true });
        }
        let unchanged = store.load().is_some_and(|live| live.version == version);
        store.install(pushed.snapshot)?;
        *running = Some(pushed.sequence);
        Ok(Accepted { sequence: pushed.sequence, version, unchanged })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use portcullis_crds::push::{ConfigPush, SigningKey};
    use portcullis_crds::Snapshot;

    use super::*;
    use crate::jwks::JwksRegistry;
    use crate::metrics::Metrics;

    fn store() -> ConfigStore {
        let metrics = Arc::new(Metrics::new());
        let client = crate::outbound::client(Duration::from_secs(1)).expect("client");
        ConfigStore::new(Arc::new(JwksRegistry::new(client, &metrics)), metrics)
    }

    fn me() -> PushTarget {
        PushTarget { namespace: "shop".into(), pod: "api-0".into() }
    }

    fn body(key: &SigningKey, sequence: u64, pod: &str, issued_at: i64, snapshot: Snapshot) -> Vec<u8> {
        let push = ConfigPush {
            sequence,
            target: PushTarget { namespace: "shop".into(), pod: pod.into() },
            issued_at,
            snapshot,
        };
        serde_json::to_vec(&key.sign(&push)).unwrap()
    }

    #[tokio::test]
    async fn accepts_a_signed_push_and_refuses_what_it_must() {
        let (key, _) = SigningKey::generate().unwrap();
        let (rogue, _) = SigningKey::generate().unwrap();
        let rx = PushReceiver::new(PushSettings {
            trusted: vec![key.verifying_key()],
            target: me(),
            max_age_secs: DEFAULT_MAX_AGE_SECS,
        });
        let store = store();
        let now = 1_900_000_000;
        assert!(store.load().is_none());

        let ok = rx.receive(&store, &body(&key, 10, "api-0", now, Snapshot::empty()), now).unwrap();
        assert_eq!(ok.sequence, 10);
        assert!(!ok.unchanged);
        assert_eq!(store.load().unwrap().version, Snapshot::empty().version);

        let again = rx.receive(&store, &body(&key, 10, "api-0", now, Snapshot::empty()), now).unwrap();
        assert!(again.unchanged, "a re-push of the running config is idempotent");

        let cases: Vec<(Vec<u8>, &str, u16)> = vec![
            (b"{not json".to_vec(), "malformed", 400),
            (body(&rogue, 11, "api-0", now, Snapshot::empty()), "unknown_key", 401),
            (body(&key, 9, "api-0", now, Snapshot::empty()), "stale", 409),
            (body(&key, 11, "api-1", now, Snapshot::empty()), "wrong_target", 409),
            (body(&key, 11, "api-0", now - DEFAULT_MAX_AGE_SECS - 1, Snapshot::empty()), "expired", 409),
            (vec![b' '; MAX_PUSH_BYTES + 1], "too_large", 413),
        ];
        for (b, reason, status) in cases {
            let e = rx.receive(&store, &b, now).unwrap_err();
            assert_eq!((e.reason(), e.status()), (reason, status), "{e}");
        }
        // A forged envelope claiming the trusted key id.
        let mut forged: SignedPush =
            serde_json::from_slice(&body(&rogue, 12, "api-0", now, Snapshot::empty())).unwrap();
        forged.key_id = key.verifying_key().key_id().to_owned();
        let e = rx.receive(&store, &serde_json::to_vec(&forged).unwrap(), now).unwrap_err();
        assert_eq!(e.reason(), "bad_signature");

        let metrics = store.metrics().render();
        assert!(metrics.contains("portcullis_config_pushes_total{result=\"ok\"} 2"), "{metrics}");
        assert!(metrics.contains("portcullis_config_pushes_total{result=\"stale\"} 1"), "{metrics}");
    }
}
