//! Per-user delegated OAuth (`user_oauth`): each user authorizes Gatehouse once at the
//! downstream authorization server (authorization code + PKCE, RFC 8707 resource); Gatehouse
//! keeps the refresh token encrypted in the store ([`Vault`]) and sends the user's own access
//! token on each call.
//!
//! The OAuth `state` is sealed with the vault key and carries who started the flow, for which
//! server, and the PKCE verifier — so the callback can land on any replica.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use gatehouse_config::CredentialsConfig;
use gatehouse_store::{CredentialKey, CredentialRecord, Credentials};

use super::{EXPIRY_MARGIN_SECS, TokenEndpoint, TokenResponse};
use crate::cache::{ExpiringCache, unix_now};
use crate::error::{CredentialError, IdentityError};
use crate::principal::{Caller, PrincipalKind};

/// Environment variable holding the vault key (base64url, 32 bytes).
pub const VAULT_KEY_ENV: &str = "GATEHOUSE_VAULT_KEY";
/// Kind of the vault rows holding refresh tokens.
const REFRESH_KIND: &str = "oauth_refresh";
/// The credentials-table identity of the platform's own secrets (`gatehouse secret`): no user
/// can be this issuer, so they never mix with users' tokens.
const PLATFORM_ISSUER: &str = "gatehouse:platform";
const PLATFORM_SUBJECT: &str = "secrets";
const PLATFORM_KIND: &str = "platform_secret";
/// How long an authorization flow may take.
const STATE_TTL_SECS: i64 = 600;

/// Encrypted storage of users' tokens, in the store's `credentials` table.
pub struct Vault {
    credentials: Credentials,
    cipher: XChaCha20Poly1305,
    key_id: String,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl Vault {
    /// Opens the vault: the key comes from `GATEHOUSE_VAULT_KEY` or, failing that, from
    /// `<data_dir>/keys/vault.key` (created with mode 0600 on first start). Never from the config.
    pub fn open(data_dir: &Path, credentials: Credentials) -> Result<Vault, IdentityError> {
        let key = match std::env::var(VAULT_KEY_ENV) {
            Ok(v) => decode_key(&v).map_err(|reason| IdentityError::Config {
                reason: format!("{VAULT_KEY_ENV}: {reason}"),
            })?,
            Err(_) => key_file(&data_dir.join("keys").join("vault.key"))?,
        };
        Ok(Vault::with_key(&key, credentials))
    }

    /// A vault with an explicit key (tests).
    pub fn with_key(key: &[u8; 32], credentials: Credentials) -> Vault {
        let key_id = hex_prefix(&crate::cache::sha256(key));
        Vault {
            credentials,
            cipher: XChaCha20Poly1305::new(key.into()),
            key_id,
        }
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption does not fail");
        let mut out = nonce.to_vec();
        out.extend(ct);
        out
    }

    fn open_sealed(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 24 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(24);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .ok()
    }

    fn aad(key: &CredentialKey) -> Vec<u8> {
        // Binds the ciphertext to its row: a row copied to another user does not open.
        format!(
            "{}\n{}\n{}\n{}",
            key.issuer, key.subject, key.server, key.kind
        )
        .into_bytes()
    }

    /// Stores a secret for `key`.
    pub async fn put(
        &self,
        key: CredentialKey,
        secret: &str,
        expires_at: Option<i64>,
    ) -> Result<(), CredentialError> {
        let ciphertext = self.seal(&Self::aad(&key), secret.as_bytes());
        self.credentials
            .upsert(&CredentialRecord {
                key,
                key_id: self.key_id.clone(),
                ciphertext,
                expires_at,
            })
            .await
            .map_err(|e| CredentialError::Vault {
                reason: e.to_string(),
            })
    }

    /// The secret stored for `key`, if any (and readable with the current key).
    pub async fn get(&self, key: &CredentialKey) -> Result<Option<String>, CredentialError> {
        let row = self
            .credentials
            .get(key)
            .await
            .map_err(|e| CredentialError::Vault {
                reason: e.to_string(),
            })?;
        let Some(row) = row else { return Ok(None) };
        if row.record.expires_at.is_some_and(|e| e <= unix_now()) {
            return Ok(None);
        }
        match self.open_sealed(&Self::aad(key), &row.record.ciphertext) {
            Some(p) => Ok(String::from_utf8(p).ok()),
            None => {
                tracing::warn!(server = %key.server, key_id = %row.record.key_id, "a stored credential does not open with the current vault key; the user must authorize again");
                Ok(None)
            }
        }
    }

    /// Where the platform's own secret `name` (a `store:NAME` reference) is kept.
    pub fn platform_secret(name: &str) -> CredentialKey {
        CredentialKey::new(PLATFORM_ISSUER, PLATFORM_SUBJECT, name, PLATFORM_KIND)
    }

    /// The platform's stored secrets: name, when it was last set (unix seconds) and a version
    /// that changes with every set (its random nonce, which says nothing of the value). Never
    /// their values.
    pub async fn platform_secret_names(
        &self,
    ) -> Result<Vec<(String, i64, String)>, CredentialError> {
        let rows = self
            .credentials
            .list(PLATFORM_ISSUER, PLATFORM_SUBJECT, PLATFORM_KIND)
            .await
            .map_err(|e| CredentialError::Vault {
                reason: e.to_string(),
            })?;
        Ok(rows
            .into_iter()
            .map(|(name, at, sealed)| {
                let nonce = &sealed[..sealed.len().min(24)];
                (name, at, nonce.iter().map(|b| format!("{b:02x}")).collect())
            })
            .collect())
    }

    /// Forgets the secret stored for `key`.
    pub async fn delete(&self, key: &CredentialKey) -> Result<(), CredentialError> {
        self.credentials
            .delete(key)
            .await
            .map(|_| ())
            .map_err(|e| CredentialError::Vault {
                reason: e.to_string(),
            })
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes[..6].iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = B64
        .decode(text.trim().trim_end_matches('='))
        .map_err(|_| "expected 32 bytes in base64url".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "expected 32 bytes in base64url".to_string())
}

fn key_file(path: &Path) -> Result<[u8; 32], IdentityError> {
    let io = |e: std::io::Error| IdentityError::Config {
        reason: format!("vault key {}: {e}", path.display()),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => decode_key(&text).map_err(|reason| IdentityError::Config {
            reason: format!("vault key {}: {reason}", path.display()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            write_private(path, &B64.encode(key)).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(text.as_bytes())
}

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
