//! The authentication hosts of a configuration (`login.authenticationHost`): which host serves
//! sign-in for which applications, and the values it signs — the identity session cookie on
//! its own host, and the hand-off codes it gives each application.
//!
//! A host is served by every sidecar whose configuration holds an application naming it. It
//! uses the provider client and session key of the first such application (its *leader*; all
//! must share the provider settings, else the configuration is refused) for the provider
//! sign-in and its identity session, and signs each code with the key of the application the
//! code is for, so an application only needs its own key. Must not do I/O or log values.

use portcullis_crds::snapshot::Login;

use super::handoff::{self, Code, HandoffState, Identity};
use super::{copied_claims, AppLogin};
use crate::decide::authn::User;
use crate::decide::route::Router;

/// One authentication host.
#[derive(Debug)]
pub struct AuthHost {
    /// `host[:port]` as configured: where browsers are sent.
    pub authority: String,
    /// The host without the port: what requests are matched by.
    pub host: String,
    /// `iss` of its identity sessions and codes.
    pub issuer: String,
    /// `auth:<authority>`: the `app` label of its metrics and log lines.
    pub label: String,
    /// Index of the application whose provider client and key it uses.
    pub leader: usize,
    /// Indices of the applications that name it: the only ones it hands codes to.
    pub members: Vec<usize>,
}

/// The authentication hosts of one configuration.
#[derive(Debug, Default)]
pub struct AuthHosts(Vec<AuthHost>);

/// Why a configuration's authentication hosts cannot be served (the config is refused).
#[derive(Debug, thiserror::Error)]
pub enum AuthHostError {
    #[error(
        "login.authenticationHost {host}: applications {first} and {other} name it with different {what}; \
         applications sharing an authentication host share one provider client registration"
    )]
    Mismatch { host: String, first: String, other: String, what: &'static str },
    #[error(
        "login.authenticationHost {host} is also a domain of application {app}; an authentication host serves \
         sign-in only"
    )]
    IsADomain { host: String, app: String },
}

impl AuthHostError {
    pub fn reason(&self) -> &'static str {
        match self {
            AuthHostError::Mismatch { .. } => "auth_host_mismatch",
            AuthHostError::IsADomain { .. } => "auth_host_is_a_domain",
        }
    }
}

// === impl AuthHosts ===

impl AuthHosts {
    /// Groups the applications (`(label, login)` in configuration order) by authentication host.
    pub fn build<'a>(
        apps: impl IntoIterator<Item = (&'a str, Option<&'a Login>)>,
        router: &Router,
    ) -> Result<AuthHosts, AuthHostError> {
        let apps: Vec<(&'a str, Option<&'a Login>)> = apps.into_iter().collect();
        let mut hosts: Vec<(AuthHost, &'a str, &'a Login)> = Vec::new();
        for (index, &(label, login)) in apps.iter().enumerate() {
            let Some((login, authority)) = login.and_then(|l| Some((l, l.authentication_host.as_deref()?))) else {
                continue;
            };
            let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_owned();
            if let Some(app) = router.route(&host, handoff::AUTHENTICATE_PATH) {
                let app = apps.get(app).map_or("?", |a| a.0).to_owned();
                return Err(AuthHostError::IsADomain { host: authority.to_owned(), app });
            }
            match hosts.iter_mut().find(|(h, _, _)| h.host == host) {
                Some((h, first, first_login)) => {
                    let what = if h.authority != authority {
                        Some("ports")
                    } else if !handoff::same_provider(first_login, login) {
                        Some("oidc settings (issuer, clientId, client secret, scopes, allowUnverifiedEmail)")
                    } else {
                        None
                    };
                    if let Some(what) = what {
                        return Err(AuthHostError::Mismatch {
                            host: authority.to_owned(),
                            first: (*first).to_owned(),
                            other: label.to_owned(),
                            what,
                        });
                    }
                    h.members.push(index);
                }
                None => hosts.push((
                    AuthHost {
                        authority: authority.to_owned(),
                        issuer: handoff::auth_issuer(authority),
                        label: format!("auth:{authority}"),
                        host,
                        leader: index,
                        members: vec![index],
                    },
                    label,
                    login,
                )),
            }
        }
        Ok(AuthHosts(hosts.into_iter().map(|(h, _, _)| h).collect()))
    }

    /// The authentication host serving `host` (lower-case, without port), if any.
    pub fn find(&self, host: &str) -> Option<&AuthHost> {
        self.0.iter().find(|h| h.host == host)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// === the values an authentication host signs, with its leader's or the member's key ===

impl AppLogin {
    /// A new identity session for `user` (the leader's key), valid `sessionDuration`.
    pub fn mint_identity(&self, issuer: &str, user: &User, sid: String, now: i64) -> Option<(String, Identity)> {
        let identity = Identity {
            iss: issuer.to_owned(),
            sid,
            idp: user.issuer.clone(),
            iat: now,
            exp: now.saturating_add(self.session_secs),
            claims: copied_claims(&user.claims),
        };
        Some((self.sign_as(handoff::IDENTITY_TYP, &identity)?, identity))
    }

    /// The identity session of a cookie: signed by this key, of `issuer`, not expired, not ended.
    pub fn read_identity(&self, issuer: &str, cookie: &str, now: i64) -> Option<Identity> {
        let identity: Identity = self.verify_as(handoff::IDENTITY_TYP, cookie)?;
        let live = identity.iss == issuer && now < identity.exp && !handoff::session_ended(&identity.sid);
        live.then_some(identity)
    }

    /// A code for this application (its own key and session issuer as `aud`), valid
    /// [`handoff::CODE_TTL_SECS`] and never past the identity session.
    pub fn mint_code(&self, identity: &Identity, st: &str, jti: String, now: i64) -> Option<String> {
        let code = Code {
            aud: self.issuer.clone(),
            st: st.to_owned(),
            jti,
            session_exp: identity.exp,
            identity: Identity {
                iat: now,
                exp: now.saturating_add(handoff::CODE_TTL_SECS).min(identity.exp),
                ..identity.clone()
            },
        };
        self.sign_as(handoff::CODE_TYP, &code)
    }

    /// A code signed by this application's key; `None` when malformed, tampered or another key's.
    pub fn read_code(&self, code: &str) -> Option<Code> {
        self.verify_as(handoff::CODE_TYP, code)
    }

    pub fn encode_handoff_state(&self, state: &HandoffState) -> Option<String> {
        self.sign_as(handoff::STATE_TYP, state)
    }

    pub fn decode_handoff_state(&self, cookie: &str) -> Option<HandoffState> {
        self.verify_as(handoff::STATE_TYP, cookie)
    }
}

/// The user a code or an identity session describes, as policies and sessions read it.
pub fn user_of(identity: &Identity) -> User {
    User {
        issuer: identity.idp.clone(),
        email: identity.claims.get("email").and_then(|e| e.as_str()).map(str::to_owned),
        claims: identity.claims.clone(),
        expires_at: identity.exp,
        headers: Default::default(),
    }
}
