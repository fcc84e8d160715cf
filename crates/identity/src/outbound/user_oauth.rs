//! Per-user delegated OAuth (`user_oauth`): each user authorizes Gatehouse once at the
//! downstream authorization server (authorization code + PKCE, RFC 8707 resource); Gatehouse
//! keeps the refresh token encrypted in the store ([`Vault`]) and sends the user's own access
//! token on each call.
//!
//! The OAuth `state` is sealed with the vault key and carries who started the flow, for which
//! server, and the PKCE verifier — so the callback can land on any replica.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use gatehouse_config::CredentialsConfig;
use gatehouse_store::CredentialKey;

use super::{EXPIRY_MARGIN_SECS, TokenEndpoint, TokenResponse, Vault};
use crate::cache::{ExpiringCache, unix_now};
use crate::error::CredentialError;
use crate::principal::{Caller, PrincipalKind};

/// Kind of the vault rows holding refresh tokens.
const REFRESH_KIND: &str = "oauth_refresh";
/// How long an authorization flow may take.
const STATE_TTL_SECS: i64 = 600;

/// What the sealed OAuth `state` carries.
#[derive(Serialize, Deserialize)]
struct FlowState {
    /// Server name.
    s: String,
    /// Principal issuer and subject.
    i: String,
    u: String,
    /// PKCE verifier.
    v: String,
    /// Expiry (unix seconds).
    e: i64,
}

/// The `user_oauth` flow of one server.
pub struct UserOauth {
    server: String,
    endpoint: TokenEndpoint,
    authorization_url: Option<String>,
    scope: String,
    resource: Option<String>,
    redirect_uri: String,
    vault: Arc<Vault>,
    access: ExpiringCache<String, Arc<str>>,
}

impl std::fmt::Debug for UserOauth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserOauth")
            .field("server", &self.server)
            .finish()
    }
}

/// Purpose bound into sealed states.
const STATE_AAD: &[u8] = b"gatehouse/user-oauth-state/v1";

impl UserOauth {
    pub(super) fn new(
        server: &str,
        c: &CredentialsConfig,
        endpoint: TokenEndpoint,
        vault: Arc<Vault>,
        redirect_base: &str,
    ) -> UserOauth {
        UserOauth {
            server: server.to_string(),
            endpoint,
            authorization_url: c.authorization_url.clone(),
            scope: c.scopes.join(" "),
            resource: c.resource.clone(),
            redirect_uri: c.redirect_uri.clone().unwrap_or_else(|| {
                format!("{}{}", redirect_base.trim_end_matches('/'), CALLBACK_PATH)
            }),
            vault,
            access: ExpiringCache::new(10_000),
        }
    }

    fn vault_key(&self, issuer: &str, subject: &str) -> CredentialKey {
        CredentialKey::new(issuer, subject, &self.server, REFRESH_KIND)
    }

