//! The application's own sign-in steps (api.md "Browser sign-in paths"): login, callback and
//! identity, the shared [`Ctx`] and steps the hand-off reuses, and the sign-in redirect of an
//! unauthenticated navigation; [`super::sign_in`] dispatches to them. Each handler reads the
//! request, calls the pure checks in `decide::sign_in`, does its I/O through `identity::oidc`, and
//! answers; every answer carries `Cache-Control: no-store` and the CORS headers for an allowed
//! origin. Never logs a code, token, state or cookie value.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{HeaderValue, SET_COOKIE};
use http::{HeaderMap, Response, StatusCode, Uri};
use ipnet::IpNet;
use prometheus::IntCounterVec;
use url::Url;

use super::respond::{json, no_store, redirect_to, sign_in_base, sign_in_required, with_cors, Refusal};
use crate::config::{Live, LiveApp};
use crate::decide::authn::{Authn, Principal, User};
use crate::decide::request;
use crate::decide::sign_in::{self as rules, CallbackError, Pending};
use crate::identity::session::random_b64url;
use crate::identity::AppLogin;
use crate::outbound::OutBody;

/// Bytes of randomness in `state`, `nonce` and the PKCE verifier: 256 bits (api.md: ≥ 128).
const RANDOM_BYTES: usize = 32;

/// What a reserved-path request needs from the pipeline.
pub struct Ctx<'a> {
    pub live: &'a Live,
    pub app_index: usize,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// The canonical authority the request was routed by (port included).
    pub authority: &'a HeaderValue,
    pub origin: Option<&'a HeaderValue>,
    pub peer: IpAddr,
    pub now: i64,
    pub request_id: &'a str,
    pub serving: Serving<'a>,
}

/// What the sidecar serving the request brings to a sign-in step.
#[derive(Clone, Copy)]
pub struct Serving<'a> {
    /// Clients reach the listener over TLS (the scheme of sign-in URLs).
    pub https: bool,
    /// `--trusted-proxies`, for the policies a signed-in user is checked against.
    pub trusted_proxies: &'a [IpNet],
    /// `portcullis_logins_total`; `None` when `explain` runs a step, which counts and logs nothing.
    pub logins: Option<&'a IntCounterVec>,
}

impl Ctx<'_> {
    pub(super) fn app(&self) -> &LiveApp {
        &self.live.apps[self.app_index]
    }

    /// The authority the request was routed by: the absolute-form target's or `Host`.
    pub(super) fn authority(&self) -> Option<&str> {
        self.authority.to_str().ok()
    }

    /// The origin the browser addressed.
    pub(super) fn base(&self) -> Option<Url> {
        sign_in_base(self.app(), self.serving.https, self.authority()?)
    }

    pub(super) fn finish(&self, resp: Response<OutBody>) -> Response<OutBody> {
        with_cors(self.app(), self.origin, no_store(resp))
    }

    pub(super) fn refuse(&self, r: Refusal) -> Response<OutBody> {
        self.finish(r.to_response(self.request_id))
    }

    pub(super) fn count(&self, result: &str) {
        if let Some(logins) = self.serving.logins {
            logins.with_label_values(&[&self.app().label, result]).inc();
        }
    }

    /// A refused sign-in step: counted, logged with its reason (never a value), answered.
    pub(super) fn sign_in_failed(
        &self,
        status: StatusCode,
        reason: &'static str,
        detail: &dyn std::fmt::Display,
    ) -> Response<OutBody> {
        if self.serving.logins.is_some() {
            self.count(reason);
            tracing::info!(request_id = self.request_id, app = %self.app().label, reason, %detail, "sign-in refused");
        }
        self.refuse(Refusal::SignIn { status, reason })
    }
}

/// The 401 of an unauthenticated request with the sign-in URL, or the redirect to it.
fn unauthenticated(cx: &Ctx<'_>, reason: &'static str, redirect: bool) -> Response<OutBody> {
    sign_in_required(cx.app(), cx.origin, cx.base().as_ref(), cx.uri, reason, redirect, cx.request_id)
}

/// `/.portcullis/login?rd=…`: checks `rd`, binds a new sign-in to this browser with the state
/// cookie, and sends the browser to the provider.
pub(super) async fn start(cx: &Ctx<'_>, login: &AppLogin) -> Response<OutBody> {
    match checked_rd(cx) {
        Ok(rd) => to_provider(cx, login, rd.into(), &cx.app().label).await,
        Err(resp) => *resp,
    }
}

