//! Identity settings: who may call a virtual server (`auth`) and what a backend sees of the
//! caller (`credentials`, `scopes` on a server entry).
//!
//! Secrets never appear in the file: every secret is a [`SecretRef`] (`env:NAME` or
//! `file:PATH`) resolved when the snapshot is built, so a config can be committed to Git.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::DurationSpec;

/// Inbound authentication of a virtual server: it is an OAuth 2.1 resource server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The authorization server's issuer URL, exactly as in the tokens' `iss` (`https://`, or
    /// `http://` on a loopback host only).
    pub issuer: String,
    /// The audience tokens must carry in `aud`: this virtual server's canonical resource URI
    /// (RFC 8707), e.g. `https://mcp.example.com/tools`.
    pub audience: String,
    /// JWKS URL; default: found by OpenID Connect / RFC 8414 discovery at the issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Validate opaque (non-JWT) tokens by RFC 7662 introspection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection: Option<IntrospectionConfig>,
    /// Scopes every caller must have; also advertised in `WWW-Authenticate` challenges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_scopes: Vec<String>,
    /// Which token claims fill the principal (defaults: `sub`, `email`, `groups`, `roles`,
    /// `tid` or `tenant`).
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Tolerated clock difference for `exp`, `nbf` and `iat` (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew: Option<DurationSpec>,
    /// Non-human callers from other issuers: SPIFFE JWT-SVIDs and Kubernetes service-account
    /// tokens, mapped to principals of kind `workload`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadIssuerConfig>,
}

impl AuthConfig {
    /// Default for [`AuthConfig::clock_skew`].
    pub const DEFAULT_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(60);

    /// The tolerated clock difference.
    pub fn clock_skew(&self) -> std::time::Duration {
        self.clock_skew
            .map_or(Self::DEFAULT_CLOCK_SKEW, DurationSpec::get)
    }
}

/// RFC 7662 token introspection for opaque tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// Introspection endpoint; default: `introspection_endpoint` from discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The client id Gatehouse authenticates to the endpoint with.
    pub client_id: String,
    /// Its secret, as `env:NAME` or `file:PATH`.
    pub client_secret: SecretRef,
}

/// Which claims fill the principal's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMapping {
    /// Claim holding the subject.
    pub subject: String,
    /// Claim holding the e-mail address.
    pub email: String,
    /// Claim holding the groups (array or space-separated string).
    pub groups: String,
    /// Claim holding the roles (array or space-separated string).
    pub roles: String,
    /// Claims holding the tenant, first present wins.
    pub tenant: Vec<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            subject: "sub".into(),
            email: "email".into(),
            groups: "groups".into(),
            roles: "roles".into(),
            tenant: vec!["tid".into(), "tenant".into()],
        }
    }
}

/// A trusted issuer of workload identities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadIssuerConfig {
    /// What kind of token it issues.
    #[serde(rename = "type")]
    pub kind: WorkloadKind,
    /// Expected `iss`; for SPIFFE, may be omitted (JWT-SVIDs often carry none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Expected `aud`; default: the virtual server's `audience`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The trust bundle: a JWKS URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// The trust bundle: a JWKS file (relative to the config file), re-read when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// SPIFFE only: the trust domain IDs must belong to, e.g. `example.org`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
}

/// Kinds of workload token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// A SPIFFE JWT-SVID (`sub` is a `spiffe://` ID).
    JwtSvid,
    /// A Kubernetes projected service-account token.
    Kubernetes,
}

/// A secret held outside the config: `env:NAME` (an environment variable), `file:PATH` (a
/// file, relative to the config file; trailing newline ignored) or, where a field says so,
/// `store:NAME` (the gateway's secret store, `gatehouse secret set NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SecretRef(pub String);

