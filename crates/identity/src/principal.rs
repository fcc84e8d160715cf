//! Who is calling: the principal every request carries into policy, audit and telemetry, and
//! the caller (principal plus the validated token, which only credential exchange may read).

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use gatehouse_config::ClaimMapping;

/// What kind of party a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A human user, authenticated by the IdP.
    User,
    /// A non-human caller: a service with client credentials, a SPIFFE workload, a Kubernetes
    /// service account.
    Workload,
    /// An unauthenticated caller (only on endpoints without `auth`).
    Anonymous,
}

impl PrincipalKind {
    /// The name used in logs and policy.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Workload => "workload",
            PrincipalKind::Anonymous => "anonymous",
        }
    }
}

/// The authenticated identity behind a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Principal {
    /// User, workload or anonymous.
    pub kind: PrincipalKind,
    /// The subject within the issuer (`sub`, a SPIFFE ID, `system:serviceaccount:…`).
    pub subject: String,
    /// Who vouched for the subject (the token's `iss`); empty for anonymous callers.
    pub issuer: String,
    /// E-mail address, when the token has one.
    pub email: Option<String>,
    /// Group memberships.
    pub groups: Vec<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Tenant (e.g. Entra `tid`).
    pub tenant: Option<String>,
    /// Scopes granted to the token.
    pub scopes: Vec<String>,
    /// The OAuth client the token was issued to (`azp`, `client_id`, `cid`, `appid`).
    pub client_id: Option<String>,
    /// Every claim of the token, for policy conditions.
    pub claims: Map<String, Value>,
    /// `issuer#subject`, computed once: per-user state is looked up by it on every call.
    #[serde(skip)]
    key: String,
}

impl Principal {
    /// The principal of an unauthenticated caller.
    pub fn anonymous() -> Principal {
        Principal {
            key: "anonymous".into(),
            kind: PrincipalKind::Anonymous,
            subject: "anonymous".into(),
            issuer: String::new(),
            email: None,
            groups: Vec::new(),
            roles: Vec::new(),
            tenant: None,
            scopes: Vec::new(),
            client_id: None,
            claims: Map::new(),
        }
    }

    /// A stable key for per-user state (processes, cached tokens): issuer and subject.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether every scope in `needed` was granted.
    pub fn has_scopes(&self, needed: &[String]) -> bool {
        needed.iter().all(|s| self.scopes.iter().any(|g| g == s))
    }

    /// The scopes of `needed` that were not granted.
    pub fn missing_scopes<'a>(&self, needed: &'a [String]) -> Vec<&'a str> {
        needed
            .iter()
            .filter(|s| !self.scopes.iter().any(|g| g == *s))
            .map(String::as_str)
            .collect()
    }

    /// Builds a principal from verified claims. `workload` forces the workload kind (SPIFFE,
    /// Kubernetes); otherwise a token issued to a client for itself (client credentials) is a
    /// workload and anything else a user.
    pub fn from_claims(
        claims: Map<String, Value>,
        mapping: &ClaimMapping,
        workload: bool,
    ) -> Principal {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        let subject = text(&mapping.subject).unwrap_or_default();
        let client_id = ["azp", "client_id", "cid", "appid"]
            .iter()
            .find_map(|c| text(c));
        let kind = if workload || is_client_token(&claims, &subject, client_id.as_deref()) {
            PrincipalKind::Workload
        } else {
            PrincipalKind::User
        };
        let subject = if subject.is_empty() {
            client_id.clone().unwrap_or_default()
        } else {
            subject
        };
        let issuer = text("iss").unwrap_or_default();
        Principal {
            key: format!("{issuer}#{subject}"),
            kind,
            issuer,
            email: text(&mapping.email),
            groups: list(claims.get(&mapping.groups)),
            roles: list(claims.get(&mapping.roles)),
            tenant: mapping.tenant.iter().find_map(|t| text(t)),
            scopes: scopes(&claims),
            client_id,
            subject,
            claims,
        }
    }
}

/// A token a client obtained for itself (no user): Entra marks it `idtyp: app`; elsewhere the
/// subject is the client id, or there is no subject at all.
fn is_client_token(claims: &Map<String, Value>, subject: &str, client: Option<&str>) -> bool {
    if claims.get("idtyp").and_then(Value::as_str) == Some("app") {
        return true;
    }
    match client {
        Some(c) => subject.is_empty() || subject == c,
        None => false,
    }
}

