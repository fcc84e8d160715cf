//! One OAuth token endpoint and Gatehouse's client credentials there.

use serde::Deserialize;

use crate::error::CredentialError;

/// A successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1).
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    /// The token.
    pub access_token: String,
    /// Lifetime in seconds.
    #[serde(default)]
    pub expires_in: Option<i64>,
    /// A refresh token (authorization code and refresh grants).
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Granted scopes.
    #[serde(default)]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("scope", &self.scope)
            .finish()
    }
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// How the client authenticates at the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`, the OAuth default).
    Basic,
    /// In the form body (`client_secret_post`, what Entra documents for OBO).
    Post,
}

/// A token endpoint, found by discovery when not configured.
#[derive(Debug)]
pub struct TokenEndpoint {
    pub(crate) server: String,
    configured: Option<String>,
    issuer: Option<String>,
    discovered: tokio::sync::OnceCell<crate::discovery::ServerMetadata>,
    pub(crate) client_id: String,
    client_secret: Option<String>,
    auth: ClientAuth,
    http: reqwest::Client,
}

impl TokenEndpoint {
    /// An endpoint for server `server`'s credentials.
    pub fn new(
        server: &str,
        token_url: Option<String>,
        issuer: Option<String>,
        client_id: String,
        client_secret: Option<String>,
        auth: ClientAuth,
        http: reqwest::Client,
    ) -> TokenEndpoint {
        TokenEndpoint {
            server: server.to_string(),
            configured: token_url,
            issuer,
            discovered: tokio::sync::OnceCell::new(),
            client_id,
            client_secret,
            auth,
            http,
        }
    }

    fn unavailable(&self, reason: impl Into<String>) -> CredentialError {
        CredentialError::Unavailable {
            server: self.server.clone(),
            reason: reason.into(),
        }
    }

    /// The issuer's metadata (discovered once).
    pub(crate) async fn metadata(
        &self,
    ) -> Result<&crate::discovery::ServerMetadata, CredentialError> {
        let issuer = self
            .issuer
            .as_deref()
            .ok_or_else(|| self.unavailable("no issuer configured for discovery"))?;
        self.discovered
            .get_or_try_init(|| async {
                crate::discovery::discover(&self.http, issuer)
                    .await
                    .map_err(|e| self.unavailable(e.to_string()))
            })
            .await
    }

    async fn url(&self) -> Result<String, CredentialError> {
        if let Some(u) = &self.configured {
            return Ok(u.clone());
        }
        self.metadata()
            .await?
            .token_endpoint
            .clone()
            .ok_or_else(|| self.unavailable("the issuer publishes no token_endpoint"))
    }

    /// Posts a token request with the client's authentication.
    pub async fn request(&self, form: &[(&str, &str)]) -> Result<TokenResponse, CredentialError> {
        let url = self.url().await?;
        let mut form: Vec<(&str, &str)> = form.to_vec();
        let mut req = self.http.post(&url);
        match (&self.client_secret, self.auth) {
            (Some(secret), ClientAuth::Basic) => {
                req = req.basic_auth(form_encode(&self.client_id), Some(form_encode(secret)));
            }
            (Some(secret), ClientAuth::Post) => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", secret));
            }
            (None, _) => form.push(("client_id", &self.client_id)),
        }
        let resp = req
            .form(&form)
            .send()
            .await
            .map_err(|e| self.unavailable(format!("{url}: {}", crate::http_error(&e))))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.unavailable(format!("{url}: {}", crate::http_error(&e))))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| self.unavailable(format!("{url}: invalid token response: {e}")));
        }
        match serde_json::from_slice::<ErrorResponse>(&body) {
            Ok(e) => Err(CredentialError::Refused {
                server: self.server.clone(),
                error: e.error,
                description: e.error_description,
            }),
            Err(_) => Err(self.unavailable(format!("{url}: HTTP {}", status.as_u16()))),
        }
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before Basic authentication.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
