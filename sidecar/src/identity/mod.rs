//! Where sign-in identities come from and are kept (the stateful half of browser sign-in): one
//! [`AppLogin`] per application with `spec.login`, holding its OIDC client, its session key and
//! the states already redeemed; the authentication host's keys and hand-off codes.
//!
//! The decisions (URLs, return-URL checks, cookies, callback checks) are pure in
//! `decide::sign_in`; the HTTP handlers are `http/oidc_steps.rs`. This module signs and reads the
//! sign-in state cookie and mints session tokens. Must not log tokens, codes or cookies.

pub mod auth_host;
pub mod handoff;
pub mod oidc;
pub mod session;

use std::sync::Arc;

use portcullis_crds::snapshot::{Algorithm, Application, Issuer, JwksSource, Login};

use crate::decide::authn::User;
use crate::decide::sign_in::{CookieAttrs, Pending};
use crate::jwks::JwksRegistry;
use crate::outbound::HttpClient;
use oidc::Oidc;
use session::{SessionKey, SessionKeyError};

/// JWS `typ` of the sign-in state cookie: a session verifier never accepts it (it has no `aud`)
/// and the state reader never accepts a session (another `typ`).
const STATE_TYP: &str = "portcullis-login-state+jwt";
/// Session tokens get this much clock skew, like any issuer's default.
const SESSION_SKEW_SECS: u64 = 30;
/// Claims copied from the ID token into the session (what policies and apps read).
const COPIED_CLAIMS: [&str; 6] = ["sub", "email", "email_verified", "name", "preferred_username", "groups"];
/// How many redeemed states are remembered to refuse a replayed callback (each for at most the
/// state's lifetime; beyond that the cookie itself has expired).
const REDEEMED_CAPACITY: usize = 10_000;

/// Why an application's sign-in could not be set up (the config is then refused).
#[derive(Debug, thiserror::Error)]
pub enum LoginSetupError {
    #[error("login.sessionKeyRef: {0}")]
    SessionKey(#[from] SessionKeyError),
    #[error("no session key: generating one failed at start")]
    NoGeneratedKey,
}

impl LoginSetupError {
    pub fn reason(&self) -> &'static str {
        match self {
            LoginSetupError::SessionKey(_) => "invalid_session_key",
            LoginSetupError::NoGeneratedKey => "no_session_key",
        }
    }
}

/// The `iss` (and `aud`) of the sessions an application mints: unique per application, so one
/// application never accepts another's sessions even when they share a generated key.
pub fn session_issuer(app: &Application) -> String {
    format!("portcullis-session:{}", app.id)
}

/// The claims of an ID token that sessions, identity sessions and codes carry.
pub fn copied_claims(from: &serde_json::Map<String, serde_json::Value>) -> serde_json::Map<String, serde_json::Value> {
    COPIED_CLAIMS.iter().filter_map(|name| from.get(*name).map(|v| ((*name).to_owned(), v.clone()))).collect()
}

/// One application's sign-in.
pub struct AppLogin {
    pub oidc: Oidc,
    key: Arc<SessionKey>,
    issuer: String,
    pub cookie_name: String,
    pub attrs: CookieAttrs,
    pub session_secs: i64,
    /// `login.oidc.allowUnverifiedEmail`.
    pub allow_unverified_email: bool,
    /// `login.authenticationHost` (`host[:port]`): sign-in goes through it.
    pub authentication_host: Option<String>,
    /// Lifetime of the sessions a hand-off mints (`login.applicationSessionDuration`).
    pub application_session_secs: i64,
    redeemed: quick_cache::sync::Cache<String, ()>,
}

// === impl AppLogin ===

