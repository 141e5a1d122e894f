//! `Live`: a compiled snapshot rendered for the request path — router, CORS header values,
//! JWT verifiers with their key stores, service-token digests and pre-resolved metrics.
//! Built once per config change; requests only read it.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_crds::snapshot::{Application, Snapshot};
use prometheus::{Gauge, IntCounter};

use crate::decide::authn::jwt::{JwtConfig, JwtConfigError};
use crate::decide::authn::service_token::{InvalidServiceTokens, ServiceTokens};
use crate::decide::cors::{CorsConfig, CorsConfigError};
use crate::decide::request::AppDecisions;
use crate::decide::route::Router;
use crate::identity::auth_host::{AuthHostError, AuthHosts};
use crate::identity::session::SessionKey;
use crate::identity::{AppLogin, LoginSetupError};
use crate::jwks::{IssuerKeys, JwksRegistry};
use crate::metrics::Metrics;

/// The configuration requests run against.
pub struct Live {
    pub version: String,
    pub router: Router,
    pub apps: Vec<LiveApp>,
    /// The hosts that serve one sign-in for several applications (`login.authenticationHost`).
    pub auth_hosts: AuthHosts,
}

/// One application, ready for requests.
pub struct LiveApp {
    /// `namespace/name`, the `app` label and log field.
    pub label: String,
    pub spec: Application,
    pub cors: CorsConfig,
    pub jwt: JwtConfig,
    /// Key stores in `spec.identity.issuers` order.
    pub keys: Vec<Arc<IssuerKeys>>,
    pub tokens: ServiceTokens,
    /// Browser sign-in, with `spec.login`.
    pub login: Option<AppLogin>,
    pub counters: AppCounters,
}

/// Counters of the hot outcomes, resolved once so the request path does no label lookup.
pub struct AppCounters {
    pub allowed: IntCounter,
    pub bypassed: IntCounter,
    pub preflight_answered: IntCounter,
    /// `service token name` → last-used gauge.
    pub token_last_used: HashMap<String, Gauge>,
}

/// A snapshot that passed `compile` elsewhere but does not hold up here (a corrupted or
/// hand-made push): refused, and the last good config stays.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("application {app}: {source}")]
    ServiceTokens { app: String, source: InvalidServiceTokens },
    #[error("application {app}: cors: {source}")]
    Cors { app: String, source: CorsConfigError },
    #[error("application {app}: identity: {source}")]
    Identity { app: String, source: JwtConfigError },
    #[error("application {app}: login: {source}")]
    Login { app: String, source: LoginSetupError },
    #[error("{0}")]
    AuthHost(#[from] AuthHostError),
}

// === impl LiveError ===

impl LiveError {
    /// Stable label for logs and metrics: the underlying check's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            LiveError::ServiceTokens { .. } => "invalid_service_tokens",
            LiveError::Cors { source, .. } => source.reason(),
            LiveError::Identity { source, .. } => source.reason(),
            LiveError::Login { source, .. } => source.reason(),
            LiveError::AuthHost(e) => e.reason(),
        }
    }
}

impl Live {
    /// Renders a snapshot. Re-validates what the request path relies on.
    ///
    /// `session_key` signs the sessions of applications with `login` but no `sessionKeyRef`:
    /// generated once per process, so a reload does not end every session.
    pub fn build(
        snapshot: Snapshot,
        jwks: &Arc<JwksRegistry>,
        metrics: &Metrics,
        session_key: Option<Arc<SessionKey>>,
    ) -> Result<Self, LiveError> {
        let router = Router::new(&snapshot.applications);
        let apps = snapshot
            .applications
            .into_iter()
            .map(|app| LiveApp::build(app, jwks, metrics, session_key.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let auth_hosts = AuthHosts::build(apps.iter().map(|a| (a.label.as_str(), a.spec.login.as_ref())), &router)?;
        Ok(Self { version: snapshot.version, router, apps, auth_hosts })
    }
}

impl LiveApp {
    /// The application's compiled pieces as the pure decisions read them.
    pub fn decisions(&self) -> AppDecisions<'_, [Arc<IssuerKeys>]> {
        AppDecisions { spec: &self.spec, cors: &self.cors, jwt: &self.jwt, tokens: &self.tokens, keys: &self.keys[..] }
    }

    fn build(
        mut spec: Application,
        jwks: &Arc<JwksRegistry>,
        metrics: &Metrics,
        session_key: Option<Arc<SessionKey>>,
    ) -> Result<Self, LiveError> {
        let label = spec.id.to_string();
        // Before the JWT settings are rendered: sign-in adds the application's session issuer.
        let login = match spec.login.clone() {
            None => None,
            Some(l) => Some(
                AppLogin::install(&mut spec, l, session_key, jwks.client().clone(), jwks.clone())
                    .map_err(|source| LiveError::Login { app: label.clone(), source })?,
            ),
        };
        let mode = mode_label(&spec);
        let counters = AppCounters {
            allowed: metrics.requests.with_label_values(&[&label, "allow", "policy", mode]),
            bypassed: metrics.requests.with_label_values(&[&label, "bypass", "policy", mode]),
            preflight_answered: metrics.preflights.with_label_values(&[&label, "answered"]),
            token_last_used: spec
                .service_tokens
                .iter()
                .map(|t| {
                    let full = format!("{}/{}", spec.id.namespace, t.name);
                    (t.name.clone(), metrics.token_last_used.with_label_values(&[&full]))
                })
                .collect(),
        };
        let tokens = ServiceTokens::new(&spec.service_tokens)
            .map_err(|source| LiveError::ServiceTokens { app: label.clone(), source })?;
        let cors = CorsConfig::try_from(&spec.cors).map_err(|source| LiveError::Cors { app: label.clone(), source })?;
        let jwt =
            JwtConfig::new(&spec.identity).map_err(|source| LiveError::Identity { app: label.clone(), source })?;
        Ok(Self { cors, jwt, keys: jwks.identity_keys(&spec.identity), tokens, login, counters, label, spec })
    }
}

/// The `mode` label value of an application.
pub fn mode_label(app: &Application) -> &'static str {
    match app.mode {
        portcullis_crds::v1alpha1::Mode::Enforce => "enforce",
        portcullis_crds::v1alpha1::Mode::Audit => "audit",
    }
}

#[cfg(test)]
mod reason_tests {
    use super::*;

    #[test]
    fn live_errors_have_the_reason_of_their_check() {
        let e = LiveError::Login { app: "shop/api".into(), source: LoginSetupError::NoGeneratedKey };
        assert_eq!(e.reason(), "no_session_key");
        let e = LiveError::Identity { app: "shop/api".into(), source: JwtConfigError::NoAlgorithm("i".into()) };
        assert_eq!(e.reason(), JwtConfigError::NoAlgorithm("i".into()).reason());
    }
}
