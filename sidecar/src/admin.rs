//! The admin listener (its own port): `/healthz` (alive), `/readyz` (200 once a config is
//! loaded, else 503), `/metrics` (Prometheus text), `GET /config/boot` and `PUT /config` (the
//! boot to seal to, and sealed, signed pushes from the operator, when this sidecar runs in
//! cluster mode) and — only with
//! `--enable-explain-endpoint` — `POST /explain` against the live config. `/explain` is off by
//! default because its answers reveal the configuration (domains, origins, policy names and
//! rules) to whoever can reach this port.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use ipnet::IpNet;
use tokio::net::TcpListener;

use portcullis_crds::push::Refused;

use crate::config::push::{PushReceiver, MAX_PUSH_BYTES};
use crate::config::ConfigStore;
use crate::explain::{explain, ExplainRequest, Options};

/// Largest `POST /explain` body.
pub const MAX_EXPLAIN_BODY: usize = 64 * 1024;

/// Admin settings fixed at start-up.
#[derive(Clone, Default)]
pub struct AdminSettings {
    /// `Some` when `POST /explain` is enabled: the `--trusted-proxies` it evaluates with.
    pub explain: Option<Vec<IpNet>>,
    /// `Some` in cluster mode with a trusted key: `PUT /config` accepts signed pushes.
    pub push: Option<Arc<PushReceiver>>,
}

/// Answers one admin request.
pub fn respond(store: &ConfigStore, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body): (StatusCode, &'static str, String) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") => match store.load() {
            Some(live) => (StatusCode::OK, "text/plain", format!("ready: config {}\n", live.version)),
            None => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready: no configuration loaded\n".into()),
        },
        (&Method::GET, "/metrics") => {
            (StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", store.metrics().render())
        }
        (_, "/healthz" | "/readyz" | "/metrics") => {
            (StatusCode::METHOD_NOT_ALLOWED, "text/plain", "method not allowed\n".into())
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    answer(status, content_type, body)
}

fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A refusal as every push refusal is answered: its status and `{"error": "<reason>"}`, plus
/// a message for people (it names fields and pods, never a config value).
fn refused(reason: Refused, message: String) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(reason.status()).unwrap_or(StatusCode::BAD_REQUEST);
    json(status, serde_json::json!({"error": reason.as_str(), "message": message}))
}

/// The refusal of a sidecar that takes no pushes.
fn disabled() -> Response<Full<Bytes>> {
    refused(
        Refused::Disabled,
        "this sidecar takes no pushes (standalone --manifests, or no --push-public-key)".to_owned(),
    )
}

/// `GET /config/boot`: this boot's id and the public key pushes are sealed to.
fn boot(receiver: Option<&PushReceiver>) -> Response<Full<Bytes>> {
    match receiver {
        Some(receiver) => json(StatusCode::OK, serde_json::json!(receiver.boot_info())),
        None => disabled(),
    }
}

/// `PUT /config`: reads the body (capped), hands it to the receiver, answers JSON.
async fn push(store: &ConfigStore, receiver: Option<&PushReceiver>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    // Refusals before the receiver sees the body are counted here, under the same labels.
    let count = |reason: Refused| store.metrics().config_pushes.with_label_values(&[reason.as_str()]).inc();
    let Some(receiver) = receiver else {
        count(Refused::Disabled);
        return disabled();
    };
    let body = match Limited::new(req.into_body(), MAX_PUSH_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            count(Refused::TooLarge);
            return refused(Refused::TooLarge, format!("the body must be at most {MAX_PUSH_BYTES} bytes"));
        }
    };
    let now = jiff::Timestamp::now().as_second();
    match receiver.receive(store, &body, now) {
        Ok(a) => {
            tracing::info!(sequence = a.sequence, version = %a.version, unchanged = a.unchanged, "configuration pushed");
            json(
                StatusCode::OK,
                serde_json::json!({"sequence": a.sequence, "version": a.version, "unchanged": a.unchanged}),
            )
        }
        Err(e) => {
            tracing::warn!(reason = %e.reason(), error = %e, "configuration push refused; the running configuration stays");
            refused(e.reason(), e.to_string())
        }
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    answer(status, "application/json", body.to_string())
}

/// `POST /explain`: the body is an [`ExplainRequest`]; the answer is `explain --output json`.
async fn explain_endpoint(
    store: &ConfigStore,
    trusted_proxies: &[IpNet],
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let json_error = |status: StatusCode, message: String| {
        answer(status, "application/json", serde_json::json!({ "error": message }).to_string())
    };
    let body = match Limited::new(req.into_body(), MAX_EXPLAIN_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body must be at most {MAX_EXPLAIN_BODY} bytes"),
            )
        }
    };
    let request: ExplainRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("expected {{method, url, headers, peer}}: {e}")),
    };
    let Some(live) = store.load() else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "no configuration loaded".to_owned());
    };
    let options = Options {
        trusted_proxies: trusted_proxies.to_vec(),
        now: jiff::Timestamp::now().as_second(),
        secrets_unavailable: false,
    };
    match explain(&live, &request, &options) {
        Ok(e) => answer(StatusCode::OK, "application/json", serde_json::to_string_pretty(&e).unwrap_or_default()),
        Err(e) => json_error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    store: Arc<ConfigStore>,
    settings: AdminSettings,
    shutdown: impl Future<Output = ()>,
) {
    let settings = Arc::new(settings);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
            () = &mut shutdown => return,
        };
        let (store, settings) = (store.clone(), settings.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (store, settings) = (store.clone(), settings.clone());
                async move {
                    let resp = match (&settings.explain, req.method(), req.uri().path()) {
                        (_, &Method::PUT, "/config") => push(&store, settings.push.as_deref(), req).await,
                        (_, &Method::GET, "/config/boot") => boot(settings.push.as_deref()),
                        (Some(trusted), &Method::POST, "/explain") => explain_endpoint(&store, trusted, req).await,
                        _ => respond(&store, &req),
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
