//! Outbound credentials: what a backend sees of the caller. Built from a server's
//! `credentials`; asked once per upstream request for the header to send. The caller's own
//! token is only ever used as the *input* of an exchange, never sent upstream.

mod stored;
mod token_endpoint;
pub mod user_oauth;
mod vault;
mod vault_keys;

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use gatehouse_config::{CredentialKind, CredentialsConfig, SecretRef, ServerConfig};

use crate::cache::{ExpiringCache, SecretHash, unix_now};
use crate::error::{CredentialError, IdentityError};
use crate::principal::Caller;

pub use stored::StoredSecrets;
pub use token_endpoint::{ClientAuth, TokenEndpoint, TokenResponse};
pub use user_oauth::UserOauth;
pub use vault::{KeyRotation, VAULT_KEY_ENV, Vault, VaultKeySource};

/// Refresh a cached token this long before it expires.
const EXPIRY_MARGIN_SECS: i64 = 30;
/// How many exchanged tokens one server caches.
const EXCHANGE_CACHE_CAPACITY: usize = 10_000;

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A server's outbound credential.
pub struct OutboundCredential {
    server: String,
    kind: CredentialKind,
    header: HeaderName,
    source: Source,
}

impl std::fmt::Debug for OutboundCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundCredential")
            .field("server", &self.server)
            .field("kind", &self.kind)
            .finish()
    }
}

enum Source {
    /// A fixed header value (remote) or environment variable (stdio).
    Static {
        value: HeaderValue,
        env: Option<(String, String)>,
    },
    /// Gatehouse's own token (client credentials).
    Own(OwnToken),
    /// RFC 8693 exchange of the caller's token.
    Exchange(Box<Exchange>),
    /// Entra on-behalf-of.
    EntraObo {
        endpoint: TokenEndpoint,
        scope: String,
        cache: DerivedTokens,
    },
    /// The user's own delegated token.
    User(Arc<UserOauth>),
}

/// RFC 8693 settings and the cache of exchanged tokens.
struct Exchange {
    endpoint: TokenEndpoint,
    audience: Option<String>,
    resource: Option<String>,
    scope: String,
    actor: Option<OwnToken>,
    cache: DerivedTokens,
}

/// Header values derived from inbound tokens, keyed by the inbound token's hash (which also
/// fixes the user): ready to send, so a cached call formats nothing.
type DerivedTokens = ExpiringCache<SecretHash, HeaderValue>;

/// A client-credentials token of Gatehouse itself, cached until shortly before expiry.
struct OwnToken {
    endpoint: TokenEndpoint,
    form: Vec<(String, String)>,
    cached: ExpiringCache<(), Arc<str>>,
}

impl OwnToken {
    async fn get(&self) -> Result<Arc<str>, CredentialError> {
        if let Some(t) = self.cached.get(&(), EXPIRY_MARGIN_SECS) {
            return Ok(t);
        }
        let form: Vec<(&str, &str)> = self
            .form
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = self.endpoint.request(&form).await?;
        let token: Arc<str> = r.access_token.into();
        self.cached
            .insert((), token.clone(), unix_now() + r.expires_in.unwrap_or(300));
        Ok(token)
    }
}

fn secret(
    r: &Option<SecretRef>,
    field: &str,
    server: &str,
    stored: &StoredSecrets,
) -> Result<Option<String>, IdentityError> {
    r.as_ref()
        .map(|s| {
            let value = match s.source() {
                Some(gatehouse_config::SecretSource::Store(name)) => stored.get(name).ok_or_else(|| {
                    format!("the stored secret {name} is not set (set it with `gatehouse secret set {name}`)")
                }),
                _ => s.resolve(),
            };
            value.map_err(|reason| IdentityError::Config {
                reason: format!("server {server}: credentials.{field}: {reason}"),
            })
        })
        .transpose()
}

fn required<T: Clone>(v: &Option<T>, field: &str, server: &str) -> Result<T, IdentityError> {
    v.clone().ok_or_else(|| IdentityError::Config {
        reason: format!("server {server}: credentials.{field} is required"),
    })
}

