//! Receiving a config push from the operator on the admin port: `GET /config/boot` tells the
//! operator which boot it is talking to and which key to seal to; `PUT /config` takes the push —
//! size cap, format, signature, boot, target, order and age checked before the snapshot is
//! opened and rendered. A refused push leaves the running config in force and says why
//! (status, reason, metric, log); the log and the answer never carry the config itself.

use std::sync::Mutex;

use portcullis_crds::push::{self, BootInfo, BootKey, PushError, PushTarget, Receiver, Refused, VerifyingKey};

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

/// Accepts pushes for this boot and remembers the sequence it runs.
pub struct PushReceiver {
    settings: PushSettings,
    /// Made at start, never stored: a restart is a new boot, and pushes made for the old one
    /// are refused (`stale_boot`) although the sequence memory below is gone.
    boot: BootKey,
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
    /// The refusal in the table shared with the operator (reason and HTTP status).
    pub fn reason(&self) -> Refused {
        match self {
            PushRefusal::TooLarge => Refused::TooLarge,
            PushRefusal::Push(e) => e.reason(),
            PushRefusal::Render(_) => Refused::InvalidSnapshot,
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
    /// A receiver for a new boot (fresh boot id and key pair).
    pub fn new(settings: PushSettings) -> Result<Self, push::KeyError> {
        Ok(Self { settings, boot: BootKey::generate()?, running: Mutex::new(None) })
    }

    /// What `GET /config/boot` answers.
    pub fn boot_info(&self) -> BootInfo {
        self.boot.info(&self.settings.target)
    }

    /// Verifies, checks, opens and installs a push. `now` is Unix seconds.
    pub fn receive(&self, store: &ConfigStore, body: &[u8], now: i64) -> Result<Accepted, PushRefusal> {
        let result = self.receive_inner(store, body, now);
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.reason().as_str(),
        };
        store.metrics().config_pushes.with_label_values(&[label]).inc();
        result
    }

    fn receive_inner(&self, store: &ConfigStore, body: &[u8], now: i64) -> Result<Accepted, PushRefusal> {
        if body.len() > MAX_PUSH_BYTES {
            return Err(PushRefusal::TooLarge);
        }
        let verified = push::verify(body, &self.settings.trusted)?;
        // Hold the lock across check and install so two concurrent pushes cannot both pass
        // the order check and install out of order.
        let mut running = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        push::check(
            &verified.header,
            &Receiver {
                target: &self.settings.target,
                boot_id: self.boot.id(),
                running: *running,
                now,
                max_age_secs: self.settings.max_age_secs,
            },
        )?;
        let snapshot = verified.open(&self.boot)?;
        let sequence = verified.header.sequence;
        let version = snapshot.version.clone();
        let unchanged = store.load().is_some_and(|live| live.version == version);
        if unchanged && *running == Some(sequence) {
            return Ok(Accepted { sequence, version, unchanged });
        }
        store.install(snapshot)?;
        *running = Some(sequence);
        Ok(Accepted { sequence, version, unchanged })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use portcullis_crds::push::{BootInfo, ConfigPush, SigningKey};
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

    fn body(key: &SigningKey, boot: &BootInfo, sequence: u64, pod: &str, issued_at: i64) -> Vec<u8> {
        let push = ConfigPush {
            sequence,
            target: PushTarget { namespace: "shop".into(), pod: pod.into() },
            issued_at,
            snapshot: Snapshot::empty(),
        };
        serde_json::to_vec(&key.seal(&push, boot).unwrap()).unwrap()
    }

    fn receiver(key: &SigningKey) -> PushReceiver {
        PushReceiver::new(PushSettings {
            trusted: vec![key.verifying_key()],
            target: me(),
            max_age_secs: DEFAULT_MAX_AGE_SECS,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn accepts_a_sealed_push_and_refuses_what_it_must() {
        let (key, _) = SigningKey::generate().unwrap();
        let (rogue, _) = SigningKey::generate().unwrap();
        let rx = receiver(&key);
        let boot = rx.boot_info();
        assert_eq!(boot.target, me());
        let store = store();
        let now = 1_900_000_000;
        assert!(store.load().is_none());

        let ok = rx.receive(&store, &body(&key, &boot, 10, "api-0", now), now).unwrap();
        assert_eq!(ok.sequence, 10);
        assert!(!ok.unchanged);
        assert_eq!(store.load().unwrap().version, Snapshot::empty().version);

        let again = rx.receive(&store, &body(&key, &boot, 10, "api-0", now), now).unwrap();
        assert!(again.unchanged, "a re-push of the running config is idempotent");

        // Another sidecar's boot (or this pod's previous one).
        let other = receiver(&key).boot_info();
        let cases: Vec<(Vec<u8>, Refused, u16)> = vec![
            (b"{not json".to_vec(), Refused::Malformed, 400),
            (br#"{"payload":"e30=","signature":"AA==","key_id":"00"}"#.to_vec(), Refused::UnsupportedFormat, 400),
            (body(&rogue, &boot, 11, "api-0", now), Refused::UnknownKey, 401),
            (body(&key, &other, 11, "api-0", now), Refused::StaleBoot, 409),
            (body(&key, &boot, 9, "api-0", now), Refused::Stale, 409),
            (body(&key, &boot, 11, "api-1", now), Refused::WrongTarget, 409),
            (body(&key, &boot, 11, "api-0", now - DEFAULT_MAX_AGE_SECS - 1), Refused::Expired, 409),
            (vec![b' '; MAX_PUSH_BYTES + 1], Refused::TooLarge, 413),
        ];
        for (b, reason, status) in cases {
            let e = rx.receive(&store, &b, now).unwrap_err();
            assert_eq!((e.reason(), e.reason().status()), (reason, status), "{e}");
        }
        let metrics = store.metrics().render();
        assert!(metrics.contains("portcullis_config_pushes_total{result=\"ok\"} 2"), "{metrics}");
        assert!(metrics.contains("portcullis_config_pushes_total{result=\"stale_boot\"} 1"), "{metrics}");
        assert_eq!(store.load().unwrap().version, Snapshot::empty().version, "the running config stayed");
    }
}