/// Where a [`SecretRef`] points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource<'a> {
    /// An environment variable.
    Env(&'a str),
    /// A file.
    File(&'a str),
    /// A secret in the gateway's secret store (`gatehouse secret set NAME`); only where the
    /// field says so (a server's `credentials`, a local server's `isolation.secrets` and
    /// `secret_files`).
    Store(&'a str),
}

/// Whether `name` can name a stored secret: 1-128 characters of `A-Z a-z 0-9 . _ -`.
pub fn valid_secret_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl SecretRef {
    /// The reference parsed, or `None` when it is neither `env:` nor `file:`.
    pub fn source(&self) -> Option<SecretSource<'_>> {
        if let Some(name) = self.0.strip_prefix("env:") {
            return (!name.is_empty()).then_some(SecretSource::Env(name));
        }
        if let Some(path) = self.0.strip_prefix("file:") {
            return (!path.is_empty()).then_some(SecretSource::File(path));
        }
        if let Some(name) = self.0.strip_prefix("store:") {
            return valid_secret_name(name).then_some(SecretSource::Store(name));
        }
        None
    }

    /// Reads the secret. Errors name the reference, never the value.
    pub fn resolve(&self) -> Result<String, String> {
        match self.source() {
            Some(SecretSource::Env(name)) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} (from {}) is not set", self.0)),
            Some(SecretSource::File(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("cannot read secret file {path}: {e}")),
            Some(SecretSource::Store(name)) => Err(format!(
                "{} is kept in the gateway's secret store and is read there (store:{name})",
                self.0
            )),
            // The value is not echoed: a literal here may be the secret itself.
            None => Err(
                "a secret must be a reference, env:NAME or file:PATH (secrets are never written in the config)"
                    .into(),
            ),
        }
    }
}

/// Per-tool scopes of a server entry: tool (by the server's own name) → scopes a caller needs.
pub type ToolScopes = BTreeMap<String, Vec<String>>;

/// What a backend sees of the caller: how Gatehouse obtains the credential it sends upstream.
/// The caller's own token is never forwarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// How the credential is obtained.
    #[serde(rename = "type")]
    pub kind: CredentialKind,
    /// Token endpoint (all OAuth types); default: from discovery at `issuer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// Authorization server for discovery of `token_url` / `authorization_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `user_oauth`: the authorization endpoint; default: from discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    /// `entra_obo`: the Entra tenant (id or domain); sets the token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Gatehouse's client id at the authorization server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Gatehouse's client secret, as `env:NAME`, `file:PATH` or `store:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
    /// RFC 8693 `audience` of the downstream token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// RFC 8707 `resource` of the downstream token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Scopes requested for the downstream token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// `token_exchange`: also send Gatehouse's own client-credentials token as the actor token,
    /// so the downstream token names Gatehouse in `act`.
    #[serde(default)]
    pub actor_token: bool,
    /// `static_secret`: the secret, as `env:NAME`, `file:PATH` or `store:NAME` (`gatehouse
    /// secret set NAME`; a new value rebuilds the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// Header the credential goes in (default `Authorization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `static_secret`: text before the secret in the header (default `Bearer ` for
    /// `Authorization`, none otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `static_secret` on a stdio server: the environment variable that carries the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// `user_oauth`: the redirect URI registered at the authorization server; default:
    /// `<gateway public URL>/oauth/callback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
}

/// How a server's outbound credential is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// RFC 8693 token exchange of the caller's token.
    TokenExchange,
    /// Microsoft Entra on-behalf-of (jwt-bearer grant).
    EntraObo,
    /// Gatehouse's own client-credentials token (no user).
    ClientCredentials,
    /// The user's own delegated OAuth token (authorization code + PKCE, stored refresh token).
    UserOauth,
    /// A static secret from the environment or a file.
    StaticSecret,
}

impl CredentialKind {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::TokenExchange => "token_exchange",
            CredentialKind::EntraObo => "entra_obo",
            CredentialKind::ClientCredentials => "client_credentials",
            CredentialKind::UserOauth => "user_oauth",
            CredentialKind::StaticSecret => "static_secret",
        }
    }

    /// Whether the credential depends on the caller's identity.
    pub fn is_per_user(self) -> bool {
        matches!(
            self,
            CredentialKind::TokenExchange | CredentialKind::EntraObo | CredentialKind::UserOauth
        )
    }
}

/// TLS for the gateway's own listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM certificate chain (relative to the config file).
    pub cert: PathBuf,
    /// PEM private key (relative to the config file).
    pub key: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_refs_resolve_from_env_and_file_and_refuse_literals() {
        // SAFETY: this test owns the variable name; no other test reads it.
        unsafe { std::env::set_var("GATEHOUSE_TEST_SECRET_REF", "s3cret") };
        assert_eq!(
            SecretRef("env:GATEHOUSE_TEST_SECRET_REF".into()).resolve(),
            Ok("s3cret".into())
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "from-file\n").unwrap();
        assert_eq!(
            SecretRef(format!("file:{}", f.display())).resolve(),
            Ok("from-file".into())
        );
        let literal = SecretRef("hunter2".into()).resolve().unwrap_err();
        assert!(literal.contains("env:NAME or file:PATH"), "{literal}");
        assert!(
            !literal.contains("hunter2"),
            "a literal secret must not be echoed"
        );
        let missing = SecretRef("env:GATEHOUSE_TEST_UNSET_VAR".into())
            .resolve()
            .unwrap_err();
        assert!(missing.contains("GATEHOUSE_TEST_UNSET_VAR"), "{missing}");
    }
}