impl OutboundCredential {
    /// Builds the credential of `server`, resolving its secrets now (a missing secret stops the
    /// configuration from loading, not a call hours later). `vault` stores user tokens;
    /// `stored` holds the `store:` secrets read from it beforehand.
    pub fn build(
        server: &ServerConfig,
        http: reqwest::Client,
        vault: Option<Arc<Vault>>,
        redirect_base: &str,
        stored: &StoredSecrets,
    ) -> Result<Option<OutboundCredential>, IdentityError> {
        let Some(c) = &server.credentials else {
            return Ok(None);
        };
        let name = server.name.as_str();
        let header_name = c.header.as_deref().unwrap_or("authorization");
        let header =
            HeaderName::from_bytes(header_name.as_bytes()).map_err(|e| IdentityError::Config {
                reason: format!("server {name}: credentials.header: {e}"),
            })?;
        let endpoint =
            |auth: ClientAuth, token_url: Option<String>| -> Result<TokenEndpoint, IdentityError> {
                Ok(TokenEndpoint::new(
                    name,
                    token_url,
                    c.issuer.clone(),
                    required(&c.client_id, "client_id", name)?,
                    secret(&c.client_secret, "client_secret", name, stored)?,
                    auth,
                    http.clone(),
                ))
            };
        let source = match c.kind {
            CredentialKind::StaticSecret => {
                let value = secret(&c.secret, "secret", name, stored)?.unwrap_or_default();
                let prefix = c.prefix.clone().unwrap_or_else(|| {
                    if header == http::header::AUTHORIZATION {
                        "Bearer ".into()
                    } else {
                        String::new()
                    }
                });
                let mut hv = HeaderValue::from_str(&format!("{prefix}{value}")).map_err(|_| {
                    IdentityError::Config {
                        reason: format!("server {name}: the secret is not a valid header value"),
                    }
                })?;
                hv.set_sensitive(true);
                Source::Static {
                    value: hv,
                    env: c.env.clone().map(|e| (e, value)),
                }
            }
            CredentialKind::ClientCredentials => Source::Own(OwnToken {
                endpoint: endpoint(ClientAuth::Basic, c.token_url.clone())?,
                form: own_token_form(c),
                cached: ExpiringCache::new(1),
            }),
            CredentialKind::TokenExchange => Source::Exchange(Box::new(Exchange {
                endpoint: endpoint(ClientAuth::Basic, c.token_url.clone())?,
                audience: c.audience.clone(),
                resource: c.resource.clone(),
                scope: c.scopes.join(" "),
                actor: c
                    .actor_token
                    .then(|| -> Result<OwnToken, IdentityError> {
                        Ok(OwnToken {
                            endpoint: endpoint(ClientAuth::Basic, c.token_url.clone())?,
                            form: vec![("grant_type".into(), "client_credentials".into())],
                            cached: ExpiringCache::new(1),
                        })
                    })
                    .transpose()?,
                cache: ExpiringCache::new(EXCHANGE_CACHE_CAPACITY),
            })),
            CredentialKind::EntraObo => {
                let url = match (&c.token_url, &c.tenant) {
                    (Some(u), _) => u.clone(),
                    (None, Some(t)) => {
                        format!("https://login.microsoftonline.com/{t}/oauth2/v2.0/token")
                    }
                    (None, None) => required(&c.token_url, "tenant", name)?,
                };
                Source::EntraObo {
                    endpoint: endpoint(ClientAuth::Post, Some(url))?,
                    scope: c.scopes.join(" "),
                    cache: ExpiringCache::new(EXCHANGE_CACHE_CAPACITY),
                }
            }
            CredentialKind::UserOauth => {
                let vault = vault.ok_or_else(|| IdentityError::Config {
                    reason: format!(
                        "server {name}: user_oauth needs the credential vault (a store)"
                    ),
                })?;
                Source::User(Arc::new(UserOauth::new(
                    name,
                    c,
                    endpoint(ClientAuth::Basic, c.token_url.clone())?,
                    vault,
                    redirect_base,
                )))
            }
        };
        Ok(Some(OutboundCredential {
            server: name.to_string(),
            kind: c.kind,
            header,
            source,
        }))
    }

    /// What kind of credential this is.
    pub fn kind(&self) -> CredentialKind {
        self.kind
    }

    /// The per-user OAuth flow, for `user_oauth` credentials.
    pub fn user_oauth(&self) -> Option<&Arc<UserOauth>> {
        match &self.source {
            Source::User(u) => Some(u),
            _ => None,
        }
    }

    /// Environment variables for a stdio server's process (static secrets only).
    pub fn env(&self) -> Option<(&str, &str)> {
        match &self.source {
            Source::Static {
                env: Some((k, v)), ..
            } => Some((k, v)),
            _ => None,
        }
    }

