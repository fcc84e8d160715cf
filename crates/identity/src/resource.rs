//! A virtual server as an OAuth 2.1 resource server (MCP authorization spec): who may call it,
//! the RFC 9728 metadata that tells clients where to get a token, and the `WWW-Authenticate`
//! challenges of refusals.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use gatehouse_config::{AuthConfig, WorkloadKind};

use crate::cache::{ExpiringCache, unix_now};
use crate::error::IdentityError;
use crate::introspect::Introspector;
use crate::jwks::{Jwks, KeySource};
use crate::principal::Caller;
use crate::verify::{JwtVerifier, Reason, Refusal, looks_like_jwt, peek};

/// Largest token accepted; real access tokens are a few KiB at most.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// How many verified tokens are remembered.
const TOKEN_CACHE_CAPACITY: usize = 50_000;
/// How long a client is told to wait while the IdP's keys are not loaded.
const RETRY_AFTER_SECS: u64 = 5;

/// A refused request: HTTP status, the `WWW-Authenticate` parameters, and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// 401, 403 or 503.
    pub status: u16,
    /// RFC 6750 error code (`invalid_token`, `invalid_request`, `insufficient_scope`), absent
    /// when no token was sent.
    pub error: Option<&'static str>,
    /// Why, for logs and audit.
    pub refusal: Refusal,
    /// Scopes to ask for in the challenge.
    pub scope: Vec<String>,
    /// `Retry-After` seconds (503).
    pub retry_after: Option<u64>,
}

impl AuthFailure {
    fn unauthorized(refusal: Refusal, scope: &[String]) -> AuthFailure {
        let error = match refusal.reason {
            Reason::MissingToken => None,
            Reason::TokenInQuery | Reason::MalformedHeader => Some("invalid_request"),
            _ => Some("invalid_token"),
        };
        if refusal.reason == Reason::IdpUnavailable {
            return AuthFailure {
                status: 503,
                error: None,
                refusal,
                scope: scope.to_vec(),
                retry_after: Some(RETRY_AFTER_SECS),
            };
        }
        AuthFailure {
            status: 401,
            error,
            refusal,
            scope: scope.to_vec(),
            retry_after: None,
        }
    }

    /// A step-up challenge: the caller is authenticated but lacks `missing`; `scope` lists every
    /// scope it should ask for.
    pub fn insufficient_scope(missing: &[&str], scope: Vec<String>) -> AuthFailure {
        AuthFailure {
            status: 403,
            error: Some("insufficient_scope"),
            refusal: Refusal::new(
                Reason::InsufficientScope,
                format!("this needs scope {}", missing.join(" ")),
            ),
            scope,
            retry_after: None,
        }
    }

    /// The `WWW-Authenticate` header value for this refusal.
    pub fn challenge(&self, resource_metadata: &str) -> String {
        let mut parts = vec![format!("Bearer resource_metadata=\"{resource_metadata}\"")];
        if let Some(e) = self.error {
            parts.push(format!("error=\"{e}\""));
            parts.push(format!(
                "error_description=\"{}\"",
                self.refusal.detail.replace(['"', '\\'], "'")
            ));
        }
        if !self.scope.is_empty() {
            parts.push(format!("scope=\"{}\"", self.scope.join(" ")));
        }
        parts.join(", ")
    }
}

/// One virtual server's token validation.
#[derive(Debug)]
pub struct ResourceServer {
    name: String,
    issuer: String,
    audience: String,
    required_scopes: Vec<String>,
    scopes_supported: Vec<String>,
    main: JwtVerifier,
    workloads: Vec<JwtVerifier>,
    introspector: Option<Introspector>,
    /// Verified callers by their token. Keyed by the token itself (the `Caller` holds it
    /// anyway): a lookup hashes it with the map's fast hasher and compares it in full, cheaper
    /// on every request than a SHA-256.
    cache: ExpiringCache<Arc<str>, Caller>,
}

/// The HTTP client used for IdP traffic: short timeouts, no redirects to other hosts.
pub fn idp_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .unwrap_or_default()
}

