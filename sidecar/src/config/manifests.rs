//! Standalone mode: read AccessApplication / AccessServiceToken / Secret YAML from a file or a
//! directory (what `kubectl apply -f` takes), compile it with the operator's `compile()`, and
//! watch it. A bad edit keeps the last good config and says which file, resource and field.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis_crds::compile::{CompileErrors, Compiled};
use portcullis_crds::manifests::{ManifestError, Resources};
use sha2::{Digest, Sha256};

use super::live::Live;
use super::store::ConfigStore;

/// Why the manifests could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: no .yaml, .yml or .json files found")]
    NoFiles { path: PathBuf },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Compile errors, each with the file its resource was read from (when known).
    #[error("{errors}")]
    Compile { errors: CompileErrors, files: Vec<Option<String>> },
    #[error("{0}")]
    Render(#[from] super::live::LiveError),
}

impl LoadError {
    /// Label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            LoadError::Io { .. } => "io",
            LoadError::NoFiles { .. } => "no_files",
            LoadError::Manifest(_) => "invalid_manifest",
            LoadError::Compile { .. } => "invalid_spec",
            LoadError::Render(_) => "invalid_snapshot",
        }
    }
}

/// The files' contents, read once: the digest tells whether anything changed.
pub struct Sources {
    files: Vec<(PathBuf, String)>,
    pub digest: [u8; 32],
}

/// Reads a manifest file, or every `.yaml`/`.yml`/`.json` file of a directory (not recursive,
/// hidden files skipped — Kubernetes ConfigMap mounts keep `..data` symlink farms there),
/// sorted by name so the result does not depend on directory order.
pub fn read_sources(path: &Path) -> Result<Sources, LoadError> {
    let io = |source| LoadError::Io { path: path.to_owned(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mut paths = Vec::new();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io)? {
            let p = entry.map_err(io)?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
            if !name.starts_with('.') && matches!(ext, "yaml" | "yml" | "json") && p.is_file() {
                paths.push(p);
            }
        }
        paths.sort();
        if paths.is_empty() {
            return Err(LoadError::NoFiles { path: path.to_owned() });
        }
    } else {
        paths.push(path.to_owned());
    }
    let mut hasher = Sha256::new();
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|source| LoadError::Io { path: p.clone(), source })?;
        hasher.update(p.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
        files.push((p, text));
    }
    Ok(Sources { files, digest: hasher.finalize().into() })
}

/// Parses and compiles what was read.
pub fn compile_sources(sources: &Sources, default_namespace: &str) -> Result<Compiled, LoadError> {
    let mut resources = Resources::default();
    for (path, text) in &sources.files {
        resources.add_yaml(&path.display().to_string(), text)?;
    }
    resources.compile(default_namespace).map_err(|errors| {
        let files =
            errors.0.iter().map(|e| resources.source_of(&e.resource, default_namespace).map(str::to_owned)).collect();
        LoadError::Compile { errors, files }
    })
}

/// Compiles what was read and installs it, logging compile warnings; counts and stamps a
/// successful load. The caller counts and reports failures (once, or deduplicated).
fn apply(store: &ConfigStore, sources: &Sources, default_namespace: &str) -> Result<Arc<Live>, LoadError> {
    let compiled = compile_sources(sources, default_namespace)?;
    for w in &compiled.warnings {
        tracing::warn!(warning = %w, "configuration warning");
    }
    let live = store.install(compiled.snapshot)?;
    let metrics = store.metrics();
    metrics.config_reloads.with_label_values(&["ok"]).inc();
    metrics.config_last_success.set(jiff::Timestamp::now().as_second() as f64);
    Ok(live)
}

/// Loads once and installs; logs warnings. Returns the error for the caller to report.
pub fn load_into(store: &ConfigStore, path: &Path, default_namespace: &str) -> Result<[u8; 32], LoadError> {
    let result = read_sources(path).and_then(|s| apply(store, &s, default_namespace).map(|live| (s.digest, live)));
    match result {
        Ok((digest, live)) => {
            tracing::info!(version = %live.version, applications = live.apps.len(), path = %path.display(), "configuration loaded");
            Ok(digest)
        }
        Err(e) => {
            store.metrics().config_reloads.with_label_values(&["error"]).inc();
            Err(e)
        }
    }
}

/// Polls the manifests every `interval` and reloads on change. Polling (rather than inotify)
/// works the same on every filesystem, including ConfigMap volumes whose files are replaced
/// through a symlink swap; reading a few small files twice a second costs nothing.
pub async fn watch(
    store: Arc<ConfigStore>,
    path: PathBuf,
    default_namespace: String,
    mut last: Option<[u8; 32]>,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        tick.tick().await;
        let sources = match read_sources(&path) {
            Ok(s) => s,
            Err(e) => {
                report(&store, &mut last_error, &e, true);
                continue;
            }
        };
        if Some(sources.digest) == last {
            continue;
        }
        match apply(&store, &sources, &default_namespace) {
            Ok(live) => {
                tracing::info!(version = %live.version, path = %path.display(), "configuration reloaded");
                last_error = None;
            }
            Err(e) => report(&store, &mut last_error, &e, false),
        }
        // Remember the digest even on error, so a broken file is reported once, not twice a second.
        last = Some(sources.digest);
    }
}

/// What a rejected change leaves in force.
pub const KEPT_LAST_GOOD: &str = "configuration change rejected; the last good configuration stays in force";

/// Logs a configuration that did not load: one line per problem, naming the file, the resource
/// and the field (api.md, "Standalone"), never a multi-line message.
pub fn log_rejection(e: &LoadError, what_happens: &str, transient: bool) {
    match e {
        LoadError::Compile { errors, files } => {
            for (err, file) in errors.0.iter().zip(files) {
                let file = file.as_deref().unwrap_or("?");
                let value = err.value.as_deref().unwrap_or("");
                tracing::error!(reason = e.reason(), file, resource = %err.resource, field = %err.field, value, error = %err.message, transient, "{what_happens}");
            }
        }
        _ => tracing::error!(reason = e.reason(), error = %e, transient, "{what_happens}"),
    }
}

fn report(store: &ConfigStore, last_error: &mut Option<String>, e: &LoadError, transient: bool) {
    let text = e.to_string();
    if last_error.as_deref() == Some(text.as_str()) {
        return;
    }
    store.metrics().config_reloads.with_label_values(&["error"]).inc();
    log_rejection(e, KEPT_LAST_GOOD, transient);
    *last_error = Some(text);
}
