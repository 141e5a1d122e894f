//! One sign-in across hosts, the HTTP half: the authentication host's endpoints
//! (`/.portcullis/authenticate`, `/callback`, `/logout`, `/identity` on `login.authenticationHost`)
//! and an application's side of the hand-off (its `/.portcullis/login` sending the browser to
//! the authentication host, its `/.portcullis/handoff` redeeming the code).
//!
//! Reads requests, calls the checks of `identity::handoff` and the signing of `identity::auth_host`,
//! answers; every answer is `Cache-Control: no-store`. Never logs a code, state, token or cookie.

use std::sync::Arc;

use http::header::SET_COOKIE;
use http::StatusCode;
use url::Url;

use super::oidc_steps::{self as glue, Ctx, Refused, Serving};
use super::respond::{json, redirect_to, Refusal};
use crate::config::Live;
use crate::decide::route::Target;
use crate::decide::sign_in::{self as rules, CookieAttrs};
use crate::identity::auth_host::{user_of, AuthHost};
use crate::identity::handoff::{self, HandoffError, HandoffState, Identity};
use crate::identity::session::random_b64url;
use crate::identity::AppLogin;
use crate::outbound::OutBody;

type Resp = http::Response<OutBody>;

/// Bytes of randomness in a hand-off `state`, a code's `jti` and an identity session id.
const RANDOM_BYTES: usize = 32;

// === an application's side ===

/// `/.portcullis/login?rd=…` of an application with an authentication host: binds a hand-off
/// to this browser (the state cookie on this host's hand-off path) and sends the browser to the
/// authentication host, which sends it back to `/.portcullis/handoff` with a code.
pub fn start(cx: &Ctx<'_>, login: &AppLogin, authentication_host: &str) -> Resp {
    let rd = match glue::checked_rd(cx) {
        Ok(rd) => rd,
        Err(resp) => return *resp,
    };
    let (Some(base), Some(authority)) = (cx.base(), cx.authority()) else {
        return cx.refuse(Refusal::BadRequest("invalid_host"));
    };
    let Some(st) = random_b64url(RANDOM_BYTES) else {
        return cx.sign_in_failed(StatusCode::INTERNAL_SERVER_ERROR, "no_randomness", &"the system RNG failed");
    };
    let return_to = format!("{}://{authority}{}", base.scheme(), handoff::HANDOFF_PATH);
    let url = handoff::authenticate_url(base.scheme(), authentication_host, &return_to, &st);
    let state = HandoffState { st, rd: rd.into(), app: cx.app().label.clone(), exp: cx.now + rules::STATE_TTL_SECS };
    let cookie = login.encode_handoff_state(&state).and_then(|v| {
        let attrs = rules::state_cookie_attrs(login.attrs);
        rules::set_cookie(handoff::HANDOFF_COOKIE, &v, handoff::HANDOFF_PATH, rules::STATE_TTL_SECS, attrs)
    });
    let (Some(url), Some(cookie)) = (url, cookie) else {
        return cx.sign_in_failed(StatusCode::INTERNAL_SERVER_ERROR, "state_cookie_failed", &"signing failed");
    };
    cx.count("handoff_started");
    let mut resp = redirect_to(url.as_str());
    resp.headers_mut().append(SET_COOKIE, cookie);
    cx.finish(resp)
}

/// `/.portcullis/handoff?code=…`: the code must be this application's (its key, its `aud`),
/// from its authentication host, fresh, for the hand-off this browser started (the state
/// cookie), and unused; then the application's policies decide, and its own session cookie
/// (valid `applicationSessionDuration`, never past the identity session) is set on this host.
pub fn redeem(cx: &Ctx<'_>, login: &AppLogin) -> Resp {
    let resp = match exchange(cx, login) {
        Ok(resp) => resp,
        Err(resp) => *resp,
    };
    // Whatever happened, this hand-off is over.
    let attrs = rules::state_cookie_attrs(login.attrs);
    let mut resp = no_referrer(resp);
    if let Some(clear) = rules::set_cookie(handoff::HANDOFF_COOKIE, "", handoff::HANDOFF_PATH, 0, attrs) {
        resp.headers_mut().append(SET_COOKIE, clear);
    }
    resp
}

