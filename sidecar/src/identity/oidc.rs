//! The identity provider, seen from the sidecar: discovery, the token request, and ID-token
//! verification (OpenID Connect Core §3.1.3, Discovery §4).
//!
//! Owns the I/O of sign-in. ID tokens are verified by the same JWT code as every other token
//! (`decide::authn::jwt`), against the provider's JWKS fetched by the shared `JwksRegistry`
//! (cached, refreshed, refetched on an unknown `kid`), with `iss` = the configured issuer and
//! `aud` = the client id; the nonce is checked here. Never logs a code, a token or a secret.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use portcullis_crds::snapshot::{self, Algorithm, JwksSource, Login};
use tokio::sync::Mutex;
use url::Url;

use crate::decide::authn::jwt::{JwtConfig, JwtFailure};
use crate::decide::authn::User;
use crate::jwks::{IssuerKeys, JwksRegistry};
use crate::outbound::{exchange, ExchangeError, HttpClient, OutBody};

/// Bound on each exchange with the provider (discovery, token request).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest discovery document or token response read.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// A discovery document is reused this long; a failed discovery is retried on the next sign-in.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// How long a first sign-in waits for the provider's JWKS.
const JWKS_WAIT: Duration = Duration::from_secs(5);

/// Why sign-in could not talk to the provider, or did not like its answer.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("discovery at {url}: {source}")]
    Discovery { url: String, source: ExchangeError },
    #[error("discovery at {url} answered HTTP {status}; is login.oidc.issuer right?")]
    DiscoveryStatus { url: String, status: u16 },
    #[error("discovery document: {0}")]
    DiscoveryDocument(String),
    #[error("token request: {0}")]
    Token(ExchangeError),
    #[error(
        "token request answered HTTP {status} ({error}); check the client id, secret and redirect URI registration"
    )]
    TokenStatus { status: u16, error: String },
    #[error("the token response has no id_token")]
    NoIdToken,
    #[error("the ID token was refused: {}", .0.reason())]
    IdToken(JwtFailure),
    #[error("the ID token's nonce does not match this sign-in")]
    Nonce,
}