/// A claim that is an array of strings or one space-separated string.
fn list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// Granted scopes: `scope` (RFC 8693/9068, space-separated) or `scp` (Entra, Okta).
fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    let mut out = list(claims.get("scope"));
    out.extend(list(claims.get("scp")));
    out
}

/// The caller of one request: its principal and, for authenticated callers, the token it
/// presented (needed to exchange it for downstream tokens; never forwarded, never logged).
#[derive(Clone)]
pub struct Caller {
    /// Who is calling.
    pub principal: Arc<Principal>,
    token: Option<Arc<InboundToken>>,
    /// The peer address of the connection the request came on, when the listener knows it.
    pub source_ip: Option<std::net::IpAddr>,
}

/// A validated inbound token.
pub struct InboundToken {
    /// The token as presented.
    pub(crate) value: Arc<str>,
    /// Its SHA-256: the key of everything cached for it (computed once, at validation).
    pub(crate) hash: crate::cache::SecretHash,
    /// When it expires (unix seconds), if known.
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: it is never printed.
        f.debug_struct("Caller")
            .field("principal", &self.principal.key())
            .field("has_token", &self.token.is_some())
            .finish()
    }
}

impl Default for Caller {
    fn default() -> Self {
        Caller::anonymous()
    }
}

impl Caller {
    /// An unauthenticated caller.
    pub fn anonymous() -> Caller {
        static ANON: std::sync::OnceLock<Arc<Principal>> = std::sync::OnceLock::new();
        Caller {
            principal: ANON
                .get_or_init(|| Arc::new(Principal::anonymous()))
                .clone(),
            token: None,
            source_ip: None,
        }
    }

    /// A caller known only by its principal, with no token (what the gateway acts as when it
    /// releases what an ended session held: nothing per-user can be obtained for it).
    pub fn for_principal(principal: Arc<Principal>) -> Caller {
        Caller {
            principal,
            token: None,
            source_ip: None,
        }
    }

    /// An authenticated caller with the token it presented (hashed once, here: derived
    /// credentials are cached by that hash).
    pub fn authenticated(
        principal: Arc<Principal>,
        token: String,
        expires_at: Option<i64>,
    ) -> Self {
        let hash = crate::cache::hash_secret(&token);
        Caller {
            principal,
            token: Some(Arc::new(InboundToken {
                value: token.into(),
                hash,
                expires_at,
            })),
            source_ip: None,
        }
    }

    /// The inbound token, for credential exchange only.
    pub fn token(&self) -> Option<&InboundToken> {
        self.token.as_deref()
    }
}

impl InboundToken {
    /// The raw token, for use as an RFC 8693 subject token.
    pub fn secret(&self) -> &str {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn user_claims_map_to_a_user_principal() {
        let p = Principal::from_claims(
            claims(json!({"iss": "https://idp", "sub": "alice", "email": "a@x",
                "groups": ["eng", "ops"], "roles": "admin auditor", "tid": "t1",
                "scope": "openid mcp:tools", "azp": "vscode"})),
            &ClaimMapping::default(),
            false,
        );
        assert_eq!(p.kind, PrincipalKind::User);
        assert_eq!(p.subject, "alice");
        assert_eq!(p.groups, ["eng", "ops"]);
        assert_eq!(p.roles, ["admin", "auditor"]);
        assert_eq!(p.tenant.as_deref(), Some("t1"));
        assert!(p.has_scopes(&["mcp:tools".into()]));
        assert_eq!(p.missing_scopes(&["jira:write".into()]), ["jira:write"]);
        assert_eq!(p.key(), "https://idp#alice");
    }

    #[test]
    fn client_credentials_tokens_are_workloads() {
        for c in [
            json!({"iss": "i", "sub": "svc", "client_id": "svc"}),
            json!({"iss": "i", "client_id": "svc"}),
            json!({"iss": "i", "sub": "x", "idtyp": "app", "appid": "x"}),
        ] {
            let p = Principal::from_claims(claims(c.clone()), &ClaimMapping::default(), false);
            assert_eq!(p.kind, PrincipalKind::Workload, "{c}");
            assert!(!p.subject.is_empty());
        }
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let c = Caller::authenticated(Arc::new(Principal::anonymous()), "eyJsecret".into(), None);
        assert!(!format!("{c:?}").contains("eyJsecret"));
    }
}