/// The answers whose URL holds a code, and the redirects carrying one, tell the browser to send
/// no `Referer` onwards, so a code never reaches another server in one.
fn no_referrer(mut resp: Resp) -> Resp {
    resp.headers_mut().insert(http::header::REFERRER_POLICY, http::HeaderValue::from_static("no-referrer"));
    resp
}

fn exchange(cx: &Ctx<'_>, login: &AppLogin) -> Result<Resp, Refused> {
    let failed = |e: HandoffError| Box::new(cx.sign_in_failed(e.status(), e.reason(), &e));
    let code = rules::query_param(cx.uri.query().unwrap_or_default(), "code").filter(|c| !c.is_empty());
    let code = code.ok_or(HandoffError::NoCode).map_err(failed)?;
    if handoff::code_too_long(&code) {
        return Err(failed(HandoffError::BadCode));
    }
    let state = rules::cookie(cx.headers, handoff::HANDOFF_COOKIE).ok_or(HandoffError::NoStateCookie);
    let state = state.and_then(|c| login.decode_handoff_state(c).ok_or(HandoffError::BadStateCookie));
    let state = state.map_err(failed)?;
    handoff::check_state(&state, &cx.app().label, cx.now).map_err(failed)?;
    let code = login.read_code(&code).ok_or(HandoffError::BadCode).map_err(failed)?;
    let issuer = handoff::auth_issuer(login.authentication_host.as_deref().unwrap_or_default());
    handoff::check_code(&code, &state, &issuer, login.session_issuer(), cx.now).map_err(failed)?;
    if !handoff::first_use(&code.jti) {
        return Err(failed(HandoffError::Replayed));
    }
    let exp = cx.now.saturating_add(login.application_session_secs).min(code.session_exp);
    let cookie = glue::admitted_session(cx, login, Arc::new(user_of(&code.identity)), exp)?;
    let mut resp = redirect_to(&state.rd);
    resp.headers_mut().append(SET_COOKIE, cookie);
    Ok(cx.finish(resp))
}

/// Where an application's `/.portcullis/logout` sends the browser: the authentication host's
/// logout, which ends the identity session and comes back to `rd` when one was given (else it
/// answers 200 itself: sending the browser to a protected page would start a new sign-in).
pub fn logout_url(cx: &Ctx<'_>, authentication_host: &str, rd: Option<Url>) -> Option<Url> {
    let base = cx.base()?;
    let mut url = Url::parse(&format!("{}://{authentication_host}/.portcullis/logout", base.scheme())).ok()?;
    if let Some(rd) = rd {
        url.query_pairs_mut().append_pair("rd", rd.as_str());
    }
    Some(url)
}

// === the authentication host ===

/// Where and when a request arrived: the peer, the Unix time, the request id.
pub type Arrival<'a> = (std::net::IpAddr, i64, &'a str);

/// One of an authentication host's endpoints (`/.portcullis/…` on `login.authenticationHost`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthEndpoint {
    Authenticate,
    Callback,
    Logout,
    Identity,
    /// Any other path under `/.portcullis/`: 404.
    Unknown,
}

impl AuthEndpoint {
    fn parse(path: &str) -> Option<Self> {
        Some(match path.strip_prefix(rules::PREFIX)? {
            "/authenticate" => Self::Authenticate,
            "/callback" => Self::Callback,
            "/logout" => Self::Logout,
            "/identity" => Self::Identity,
            _ => Self::Unknown,
        })
    }