impl OidcError {
    /// Stable label for metrics, logs and the JSON body.
    pub fn reason(&self) -> &'static str {
        match self {
            OidcError::Discovery { .. } | OidcError::DiscoveryStatus { .. } | OidcError::DiscoveryDocument(_) => {
                "idp_discovery_failed"
            }
            OidcError::Token(_) | OidcError::TokenStatus { .. } | OidcError::NoIdToken => "idp_token_failed",
            OidcError::IdToken(_) => "id_token_invalid",
            OidcError::Nonce => "id_token_nonce_mismatch",
        }
    }

    /// 502 when the provider is unreachable or broken, 401 when its answer is refused.
    pub fn status(&self) -> StatusCode {
        match self {
            OidcError::IdToken(_) | OidcError::Nonce | OidcError::TokenStatus { status: 400..=499, .. } => {
                StatusCode::UNAUTHORIZED
            }
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The provider's endpoints and keys, from its discovery document.
pub struct Provider {
    pub authorization_endpoint: Url,
    token_endpoint: Uri,
    jwt: JwtConfig,
    keys: Vec<Arc<IssuerKeys>>,
}

/// One application's OIDC client.
pub struct Oidc {
    login: Login,
    client: HttpClient,
    registry: Arc<JwksRegistry>,
    discovered: Mutex<Option<(Arc<Provider>, tokio::time::Instant)>>,
}

#[derive(serde::Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

// === impl Oidc ===

impl Oidc {
    pub fn new(login: Login, client: HttpClient, registry: Arc<JwksRegistry>) -> Self {
        Self { login, client, registry, discovered: Mutex::new(None) }
    }

    pub fn login(&self) -> &Login {
        &self.login
    }

    /// The provider, discovered once and cached for [`DISCOVERY_TTL`].
    pub async fn provider(&self) -> Result<Arc<Provider>, OidcError> {
        let mut cached = self.discovered.lock().await;
        if let Some((p, at)) = cached.as_ref() {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(p.clone());
            }
        }
        let provider = Arc::new(self.discover().await?);
        *cached = Some((provider.clone(), tokio::time::Instant::now()));
        Ok(provider)
    }

    async fn discover(&self) -> Result<Provider, OidcError> {
        let url = format!("{}/.well-known/openid-configuration", self.login.issuer.trim_end_matches('/'));
        let request = Request::get(url.as_str())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("portcullis-sidecar/", env!("CARGO_PKG_VERSION")))
            .body(empty())
            .map_err(|_| OidcError::DiscoveryDocument("the issuer is not a valid URL".into()))?;
        let (status, body) = exchange(&self.client, request, EXCHANGE_TIMEOUT, MAX_BODY_BYTES)
            .await
            .map_err(|source| OidcError::Discovery { url: url.clone(), source })?;
        if status != StatusCode::OK {
            return Err(OidcError::DiscoveryStatus { url, status: status.as_u16() });
        }
        let doc: Discovery =
            serde_json::from_slice(&body).map_err(|e| OidcError::DiscoveryDocument(format!("not valid JSON: {e}")))?;
        // Discovery §4.3: the issuer in the document must be exactly the one we asked.
        if doc.issuer != self.login.issuer {
            return Err(OidcError::DiscoveryDocument(format!(
                "issuer {:?} differs from login.oidc.issuer {:?}",
                doc.issuer, self.login.issuer
            )));
        }
        let endpoint = |name: &str, value: &str| -> Result<Url, OidcError> {
            let url = Url::parse(value).map_err(|_| OidcError::DiscoveryDocument(format!("{name} is not a URL")))?;
            let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                return Err(OidcError::DiscoveryDocument(format!("{name} must be https")));
            }
            Ok(url)
        };
        let authorization_endpoint = endpoint("authorization_endpoint", &doc.authorization_endpoint)?;
        let token_endpoint = endpoint("token_endpoint", &doc.token_endpoint)?
            .as_str()
            .parse::<Uri>()
            .map_err(|_| OidcError::DiscoveryDocument("token_endpoint is not a URI".into()))?;
        let jwks_uri = endpoint("jwks_uri", &doc.jwks_uri)?;
        let issuer = snapshot::Issuer {
            issuer: self.login.issuer.clone(),
            jwks: JwksSource::Uri(jwks_uri.into()),
            audiences: vec![self.login.client_id.clone()],
            // OpenID Connect Core §15.1: RS256 is the default; we verify every asymmetric one.
            algorithms: Algorithm::ALL.iter().map(|(_, a)| *a).collect(),
            clock_skew_secs: 30,
        };
        let identity = snapshot::Identity {
            cookie_name: "id_token".into(),
            header_name: "x-id-token".into(),
            issuers: vec![issuer.clone()],
        };
        let jwt = JwtConfig::with_cache_capacity(&identity, 64 * 1024)
            .map_err(|e| OidcError::DiscoveryDocument(format!("provider settings: {e}")))?;
        let keys = vec![self.registry.issuer_keys(&issuer)];
        Ok(Provider { authorization_endpoint, token_endpoint, jwt, keys })
    }

    /// Exchanges `code` at the token endpoint (RFC 6749 §4.1.3 with the PKCE verifier, client
    /// authentication `client_secret_basic` when a secret is configured) and verifies the ID
    /// token: signature, `iss`, `aud`, `exp`, and `nonce`.
    pub async fn redeem(
        &self,
        provider: &Provider,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        nonce: &str,
        now: i64,
    ) -> Result<Arc<User>, OidcError> {
        // Built before any await: the serializer is not `Send`.
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("code_verifier", verifier);
            if self.login.client_secret.is_none() {
                form.append_pair("client_id", &self.login.client_id);
            }
            form.finish()
        };
        let mut request = Request::post(provider.token_endpoint.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(USER_AGENT, concat!("portcullis-sidecar/", env!("CARGO_PKG_VERSION")));
        if let Some(secret) = &self.login.client_secret {
            // RFC 6749 §2.3.1: both parts form-encoded before base64.
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(&self.login.client_id),
                enc(secret.expose())
            ));
            let mut value = http::HeaderValue::from_str(&format!("Basic {basic}"))
                .map_err(|_| OidcError::TokenStatus { status: 0, error: "client credentials".into() })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let body: OutBody = Full::new(Bytes::from(form)).map_err(|never| match never {}).boxed();
        let request = request.body(body).map_err(|_| OidcError::NoIdToken)?;
        // The exchange and the endpoint's refusal, in the request's trace when it is traced.
        let exchanged = async {
            let (status, body) =
                exchange(&self.client, request, EXCHANGE_TIMEOUT, MAX_BODY_BYTES).await.map_err(OidcError::Token)?;
            if status != StatusCode::OK {
                // RFC 6749 §5.2: `error` is a short ASCII code, safe to log; nothing else is read.
                let error = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(|e| e.chars().take(64).collect()))
                    .unwrap_or_default();
                return Err(OidcError::TokenStatus { status: status.as_u16(), error });
            }
            Ok(body)
        };
        let body = crate::trace::outbound("oidc token", &provider.token_endpoint, exchanged, OidcError::reason).await?;
        let id_token =
            serde_json::from_slice::<TokenResponse>(&body).ok().and_then(|t| t.id_token).ok_or(OidcError::NoIdToken)?;
        let user = self.verify_id_token(provider, &id_token, now).await?;
        let token_nonce = user.claims.get("nonce").and_then(|n| n.as_str()).unwrap_or_default();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(token_nonce.as_bytes(), nonce.as_bytes())) {
            return Err(OidcError::Nonce);
        }
        Ok(user)
    }

    async fn verify_id_token(&self, provider: &Provider, token: &str, now: i64) -> Result<Arc<User>, OidcError> {
        let keys = &provider.keys;
        if keys[0].current().is_none() {
            keys[0].wait_ready(JWKS_WAIT).await;
        }
        match provider.jwt.authenticate(token, keys, now) {
            Err(JwtFailure::UnknownKey { .. }) if keys[0].refresh_for_unknown_kid().await => {
                provider.jwt.authenticate(token, keys, now).map_err(OidcError::IdToken)
            }
            other => other.map_err(OidcError::IdToken),
        }
    }
}

fn empty() -> OutBody {
    http_body_util::Empty::<Bytes>::new().map_err(|never| match never {}).boxed()
}