impl AppLogin {
    /// Sets up sign-in for `app` and adds its session issuer to `app.identity.issuers`, so the
    /// sidecar accepts its own session cookie through the ordinary JWT verification.
    pub fn install(
        app: &mut Application,
        login: Login,
        generated: Option<Arc<SessionKey>>,
        client: HttpClient,
        jwks: Arc<JwksRegistry>,
    ) -> Result<AppLogin, LoginSetupError> {
        let key = match &login.session_key_pem {
            Some(pem) => Arc::new(SessionKey::from_pem(pem.expose())?),
            None => generated.ok_or(LoginSetupError::NoGeneratedKey)?,
        };
        let issuer = session_issuer(app);
        app.identity.issuers.retain(|i| i.issuer != issuer);
        app.identity.issuers.push(Issuer {
            issuer: issuer.clone(),
            jwks: JwksSource::Inline(key.public_jwks()),
            audiences: vec![issuer.clone()],
            algorithms: vec![Algorithm::from_name(key.alg()).unwrap_or(Algorithm::EdDSA)],
            clock_skew_secs: SESSION_SKEW_SECS,
        });
        let attrs = CookieAttrs { same_site: login.same_site, http_only: login.http_only, secure: login.secure };
        let session_secs = i64::try_from(app.session_duration_secs).unwrap_or(i64::MAX / 4);
        Ok(AppLogin {
            key,
            issuer,
            cookie_name: app.identity.cookie_name.clone(),
            attrs,
            session_secs,
            allow_unverified_email: login.allow_unverified_email,
            authentication_host: login.authentication_host.clone(),
            application_session_secs: login
                .application_session_secs
                .and_then(|s| i64::try_from(s).ok())
                .map_or(session_secs, |s| s.min(session_secs)),
            redeemed: quick_cache::sync::Cache::new(REDEEMED_CAPACITY),
            oidc: Oidc::new(login, client, jwks),
        })
    }

    /// The state cookie's value for a sign-in being started.
    pub fn encode_pending(&self, pending: &Pending) -> Option<String> {
        let claims = serde_json::to_value(pending).ok()?;
        self.key.sign(STATE_TYP, &claims).ok()
    }

    /// The sign-in this browser started, when the cookie is ours and intact (expiry and state
    /// are checked by `decide::sign_in::check_pending`).
    pub fn decode_pending(&self, cookie: &str) -> Option<Pending> {
        if cookie.len() > 4 * crate::decide::sign_in::MAX_PARAM_BYTES {
            return None;
        }
        self.key.verify(STATE_TYP, cookie)
    }

    /// Records a redeemed state; `false` when it was redeemed before (a replayed callback).
    pub fn first_redemption(&self, state: &str) -> bool {
        // Insert-if-absent in one step, so two concurrent replays cannot both pass.
        let mut first = false;
        let _ = self.redeemed.get_or_insert_with(state, || -> Result<(), ()> {
            first = true;
            Ok(())
        });
        first
    }

    /// A session token for `user`, valid `sessionDuration` from `now`.
    pub fn mint_session(&self, user: &User, now: i64) -> Option<String> {
        self.mint_session_until(user, now, now.saturating_add(self.session_secs))
    }

    /// A session token for `user`, valid from `now` until `exp`.
    pub fn mint_session_until(&self, user: &User, now: i64, exp: i64) -> Option<String> {
        let mut claims = copied_claims(&user.claims);
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("aud".into(), self.issuer.clone().into());
        claims.insert("idp".into(), user.issuer.clone().into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), exp.into());
        self.key.sign("JWT", &serde_json::Value::Object(claims)).ok()
    }

    /// The session issuer (and audience) of this application's sessions and hand-off codes.
    pub fn session_issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs `claims` as a compact JWS of type `typ` with the session key.
    fn sign_as<T: serde::Serialize>(&self, typ: &str, claims: &T) -> Option<String> {
        let claims = serde_json::to_value(claims).ok()?;
        self.key.sign(typ, &claims).ok()
    }

    /// Reads a JWS of type `typ` this key signed; `None` for anything else or anything oversized.
    fn verify_as<T: serde::de::DeserializeOwned>(&self, typ: &str, token: &str) -> Option<T> {
        if token.len() > 4 * crate::decide::sign_in::MAX_PARAM_BYTES {
            return None;
        }
        self.key.verify(typ, token)
    }
}