    /// The reason label of the log line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Authenticate => "authenticate",
            Self::Callback => "callback",
            Self::Logout => "logout",
            Self::Identity => "identity",
            Self::Unknown => Refusal::ReservedPath.reason(),
        }
    }
}

/// A request routed to an authentication host: the host, its endpoint, and the authority the
/// request was addressed to.
pub struct AuthHostRequest<'a> {
    pub host: &'a AuthHost,
    pub endpoint: AuthEndpoint,
    authority: http::HeaderValue,
}

/// Whether `target` is a sign-in path of one of `live`'s authentication hosts (hosts no
/// application routes); `None` when it is not (then it is an unknown host). The proxy and
/// `explain` both route with this.
pub fn auth_host_request<'a>(live: &'a Live, target: &Target<'_>) -> Option<AuthHostRequest<'a>> {
    let host = live.auth_hosts.find(&target.host)?;
    let endpoint = AuthEndpoint::parse(&target.path.matching)?;
    live.apps.get(host.leader)?.login.as_ref()?;
    let authority = http::HeaderValue::from_str(&target.authority).ok()?;
    Some(AuthHostRequest { host, endpoint, authority })
}

impl<'a> AuthHostRequest<'a> {
    /// The step context: the leader's (its provider client and key); no CORS (only navigations
    /// come here).
    pub fn ctx<'c>(
        &'c self,
        live: &'c Live,
        req: &'c http::request::Parts,
        (peer, now, request_id): Arrival<'c>,
        serving: Serving<'c>,
    ) -> Ctx<'c> {
        Ctx {
            live,
            app_index: self.host.leader,
            uri: &req.uri,
            headers: &req.headers,
            authority: &self.authority,
            origin: None,
            peer,
            now,
            request_id,
            serving,
        }
    }

    /// What the endpoint answers when that needs neither the identity provider nor a change of
    /// state (the identity endpoint, sign-out's answer, an authenticate request refused before
    /// the provider, an unknown endpoint): the very answer [`serve_auth_host`] sends. `None`
    /// when the answer depends on the provider or on a live identity session (`explain` then
    /// says what the step is without a status).
    /// The reason label is the one the proxy logs.
    pub fn answer_at_once(&self, cx: &Ctx<'_>) -> Option<(Resp, &'static str)> {
        let auth = AuthCx::new(cx, self.host)?;
        let name = self.endpoint.name();
        match self.endpoint {
            AuthEndpoint::Authenticate => {
                auth.hand_off_target(cx.uri.query().unwrap_or_default()).err().map(|r| (*r, name))
            }
            AuthEndpoint::Callback => None,
            AuthEndpoint::Logout => Some((auth.logout_answer(), name)),
            AuthEndpoint::Identity => Some(auth.identity()),
            AuthEndpoint::Unknown => Some((cx.refuse(Refusal::ReservedPath), name)),
        }
    }
}

/// Answers a request for an authentication host; `None` when `target` is not one (see
/// [`auth_host_request`]). The reason label is returned for the log line.
pub async fn serve_auth_host(
    live: &Live,
    req: &http::request::Parts,
    target: &Target<'_>,
    arrival: Arrival<'_>,
    serving: Serving<'_>,
) -> Option<(Resp, &'static str)> {
    let routed = auth_host_request(live, target)?;
    let cx = routed.ctx(live, req, arrival, serving);
    let auth = AuthCx::new(&cx, routed.host)?;
    let endpoint = routed.endpoint;
    Some(match endpoint {
        AuthEndpoint::Authenticate => (auth.authenticate().await, endpoint.name()),
        AuthEndpoint::Callback => (auth.callback().await, endpoint.name()),
        AuthEndpoint::Logout => {
            auth.end_identity_session();
            (auth.logout_answer(), endpoint.name())
        }
        AuthEndpoint::Identity => auth.identity(),
        AuthEndpoint::Unknown => (cx.refuse(Refusal::ReservedPath), endpoint.name()),
    })
}

