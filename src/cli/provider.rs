//! The identity provider as the person's client talks to it: discovery,
//! then the `oauth2` crate's requests (code exchange with PKCE, device
//! grant, refresh, revocation) over our reqwest client. Every answer is
//! turned into a `TokenSet` or a `CliError` here. Discovery is one plain
//! GET: the `openidconnect` crate would bring ID-token verification, which
//! the person's side has no use for (the gateway validates every token).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, ClientId, ClientSecret, DeviceAuthorizationUrl, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, ErrorResponse, ExtraTokenFields, RefreshToken, RequestTokenError, RevocationUrl,
    StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use super::CliError;
use super::error::description;
use super::settings::Settings;
use crate::secret::Secret;

const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A discovery document is a few KiB; anything far larger is not one.
const DISCOVERY_LIMIT: usize = 256 * 1024;

/// The ID token, which plain OAuth 2.0 token responses do not name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenField {}

type TokenAnswer = StandardTokenResponse<IdTokenField, BasicTokenType>;

/// An OAuth client whose authorization and token endpoints are known, and
/// whose device and revocation endpoints may be.
pub type OidcClient = oauth2::Client<
    BasicErrorResponse,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointMaybeSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointSet,
>;

/// The tokens of one login, as the cache keeps them.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: Secret,
    /// Unix seconds; from `expires_in` when the provider said.
    pub expires_at: Option<u64>,
    pub id_token: Option<Secret>,
    pub refresh_token: Option<Secret>,
}

/// What discovery tells about the issuer.
#[derive(Debug, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    device_authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    code_challenge_methods_supported: Option<Vec<String>>,
}

pub struct Provider {
    pub issuer: String,
    pub client: OidcClient,
    pub http: reqwest::Client,
    pub has_device_flow: bool,
    pub has_revocation: bool,
    token_endpoint: String,
}

impl Provider {
    /// Reads `{issuer}/.well-known/openid-configuration` and builds the
    /// client for `settings`' client id (and secret, if any).
    pub async fn discover(settings: &Settings) -> Result<Provider, CliError> {
        let issuer = settings.issuer()?;
        let client_id = settings.client_id()?;
        // No redirects: an answer must come from the issuer's own URLs.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| unreachable_at(issuer, &e))?;
        let url = format!("{issuer}/.well-known/openid-configuration");
        let bad = |reason: String| CliError::Discovery {
            url: url.clone(),
            reason,
        };
        let response = http
            .get(&url)
            .send()
            .await
            .map_err(|e| unreachable_at(&url, &e))?;
        if !response.status().is_success() {
            return Err(bad(format!("HTTP {}", response.status())));
        }
        if response
            .content_length()
            .is_some_and(|n| n > DISCOVERY_LIMIT as u64)
        {
            return Err(bad("larger than 256 KiB".into()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| unreachable_at(&url, &e))?;
        if body.len() > DISCOVERY_LIMIT {
            return Err(bad("larger than 256 KiB".into()));
        }
        let meta: Metadata = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("not the expected JSON: {e}")))?;
        if meta.issuer.trim_end_matches('/') != issuer {
            return Err(bad(format!(
                "it names the issuer {:?}, not {issuer:?}",
                meta.issuer
            )));
        }
        if let Some(methods) = &meta.code_challenge_methods_supported {
            if !methods.iter().any(|m| m == "S256") {
                return Err(bad("the issuer does not offer PKCE with S256".into()));
            }
        }
        let not_url = |name: &str| bad(format!("its {name} is not a URL"));
        let auth = AuthUrl::new(meta.authorization_endpoint.clone())
            .map_err(|_| not_url("authorization_endpoint"))?;
        let token =
            TokenUrl::new(meta.token_endpoint.clone()).map_err(|_| not_url("token_endpoint"))?;
        let device = meta
            .device_authorization_endpoint
            .clone()
            .map(DeviceAuthorizationUrl::new)
            .transpose()
            .map_err(|_| not_url("device_authorization_endpoint"))?;
        let revocation = meta
            .revocation_endpoint
            .clone()
            .map(RevocationUrl::new)
            .transpose()
            .map_err(|_| not_url("revocation_endpoint"))?;
        let mut client = oauth2::Client::new(ClientId::new(client_id.to_owned()))
            .set_auth_uri(auth)
            .set_token_uri(token)
            .set_device_authorization_url_option(device)
            .set_revocation_url_option(revocation);
        if let Some(secret) = &settings.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        Ok(Provider {
            issuer: issuer.to_owned(),
            has_device_flow: meta.device_authorization_endpoint.is_some(),
            has_revocation: meta.revocation_endpoint.is_some(),
            token_endpoint: meta.token_endpoint,
            client,
            http,
        })
    }