/// The `rd` of a `/.portcullis/login` request, checked (api.md: on the application's domains).
pub(super) fn checked_rd(cx: &Ctx<'_>) -> Result<Url, Refused> {
    let Some(base) = cx.base() else {
        return Err(Box::new(cx.refuse(Refusal::BadRequest("invalid_host"))));
    };
    let rd = rules::query_param(cx.uri.query().unwrap_or_default(), "rd");
    rules::return_url(rd.as_deref().unwrap_or("/"), &base, &cx.live.router, cx.app_index)
        .map_err(|e| Box::new(cx.sign_in_failed(StatusCode::BAD_REQUEST, e.reason(), &e)))
}

/// The answer that ends a sign-in step early (boxed: the `Ok` side is small).
pub(super) type Refused = Box<Response<OutBody>>;

/// Binds a new provider sign-in to this browser (the state cookie on this host's callback
/// path, for sign-in `label`) and sends the browser to the provider; `rd` is where the
/// callback goes on.
pub(super) async fn to_provider(cx: &Ctx<'_>, login: &AppLogin, rd: String, label: &str) -> Response<OutBody> {
    let (Some(base), Some(authority)) = (cx.base(), cx.authority()) else {
        return cx.refuse(Refusal::BadRequest("invalid_host"));
    };
    let provider = match login.oidc.provider().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(app = %cx.app().label, error = %e, "identity provider discovery failed");
            return cx.sign_in_failed(e.status(), e.reason(), &e);
        }
    };
    let (Some(state), Some(nonce), Some(verifier)) =
        (random_b64url(RANDOM_BYTES), random_b64url(RANDOM_BYTES), random_b64url(RANDOM_BYTES))
    else {
        return cx.sign_in_failed(StatusCode::INTERNAL_SERVER_ERROR, "no_randomness", &"the system RNG failed");
    };
    let pending = Pending {
        state,
        nonce,
        verifier,
        rd,
        redirect_uri: rules::redirect_uri(base.scheme(), authority),
        app: label.to_owned(),
        exp: cx.now + rules::STATE_TTL_SECS,
    };
    let cookie = login.encode_pending(&pending).and_then(|v| {
        let attrs = rules::state_cookie_attrs(login.attrs);
        rules::set_cookie(rules::STATE_COOKIE, &v, rules::STATE_COOKIE_PATH, rules::STATE_TTL_SECS, attrs)
    });
    let Some(cookie) = cookie else {
        return cx.sign_in_failed(StatusCode::INTERNAL_SERVER_ERROR, "state_cookie_failed", &"signing failed");
    };
    let oidc = login.oidc.login();
    let url = rules::authorization_url(&provider.authorization_endpoint, &oidc.client_id, &oidc.scopes, &pending);
    cx.count("started");
    let mut resp = redirect_to(url.as_str());
    resp.headers_mut().append(SET_COOKIE, cookie);
    cx.finish(resp)
}

/// `/.portcullis/callback?code&state`: only the browser that started the sign-in (it holds the
/// state cookie), only once; then the token exchange, the ID token checks, the policies, and
/// the session cookie.
pub(super) async fn callback(cx: &Ctx<'_>, login: &AppLogin) -> Response<OutBody> {
    let resp = match signed_in_user(cx, login, &cx.app().label).await {
        Ok((user, pending)) => session(cx, login, user, &pending),
        Err(resp) => resp,
    };
    state_cleared(resp, login)
}

/// Whatever happened at a callback, this sign-in attempt is over: the state cookie goes.
pub(super) fn state_cleared(mut resp: Response<OutBody>, login: &AppLogin) -> Response<OutBody> {
    let clear =
        rules::set_cookie(rules::STATE_COOKIE, "", rules::STATE_COOKIE_PATH, 0, rules::state_cookie_attrs(login.attrs));
    if let Some(clear) = clear {
        resp.headers_mut().append(SET_COOKIE, clear);
    }
    resp
}