struct AuthCx<'a> {
    cx: &'a Ctx<'a>,
    host: &'a AuthHost,
    leader: &'a AppLogin,
}

impl<'a> AuthCx<'a> {
    /// The steps of `host` for the request of `cx` (the leader's context).
    fn new(cx: &'a Ctx<'a>, host: &'a AuthHost) -> Option<Self> {
        let leader = cx.live.apps.get(host.leader)?.login.as_ref()?;
        Some(AuthCx { cx, host, leader })
    }

    /// The identity session this browser holds on the authentication host, if live.
    fn identity_session(&self) -> Option<Identity> {
        let cookie = rules::cookie(self.cx.headers, handoff::IDENTITY_COOKIE)?;
        self.leader.read_identity(&self.host.issuer, cookie, self.cx.now)
    }

    /// The identity cookie: this host only, `SameSite=Lax` (the hand-off arrives as a top-level
    /// navigation from another site, which Lax cookies accompany), HttpOnly, Secure as the
    /// applications' sessions are.
    fn identity_cookie(&self, value: &str, max_age: i64) -> Option<http::HeaderValue> {
        let attrs = CookieAttrs { http_only: true, ..rules::state_cookie_attrs(self.leader.attrs) };
        rules::set_cookie(handoff::IDENTITY_COOKIE, value, "/", max_age, attrs)
    }

    fn failed(&self, status: StatusCode, reason: &'static str, detail: &dyn std::fmt::Display) -> Resp {
        self.cx.sign_in_failed(status, reason, detail)
    }

    /// The application a `return`/`state` pair is for, checked.
    fn hand_off_target(&self, query: &str) -> Result<(Url, usize, String), Refused> {
        let st = rules::query_param(query, "state").filter(|s| handoff::valid_state(s));
        let Some(st) = st else {
            let detail = "the state parameter is missing or not 1 to 128 base64url characters";
            return Err(Box::new(self.failed(StatusCode::BAD_REQUEST, "handoff_state_invalid", &detail)));
        };
        let live = self.cx.live;
        let raw = rules::query_param(query, "return").unwrap_or_default();
        let secure_listener = self.cx.serving.https;
        let scheme_of = |i: usize| {
            let secure = live.apps.get(i).and_then(|a| a.login.as_ref()).is_none_or(|l| l.attrs.secure);
            rules::public_scheme(secure_listener, secure)
        };
        match handoff::handoff_return(&raw, &live.router, |i| self.host.members.contains(&i), scheme_of) {
            Ok((url, app)) => Ok((url, app, st.into_owned())),
            Err(e) => Err(Box::new(self.failed(StatusCode::BAD_REQUEST, e.reason(), &e))),
        }
    }

    /// `/.portcullis/authenticate?return=…&state=…`: with a live identity session, straight
    /// back to the application with a code; else a provider sign-in first.
    async fn authenticate(&self) -> Resp {
        let query = self.cx.uri.query().unwrap_or_default();
        let (url, app, st) = match self.hand_off_target(query) {
            Ok(t) => t,
            Err(resp) => return *resp,
        };
        if let Some(identity) = self.identity_session() {
            return self.hand_back(&identity, url, app, &st);
        }
        let Some(here) = self.cx.base().and_then(|b| b.join(self.cx.uri.path_and_query()?.as_str()).ok()) else {
            return self.cx.refuse(Refusal::BadRequest("invalid_host"));
        };
        glue::to_provider(self.cx, self.leader, here.into(), &self.host.label).await
    }

    /// A code for application `app`, signed with its key, and the redirect to its hand-off.
    fn hand_back(&self, identity: &Identity, mut url: Url, app: usize, st: &str) -> Resp {
        let member = self.cx.live.apps.get(app).and_then(|a| a.login.as_ref());
        let code = member
            .zip(random_b64url(RANDOM_BYTES))
            .and_then(|(login, jti)| login.mint_code(identity, st, jti, self.cx.now));
        let Some(code) = code else {
            return self.failed(StatusCode::INTERNAL_SERVER_ERROR, "handoff_failed", &"signing failed");
        };
        url.query_pairs_mut().append_pair("code", &code);
        self.cx.count("handoff");
        no_referrer(self.cx.finish(redirect_to(url.as_str())))
    }