    /// New tokens for `refresh_token`. A rotated refresh token replaces
    /// the old one; a provider that sends none keeps the old one valid.
    pub async fn refresh(&self, old: &TokenSet) -> Result<TokenSet, CliError> {
        let Some(refresh_token) = &old.refresh_token else {
            return Err(CliError::RefreshRefused {
                error: "no refresh token was issued at login".into(),
                description: String::new(),
            });
        };
        let token = RefreshToken::new(refresh_token.expose().to_owned());
        let answer = self
            .client
            .exchange_refresh_token(&token)
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => CliError::RefreshRefused {
                    error: r.error().to_string(),
                    description: description(r.error_description().map(String::as_str)),
                },
                other => self.request_failed(other),
            })?;
        let mut fresh = token_set(&answer);
        if fresh.refresh_token.is_none() {
            fresh.refresh_token = Some(refresh_token.clone());
        }
        Ok(fresh)
    }

    /// Turns a token-endpoint failure other than an OAuth error answer
    /// into a `CliError`, naming the endpoint and never echoing the body.
    pub fn request_failed<RE: std::error::Error + 'static, T: ErrorResponse + 'static>(
        &self,
        e: RequestTokenError<RE, T>,
    ) -> CliError {
        match e {
            RequestTokenError::Request(e) => CliError::IssuerUnreachable {
                url: self.token_endpoint.clone(),
                reason: error_chain(&e),
            },
            RequestTokenError::Parse(e, _body) => CliError::Provider {
                endpoint: self.token_endpoint.clone(),
                error: format!("an answer that is not a token response, at {}", e.path()),
                description: String::new(),
            },
            RequestTokenError::ServerResponse(r) => CliError::Provider {
                endpoint: self.token_endpoint.clone(),
                error: r.to_string(),
                description: String::new(),
            },
            RequestTokenError::Other(m) => CliError::Provider {
                endpoint: self.token_endpoint.clone(),
                error: m,
                description: String::new(),
            },
        }
    }
}

/// The tokens of a token-endpoint answer.
pub fn token_set(answer: &TokenAnswer) -> TokenSet {
    TokenSet {
        access_token: Secret::new(answer.access_token().secret().clone()),
        expires_at: answer.expires_in().map(|d| now() + d.as_secs()),
        id_token: answer.extra_fields().id_token.clone().map(Secret::new),
        refresh_token: answer
            .refresh_token()
            .map(|t| Secret::new(t.secret().clone())),
    }
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn unreachable_at(url: &str, e: &(dyn std::error::Error + 'static)) -> CliError {
    CliError::IssuerUnreachable {
        url: url.to_owned(),
        reason: error_chain(e),
    }
}

/// The innermost cause of `e` ("Connection refused (os error 111)"), which
/// is what a person can act on; reqwest's outer layers only say "error
/// sending request".
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    loop {
        if last
            .downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
        {
            return "timed out".into();
        }
        match last.source() {
            Some(next) => last = next,
            None => return super::error::one_line(&last.to_string()),
        }
    }
}