/// The callback of sign-in `label`, up to the verified user: the state cookie, once, the token
/// exchange, the ID token, and its verified email.
pub(super) async fn signed_in_user(
    cx: &Ctx<'_>,
    login: &AppLogin,
    label: &str,
) -> Result<(Arc<User>, Pending), Response<OutBody>> {
    let callback_failed = |e: CallbackError| {
        let status = match e {
            CallbackError::ProviderError => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        cx.sign_in_failed(status, e.reason(), &e)
    };
    let params = rules::callback_params(cx.uri.query()).map_err(callback_failed)?;
    let cookie = rules::cookie(cx.headers, rules::STATE_COOKIE).ok_or(CallbackError::NoStateCookie);
    let pending = cookie.and_then(|c| login.decode_pending(c).ok_or(CallbackError::BadStateCookie));
    let pending = pending.map_err(callback_failed)?;
    rules::check_pending(&pending, &params.state, label, cx.now).map_err(callback_failed)?;
    if !login.first_redemption(&pending.state) {
        return Err(callback_failed(CallbackError::Replayed));
    }
    let provider = login.oidc.provider().await.map_err(|e| cx.sign_in_failed(e.status(), e.reason(), &e))?;
    let user = login
        .oidc
        .redeem(&provider, &params.code, &pending.verifier, &pending.redirect_uri, &pending.nonce, cx.now)
        .await
        .map_err(|e| cx.sign_in_failed(e.status(), e.reason(), &e))?;

    if !rules::email_acceptable(&user.claims, login.allow_unverified_email) {
        cx.count("email_unverified");
        return Err(cx.refuse(Refusal::Forbidden { reason: "email_unverified", policy: None }));
    }
    Ok((user, pending))
}

/// The application's session for a signed-in user, after its policies, and the way back to
/// `pending.rd`.
fn session(cx: &Ctx<'_>, login: &AppLogin, user: Arc<User>, pending: &Pending) -> Response<OutBody> {
    match admitted_session(cx, login, user, cx.now.saturating_add(login.session_secs)) {
        Ok(cookie) => {
            let mut resp = redirect_to(&pending.rd);
            resp.headers_mut().append(SET_COOKIE, cookie);
            cx.finish(resp)
        }
        Err(resp) => *resp,
    }
}

/// The session cookie (valid until `exp`) of a user the application's policies admit, or the
/// refusal; counted and logged either way.
pub(super) fn admitted_session(
    cx: &Ctx<'_>,
    login: &AppLogin,
    user: Arc<User>,
    exp: i64,
) -> Result<HeaderValue, Refused> {
    // The policies decide on every request; asking them now (the request path's own step) gives
    // a refused user a clear 403 naming the policy instead of a session every request refuses.
    let authn = Authn::Authenticated(Principal::User(user.clone()));
    let verdict = request::policies(&cx.app().spec, cx.headers, &authn, cx.peer, cx.serving.trusted_proxies);
    if let Some(refusal) = verdict.enforced_refusal() {
        cx.count("forbidden");
        return Err(Box::new(cx.refuse(refusal.clone())));
    }
    let session = login
        .mint_session_until(&user, cx.now, exp)
        .and_then(|t| rules::set_cookie(&login.cookie_name, &t, "/", exp.saturating_sub(cx.now), login.attrs))
        .ok_or_else(|| {
            Box::new(cx.sign_in_failed(StatusCode::INTERNAL_SERVER_ERROR, "session_failed", &"signing failed"))
        })?;
    cx.count("ok");
    tracing::info!(request_id = cx.request_id, app = %cx.app().label, "signed in");
    Ok(session)
}

/// `/.portcullis/identity`: the signed-in user (any valid JWT of the application) as JSON,
/// else 401. Never redirects.
pub(super) fn identity(cx: &Ctx<'_>) -> (Response<OutBody>, &'static str) {
    let app = cx.app();
    match request::authenticate(&app.decisions(), cx.headers, cx.now).authn {
        Authn::Authenticated(Principal::User(user)) => {
            let claim = |n: &str| user.claims.get(n).cloned().unwrap_or(serde_json::Value::Null);
            let body = serde_json::json!({
                "email": user.email, "name": claim("name"), "groups": claim("groups"),
                "sub": claim("sub"), "iss": user.issuer, "exp": user.expires_at,
            });
            (cx.finish(json(StatusCode::OK, body)), "identity")
        }
        Authn::Failed(f) => (unauthenticated(cx, f.reason(), false), f.reason()),
        _ => (unauthenticated(cx, "no_credentials", false), "no_credentials"),
    }
}