    /// `/.portcullis/callback` on the authentication host: the one redirect URI. Establishes the
    /// identity session and goes on to the hand-off the sign-in was started for.
    async fn callback(&self) -> Resp {
        let resp = match glue::signed_in_user(self.cx, self.leader, &self.host.label).await {
            Ok((user, pending)) => self.established(&user, &pending.rd),
            Err(resp) => resp,
        };
        glue::state_cleared(resp, self.leader)
    }

    fn established(&self, user: &crate::decide::authn::User, authenticate_url: &str) -> Resp {
        // `rd` is the authenticate URL this host built; checked again (the config may have changed).
        let query = Url::parse(authenticate_url).ok().and_then(|u| u.query().map(str::to_owned)).unwrap_or_default();
        let (url, app, st) = match self.hand_off_target(&query) {
            Ok(t) => t,
            Err(resp) => return *resp,
        };
        let minted = random_b64url(RANDOM_BYTES)
            .and_then(|sid| self.leader.mint_identity(&self.host.issuer, user, sid, self.cx.now))
            .and_then(|(token, identity)| Some((self.identity_cookie(&token, self.leader.session_secs)?, identity)));
        let Some((cookie, identity)) = minted else {
            return self.failed(StatusCode::INTERNAL_SERVER_ERROR, "session_failed", &"signing failed");
        };
        self.cx.count("ok");
        tracing::info!(request_id = self.cx.request_id, app = %self.host.label, "identity session started");
        let mut resp = self.hand_back(&identity, url, app, &st);
        resp.headers_mut().append(SET_COOKIE, cookie);
        resp
    }

    /// `/.portcullis/logout`, its change of state: ends the identity session, so that a copy of
    /// its cookie is refused too.
    fn end_identity_session(&self) {
        if let Some(identity) = self.identity_session() {
            handoff::end_session(&identity.sid);
            tracing::info!(request_id = self.cx.request_id, app = %self.host.label, "identity session ended");
        }
    }

    /// `/.portcullis/logout[?rd=…]`, its answer: clears the cookie; back to `rd` when it is on
    /// an application using this host.
    fn logout_answer(&self) -> Resp {
        let rd = rules::query_param(self.cx.uri.query().unwrap_or_default(), "rd")
            .and_then(|rd| handoff::member_url(&rd, &self.cx.live.router, |i| self.host.members.contains(&i)));
        let mut resp = match rd {
            Some(rd) => redirect_to(rd.as_str()),
            None => json(StatusCode::OK, serde_json::json!({ "status": "signed_out" })),
        };
        if let Some(clear) = self.identity_cookie("", 0) {
            resp.headers_mut().append(SET_COOKIE, clear);
        }
        self.cx.finish(resp)
    }

    /// `/.portcullis/identity` on the authentication host: the identity session as JSON, or 401.
    fn identity(&self) -> (Resp, &'static str) {
        match self.identity_session() {
            Some(identity) => {
                let claim = |n: &str| identity.claims.get(n).cloned().unwrap_or(serde_json::Value::Null);
                let body = serde_json::json!({
                    "email": claim("email"), "name": claim("name"), "groups": claim("groups"), "sub": claim("sub"),
                    "iss": identity.iss, "idp": identity.idp, "exp": identity.exp,
                });
                (self.cx.finish(json(StatusCode::OK, body)), "identity")
            }
            None => {
                let r = Refusal::Unauthenticated { reason: "no_credentials", login: None };
                (self.cx.refuse(r), "no_credentials")
            }
        }
    }
}