impl ResourceServer {
    /// Builds the validator of virtual server `name`. `tool_scopes` are the per-tool scopes of
    /// its members (advertised in the metadata). Nothing is fetched yet: see [`Self::warm_up`].
    pub fn build(
        name: &str,
        auth: &AuthConfig,
        tool_scopes: Vec<String>,
        client: reqwest::Client,
    ) -> Result<ResourceServer, IdentityError> {
        let main_source = match &auth.jwks_url {
            Some(u) => KeySource::Url(u.clone()),
            None => KeySource::Discover(auth.issuer.clone()),
        };
        let main = JwtVerifier {
            issuer: Some(auth.issuer.clone()),
            audience: auth.audience.clone(),
            jwks: Arc::new(Jwks::new(main_source, client.clone())),
            leeway: auth.clock_skew(),
            mapping: auth.claims.clone(),
            workload: false,
            trust_domain: None,
        };
        let workloads = auth
            .workloads
            .iter()
            .map(|w| {
                let source = match (&w.jwks_url, &w.jwks_file) {
                    (Some(u), _) => KeySource::Url(u.clone()),
                    (None, Some(f)) => KeySource::File(f.clone()),
                    (None, None) => {
                        return Err(IdentityError::Config {
                            reason: "a workload issuer needs jwks_url or jwks_file".into(),
                        });
                    }
                };
                let mut mapping = auth.claims.clone();
                mapping.subject = "sub".into();
                Ok(JwtVerifier {
                    issuer: w.issuer.clone(),
                    audience: w.audience.clone().unwrap_or_else(|| auth.audience.clone()),
                    jwks: Arc::new(Jwks::new(source, client.clone())),
                    leeway: auth.clock_skew(),
                    mapping,
                    workload: true,
                    trust_domain: match w.kind {
                        WorkloadKind::JwtSvid => w.trust_domain.clone(),
                        WorkloadKind::Kubernetes => None,
                    },
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let introspector = match &auth.introspection {
            Some(i) => Some(Introspector {
                url: tokio::sync::OnceCell::new(),
                configured_url: i.url.clone(),
                issuer: auth.issuer.clone(),
                client_id: i.client_id.clone(),
                client_secret: i
                    .client_secret
                    .resolve()
                    .map_err(|reason| IdentityError::Config { reason })?,
                audience: auth.audience.clone(),
                mapping: auth.claims.clone(),
                client: client.clone(),
            }),
            None => None,
        };
        let mut scopes_supported = auth.required_scopes.clone();
        for s in tool_scopes {
            if !scopes_supported.contains(&s) {
                scopes_supported.push(s);
            }
        }
        Ok(ResourceServer {
            name: name.to_string(),
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            required_scopes: auth.required_scopes.clone(),
            scopes_supported,
            main,
            workloads,
            introspector,
            cache: ExpiringCache::new(TOKEN_CACHE_CAPACITY),
        })
    }

    /// Loads every issuer's keys now; failures are logged and retried on demand (requests get
    /// 503 until keys load).
    pub async fn warm_up(&self) {
        for v in std::iter::once(&self.main).chain(&self.workloads) {
            if let Err(e) = v.jwks.refresh().await {
                tracing::warn!(virtual_server = %self.name, error = %e, "identity provider keys not loaded yet; authenticated requests get 503 until they load");
            }
        }
    }

    /// The expected audience (the canonical resource URI).
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The scopes a client should request (the required ones).
    pub fn required_scopes(&self) -> &[String] {
        &self.required_scopes
    }

    /// The RFC 9728 protected-resource metadata document.
    pub fn metadata(&self) -> Value {
        json!({
            "resource": self.audience,
            "authorization_servers": [self.issuer],
            "scopes_supported": self.scopes_supported,
            "bearer_methods_supported": ["header"],
            "resource_name": self.name,
        })
    }

    /// Authenticates a request from its `Authorization` header and URL query.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        query: Option<&str>,
    ) -> Result<Caller, AuthFailure> {
        let fail = |r: Refusal| AuthFailure::unauthorized(r, &self.required_scopes);
        if query.is_some_and(query_has_token) {
            return Err(fail(Refusal::new(
                Reason::TokenInQuery,
                "access tokens in the URL are refused (URLs are logged); send Authorization: Bearer",
            )));
        }
        let Some(header) = authorization else {
            return Err(fail(Refusal::new(
                Reason::MissingToken,
                "this endpoint needs an OAuth access token",
            )));
        };
        let token = match header.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
                t.trim()
            }
            _ => {
                return Err(fail(Refusal::new(
                    Reason::MalformedHeader,
                    "the Authorization header must be \"Bearer <token>\"",
                )));
            }
        };
        if token.len() > MAX_TOKEN_BYTES {
            return Err(fail(Refusal::new(
                Reason::Oversized,
                format!("the token exceeds {MAX_TOKEN_BYTES} bytes"),
            )));
        }
        let caller = self.verify(token).await.map_err(fail)?;
        if !caller.principal.has_scopes(&self.required_scopes) {
            let missing = caller.principal.missing_scopes(&self.required_scopes);
            return Err(AuthFailure::insufficient_scope(
                &missing,
                self.required_scopes.clone(),
            ));
        }
        Ok(caller)
    }

    /// The caller a token stands for; a token seen before costs one hash and one lookup (the
    /// cached `Caller` already holds the principal and the token).
    async fn verify(&self, token: &str) -> Result<Caller, Refusal> {
        if let Some(caller) = self.cache.get(token, 0) {
            return Ok(caller);
        }
        let verified = if looks_like_jwt(token) {
            let p = peek(token)?;
            let verifier = self.verifier_for(p.iss.as_deref())?;
            verifier.verify(token, &p).await?
        } else if let Some(i) = &self.introspector {
            i.introspect(token).await?
        } else {
            return Err(Refusal::new(
                Reason::Malformed,
                "the token is not a JWT and this endpoint has no introspection configured",
            ));
        };
        // Cached no longer than the token lives, and at most 5 minutes so that a revoked
        // (introspected) token stops working soon.
        let deadline = verified
            .expires_at
            .unwrap_or(i64::MAX)
            .min(unix_now() + 300);
        let caller =
            Caller::authenticated(verified.principal, token.to_string(), verified.expires_at);
        // The key shares the caller's copy of the token.
        let key = caller
            .token()
            .map_or_else(|| token.into(), |t| t.value.clone());
        self.cache.insert(key, caller.clone(), deadline);
        Ok(caller)
    }

    fn verifier_for(&self, iss: Option<&str>) -> Result<&JwtVerifier, Refusal> {
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        if iss.is_some_and(|i| same(i, &self.issuer)) {
            return Ok(&self.main);
        }
        // An issuer named in the config wins; trust bundles without an issuer (SPIFFE) take the
        // rest.
        let named = self.workloads.iter().find(|w| match (&w.issuer, iss) {
            (Some(expected), Some(i)) => same(expected, i),
            _ => false,
        });
        if let Some(w) = named.or_else(|| self.workloads.iter().find(|w| w.issuer.is_none())) {
            return Ok(w);
        }
        Err(Refusal::new(
            Reason::WrongIssuer,
            "the token is from an issuer this endpoint does not trust",
        ))
    }
}

/// Whether a URL query carries an access token (`access_token=`, RFC 6750 §2.3).
fn query_has_token(query: &str) -> bool {
    query.split('&').any(|kv| {
        kv.split('=')
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("access_token"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_carry_metadata_error_and_scope() {
        let f = AuthFailure::unauthorized(
            Refusal::new(Reason::Expired, "the token has expired"),
            &["mcp:tools".into()],
        );
        assert_eq!(f.status, 401);
        assert_eq!(
            f.challenge("https://gw/.well-known/oauth-protected-resource/mcp"),
            "Bearer resource_metadata=\"https://gw/.well-known/oauth-protected-resource/mcp\", error=\"invalid_token\", error_description=\"the token has expired\", scope=\"mcp:tools\""
        );
        let missing = AuthFailure::unauthorized(Refusal::new(Reason::MissingToken, "x"), &[]);
        assert_eq!(missing.challenge("m"), "Bearer resource_metadata=\"m\"");
        let down = AuthFailure::unauthorized(Refusal::new(Reason::IdpUnavailable, "x"), &[]);
        assert_eq!(
            (down.status, down.retry_after),
            (503, Some(RETRY_AFTER_SECS))
        );
        let step_up = AuthFailure::insufficient_scope(&["jira:write"], vec!["jira:write".into()]);
        assert_eq!(step_up.status, 403);
        assert!(
            step_up
                .challenge("m")
                .contains("error=\"insufficient_scope\"")
        );
    }

    #[test]
    fn query_tokens_are_detected() {
        assert!(query_has_token("access_token=abc"));
        assert!(query_has_token("x=1&ACCESS_TOKEN=abc"));
        assert!(!query_has_token("sessionId=abc"));
    }
}
