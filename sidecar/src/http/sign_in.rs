//! The `/.portcullis/` endpoints' dispatcher: which endpoints an application serves, and who
//! answers — the application's own OIDC steps ([`super::oidc_steps`]) or, with an authentication
//! host, the hand-off ([`super::handoff`]) — and sign-out, which ends either kind. Both kinds
//! share `oidc_steps`' [`Ctx`]; neither imports this module, so the three form no circle.

use http::header::SET_COOKIE;
use http::{Response, StatusCode};

use super::handoff;
use super::oidc_steps::{self as steps, Ctx};
use super::respond::{json, redirect_to, Refusal};
use crate::decide::sign_in::{self as rules, Endpoint};
use crate::identity::AppLogin;
use crate::outbound::OutBody;

/// Whether an application serves this sign-in endpoint: logout and identity always; login with
/// `login`; the OIDC callback without an authentication host, the hand-off with one. Anything
/// else under `/.portcullis/` is a 404 (`phases::front` asks this before sending a request here).
pub fn serves(login: Option<&AppLogin>, endpoint: Endpoint) -> bool {
    match (endpoint, login) {
        (Endpoint::Logout | Endpoint::Identity, _) | (Endpoint::Login, Some(_)) => true,
        (Endpoint::Callback, Some(l)) => l.authentication_host.is_none(),
        (Endpoint::Handoff, Some(l)) => l.authentication_host.is_some(),
        (Endpoint::Login | Endpoint::Callback | Endpoint::Handoff, None) => false,
    }
}

/// Answers a request to `/.portcullis/…`; the reason label is returned for the log line.
pub async fn handle(cx: &Ctx<'_>, endpoint: Endpoint) -> (Response<OutBody>, &'static str) {
    let login = cx.app().login.as_ref();
    if !serves(login, endpoint) {
        return (cx.refuse(Refusal::ReservedPath), Refusal::ReservedPath.reason());
    }
    match (endpoint, login) {
        (Endpoint::Login, Some(login)) => match login.authentication_host.as_deref() {
            Some(host) => (handoff::start(cx, login, host), "login"),
            None => (steps::start(cx, login).await, "login"),
        },
        (Endpoint::Callback, Some(login)) => (steps::callback(cx, login).await, "callback"),
        (Endpoint::Handoff, Some(login)) => (handoff::redeem(cx, login), "handoff"),
        (Endpoint::Logout, _) => (logout(cx), "logout"),
        (Endpoint::Identity, _) => steps::identity(cx),
        (Endpoint::Login | Endpoint::Callback | Endpoint::Handoff, None) => {
            (cx.refuse(Refusal::ReservedPath), Refusal::ReservedPath.reason())
        }
    }
}

/// `/.portcullis/logout[?rd=…]`: clears the session cookie; redirects to `rd` when it is on the
/// application's domains, else answers 200.
fn logout(cx: &Ctx<'_>) -> Response<OutBody> {
    let app = cx.app();
    let attrs = app.login.as_ref().map_or(
        rules::CookieAttrs { same_site: portcullis_crds::v1alpha1::SameSite::Lax, http_only: true, secure: true },
        |l| l.attrs,
    );
    let rd = rules::query_param(cx.uri.query().unwrap_or_default(), "rd")
        .zip(cx.base())
        .and_then(|(rd, base)| rules::return_url(&rd, &base, &cx.live.router, cx.app_index).ok());
    let everywhere = app.login.as_ref().and_then(|l| l.authentication_host.as_deref());
    let mut resp = match (everywhere, rd) {
        // One sign-in, one sign-out: the authentication host ends the identity session too.
        (Some(host), rd) => match handoff::logout_url(cx, host, rd) {
            Some(url) => redirect_to(url.as_str()),
            None => return cx.refuse(Refusal::BadRequest("invalid_host")),
        },
        (None, Some(rd)) => redirect_to(rd.as_str()),
        (None, None) => json(StatusCode::OK, serde_json::json!({ "status": "signed_out" })),
    };
    if let Some(clear) = rules::set_cookie(&app.spec.identity.cookie_name, "", "/", 0, attrs) {
        resp.headers_mut().append(SET_COOKIE, clear);
    }
    cx.finish(resp)
}