    /// The user's access token: cached, else refreshed from the stored refresh token. Without a
    /// usable refresh token the user must authorize: the error carries the URL.
    pub async fn access_token(&self, caller: &Caller) -> Result<Arc<str>, CredentialError> {
        let p = &caller.principal;
        if p.kind == PrincipalKind::Anonymous {
            return Err(CredentialError::NoUser {
                server: self.server.clone(),
            });
        }
        let cache_key = p.key().to_string();
        if let Some(t) = self.access.get(&cache_key, EXPIRY_MARGIN_SECS) {
            return Ok(t);
        }
        let vkey = self.vault_key(&p.issuer, &p.subject);
        if let Some(refresh) = self.vault.get(&vkey).await? {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
            ];
            if let Some(r) = &self.resource {
                form.push(("resource", r));
            }
            match self.endpoint.request(&form).await {
                Ok(r) => return self.keep(&vkey, cache_key, r).await,
                Err(CredentialError::Refused { error, .. }) if error == "invalid_grant" => {
                    tracing::info!(server = %self.server, principal = %cache_key, "refresh token revoked or expired; the user must authorize again");
                    self.vault.delete(&vkey).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(CredentialError::AuthorizationRequired {
            server: self.server.clone(),
            url: self.authorization_url_for(&p.issuer, &p.subject).await?,
        })
    }

    async fn keep(
        &self,
        vkey: &CredentialKey,
        cache_key: String,
        r: TokenResponse,
    ) -> Result<Arc<str>, CredentialError> {
        if let Some(refresh) = &r.refresh_token {
            self.vault.put(vkey.clone(), refresh, None).await?;
        }
        let token: Arc<str> = r.access_token.into();
        self.access.insert(
            cache_key,
            token.clone(),
            unix_now() + r.expires_in.unwrap_or(300),
        );
        Ok(token)
    }

    /// Whether the user has authorized Gatehouse (a usable access token or a stored refresh
    /// token; a revoked one shows only when next used).
    pub async fn is_authorized(&self, caller: &Caller) -> Result<bool, CredentialError> {
        let p = &caller.principal;
        if self
            .access
            .get(&p.key().to_string(), EXPIRY_MARGIN_SECS)
            .is_some()
        {
            return Ok(true);
        }
        Ok(self
            .vault
            .get(&self.vault_key(&p.issuer, &p.subject))
            .await?
            .is_some())
    }

    /// Starts an authorization for a user: the URL to open in a browser.
    pub async fn authorization_url_for(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<String, CredentialError> {
        let endpoint = match &self.authorization_url {
            Some(u) => u.clone(),
            None => self
                .endpoint
                .metadata()
                .await?
                .authorization_endpoint
                .clone()
                .ok_or_else(|| CredentialError::Unavailable {
                    server: self.server.clone(),
                    reason: "the issuer publishes no authorization_endpoint".into(),
                })?,
        };
        let mut verifier = [0u8; 32];
        rand::rng().fill_bytes(&mut verifier);
        let verifier = B64.encode(verifier);
        let challenge = B64.encode(crate::cache::sha256(verifier.as_bytes()));
        let state = FlowState {
            s: self.server.clone(),
            i: issuer.to_string(),
            u: subject.to_string(),
            v: verifier,
            e: unix_now() + STATE_TTL_SECS,
        };
        let sealed = self.vault.seal(
            STATE_AAD,
            &serde_json::to_vec(&state).expect("state serialises"),
        );
        let mut url = url::Url::parse(&endpoint).map_err(|e| CredentialError::Unavailable {
            server: self.server.clone(),
            reason: format!("authorization endpoint {endpoint}: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.endpoint.client_id)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("state", &B64.encode(sealed))
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if !self.scope.is_empty() {
                q.append_pair("scope", &self.scope);
            }
            // OpenID Connect grants offline_access (a refresh token) only with prompt=consent.
            if self.scope.split(' ').any(|s| s == "offline_access") {
                q.append_pair("prompt", "consent");
            }
            if let Some(r) = &self.resource {
                q.append_pair("resource", r);
            }
        }
        Ok(url.into())
    }

    /// The server a sealed `state` belongs to (to route a callback), if it opens.
    pub fn state_server(vault: &Vault, state: &str) -> Option<String> {
        open_state(vault, state).map(|s| s.s)
    }

    /// Completes an authorization at the callback: exchanges the code, stores the refresh
    /// token. Returns the principal (issuer, subject) it was for.
    pub async fn complete(
        &self,
        state: &str,
        code: &str,
    ) -> Result<(String, String), CredentialError> {
        let invalid = || CredentialError::Refused {
            server: self.server.clone(),
            error: "invalid_request".into(),
            description: Some("the authorization state is invalid or expired; start again".into()),
        };
        let st = open_state(&self.vault, state).ok_or_else(invalid)?;
        if st.s != self.server || st.e < unix_now() {
            return Err(invalid());
        }
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", st.v.as_str()),
        ];
        if let Some(r) = &self.resource {
            form.push(("resource", r));
        }
        let r = self.endpoint.request(&form).await?;
        let vkey = self.vault_key(&st.i, &st.u);
        let cache_key = if st.i.is_empty() {
            "anonymous".to_string()
        } else {
            format!("{}#{}", st.i, st.u)
        };
        self.keep(&vkey, cache_key, r).await?;
        Ok((st.i, st.u))
    }
}

fn open_state(vault: &Vault, state: &str) -> Option<FlowState> {
    let sealed = B64.decode(state).ok()?;
    let plain = vault.open_sealed(STATE_AAD, &sealed)?;
    serde_json::from_slice(&plain).ok()
}

/// Where the authorization server sends the browser back.
pub const CALLBACK_PATH: &str = "/oauth/callback";
