//! Arbitrary YAML/JSON through the manifests loader and `compile()`, then rendered by the
//! sidecar's config loader (`Live::build`). Invariants: no panic, and whatever `compile()`
//! accepts renders — the sidecar never gets a config from compile that it then refuses (the
//! operator pushes exactly what compile produced).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use portcullis_crds::manifests::Resources;
use portcullis_sidecar::config::live::Live;
use portcullis_sidecar::identity::session::SessionKey;
use portcullis_sidecar::jwks::JwksRegistry;
use portcullis_sidecar::metrics::Metrics;

struct Loader {
    jwks: Arc<JwksRegistry>,
    metrics: Metrics,
    session_key: Arc<SessionKey>,
}

fn loader() -> &'static Loader {
    static L: OnceLock<Loader> = OnceLock::new();
    L.get_or_init(|| {
        let metrics = Metrics::new();
        // Built outside a tokio runtime: a `jwksUri` issuer gets a store that never fetches
        // (its tokens would be refused), which is all rendering needs.
        let client = portcullis_sidecar::outbound::client(Duration::from_secs(1)).expect("outbound client builds");
        let jwks = Arc::new(JwksRegistry::new(client, &metrics));
        let session_key = Arc::new(SessionKey::generate().expect("session key"));
        Loader { jwks, metrics, session_key }
    })
}

pub fn run(data: &[u8]) {
    // Manifests are text; the loader reads files as UTF-8 and refuses anything else.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut resources = Resources::default();
    if resources.add_yaml("fuzz.yaml", text).is_err() {
        return;
    }
    let compiled = match resources.compile("default") {
        Ok(c) => c,
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a refused compile names at least one problem");
            return;
        }
    };
    let l = loader();
    let version = compiled.snapshot.version.clone();
    if let Err(e) = Live::build(compiled.snapshot, &l.jwks, &l.metrics, Some(l.session_key.clone())) {
        panic!("compile() accepted a config ({version}) the sidecar cannot render: {e}");
    }
}