    /// The header to send upstream for `caller`'s request.
    pub async fn header(
        &self,
        caller: &Caller,
    ) -> Result<(HeaderName, HeaderValue), CredentialError> {
        let value = match &self.source {
            Source::Static { value, .. } => value.clone(),
            Source::Own(own) => bearer(&self.server, &own.get().await?)?,
            Source::Exchange(x) => {
                let subject = self.subject(caller)?;
                match x.cache.get(&subject.hash, EXPIRY_MARGIN_SECS) {
                    Some(v) => v,
                    None => {
                        let r = x.exchange(subject).await?;
                        remember(&self.server, &x.cache, subject, r)?
                    }
                }
            }
            Source::EntraObo {
                endpoint,
                scope,
                cache,
            } => {
                let subject = self.subject(caller)?;
                match cache.get(&subject.hash, EXPIRY_MARGIN_SECS) {
                    Some(v) => v,
                    None => {
                        let form = [
                            ("grant_type", JWT_BEARER),
                            ("assertion", subject.secret()),
                            ("requested_token_use", "on_behalf_of"),
                            ("scope", scope.as_str()),
                        ];
                        let r = endpoint.request(&form).await?;
                        remember(&self.server, cache, subject, r)?
                    }
                }
            }
            Source::User(u) => bearer(&self.server, &u.access_token(caller).await?)?,
        };
        Ok((self.header.clone(), value))
    }

    /// The caller's token, the input of an exchange.
    fn subject<'a>(&self, caller: &'a Caller) -> Result<&'a crate::InboundToken, CredentialError> {
        caller.token().ok_or_else(|| CredentialError::NoUser {
            server: self.server.clone(),
        })
    }
}

impl Exchange {
    /// One RFC 8693 request for `subject`.
    async fn exchange(
        &self,
        subject: &crate::InboundToken,
    ) -> Result<TokenResponse, CredentialError> {
        let actor_token = match &self.actor {
            Some(a) => Some(a.get().await?),
            None => None,
        };
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject.secret()),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
        ];
        if let Some(a) = &actor_token {
            form.push(("actor_token", a));
            form.push(("actor_token_type", ACCESS_TOKEN_TYPE));
        }
        if let Some(a) = &self.audience {
            form.push(("audience", a));
        }
        if let Some(r) = &self.resource {
            form.push(("resource", r));
        }
        if !self.scope.is_empty() {
            form.push(("scope", &self.scope));
        }
        self.endpoint.request(&form).await
    }
}

/// `Authorization: Bearer <token>` as a sensitive header value.
fn bearer(server: &str, token: &str) -> Result<HeaderValue, CredentialError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        CredentialError::Unavailable {
            server: server.to_string(),
            reason: "the authorization server issued a token that is not a valid header value"
                .into(),
        }
    })?;
    value.set_sensitive(true);
    Ok(value)
}

fn own_token_form(c: &CredentialsConfig) -> Vec<(String, String)> {
    let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
    if !c.scopes.is_empty() {
        form.push(("scope".into(), c.scopes.join(" ")));
    }
    if let Some(a) = &c.audience {
        form.push(("audience".into(), a.clone()));
    }
    if let Some(r) = &c.resource {
        form.push(("resource".into(), r.clone()));
    }
    form
}

/// Caches an exchanged token no longer than it lives, and never past the inbound token's expiry.
fn remember(
    server: &str,
    cache: &DerivedTokens,
    subject: &crate::InboundToken,
    r: TokenResponse,
) -> Result<HeaderValue, CredentialError> {
    let value = bearer(server, &r.access_token)?;
    let mut deadline = unix_now() + r.expires_in.unwrap_or(300);
    if let Some(exp) = subject.expires_at {
        deadline = deadline.min(exp);
    }
    cache.insert(subject.hash, value.clone(), deadline);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(expires_in: i64) -> TokenResponse {
        TokenResponse {
            access_token: "t".into(),
            expires_in: Some(expires_in),
            refresh_token: None,
            scope: None,
        }
    }

    fn inbound(token: &str, expires_at: i64) -> crate::InboundToken {
        crate::InboundToken {
            value: token.into(),
            hash: crate::cache::hash_secret(token),
            expires_at: Some(expires_at),
        }
    }

    #[test]
    fn exchanged_tokens_are_cached_no_longer_than_the_inbound_token_lives() {
        let cache = ExpiringCache::new(4);
        let now = unix_now();
        // The downstream token would live an hour, the inbound one 100 s more.
        let k = inbound("k", now + 100);
        remember("s", &cache, &k, response(3600)).unwrap();
        assert!(cache.get(&k.hash, 0).is_some());
        assert!(
            cache.get(&k.hash, 101).is_none(),
            "cached past the inbound token's expiry"
        );
        // An inbound token that already expired caches nothing usable.
        let gone = inbound("gone", now - 1);
        remember("s", &cache, &gone, response(3600)).unwrap();
        assert!(cache.get(&gone.hash, 0).is_none());
    }
}
