//! RFC 7662 token introspection, for opaque access tokens.

use std::sync::Arc;

use serde_json::{Map, Value};

use gatehouse_config::ClaimMapping;

use crate::principal::Principal;
use crate::verify::{Reason, Refusal, Verified};

/// An introspection client: endpoint and Gatehouse's credentials there.
#[derive(Debug)]
pub struct Introspector {
    /// The endpoint; `None` until discovered.
    pub(crate) url: tokio::sync::OnceCell<String>,
    pub(crate) configured_url: Option<String>,
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) audience: String,
    pub(crate) mapping: ClaimMapping,
    pub(crate) client: reqwest::Client,
}

impl Introspector {
    async fn endpoint(&self) -> Result<&str, Refusal> {
        self.url
            .get_or_try_init(|| async {
                if let Some(u) = &self.configured_url {
                    return Ok(u.clone());
                }
                let meta = crate::discovery::discover(&self.client, &self.issuer)
                    .await
                    .map_err(|e| Refusal::new(Reason::IdpUnavailable, e.to_string()))?;
                meta.introspection_endpoint.ok_or_else(|| {
                    Refusal::new(
                        Reason::IdpUnavailable,
                        format!("{} publishes no introspection_endpoint", self.issuer),
                    )
                })
            })
            .await
            .map(String::as_str)
    }

    /// Asks the authorization server whether `token` is active, and for whom.
    pub(crate) async fn introspect(&self, token: &str) -> Result<Verified, Refusal> {
        let url = self.endpoint().await?;
        let resp = self
            .client
            .post(url)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| {
                Refusal::new(
                    Reason::IdpUnavailable,
                    format!("introspection endpoint: {}", crate::http_error(&e)),
                )
            })?;
        if !resp.status().is_success() {
            return Err(Refusal::new(
                Reason::IdpUnavailable,
                format!(
                    "introspection endpoint answered HTTP {}",
                    resp.status().as_u16()
                ),
            ));
        }
        let body: Map<String, Value> = resp.json().await.map_err(|e| {
            Refusal::new(
                Reason::IdpUnavailable,
                format!("introspection response is not JSON: {e}"),
            )
        })?;
        check_introspection(body, &self.issuer, &self.audience, &self.mapping)
    }
}

/// Applies RFC 7662 semantics plus the resource-server checks (issuer, audience, expiry) to an
/// introspection response.
fn check_introspection(
    mut body: Map<String, Value>,
    issuer: &str,
    audience: &str,
    mapping: &ClaimMapping,
) -> Result<Verified, Refusal> {
    if body.get("active") != Some(&Value::Bool(true)) {
        return Err(Refusal::new(Reason::Inactive, "the token is not active"));
    }
    if let Some(iss) = body.get("iss").and_then(Value::as_str)
        && iss.trim_end_matches('/') != issuer.trim_end_matches('/')
    {
        return Err(Refusal::new(
            Reason::WrongIssuer,
            "the token is from another issuer",
        ));
    }
    let aud_ok = match body.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(Refusal::new(
            Reason::WrongAudience,
            "the token is for another audience (resource)",
        ));
    }
    let expires_at = body.get("exp").and_then(Value::as_i64);
    if expires_at.is_some_and(|e| e <= crate::cache::unix_now()) {
        return Err(Refusal::new(Reason::Expired, "the token has expired"));
    }
    body.entry("iss").or_insert_with(|| Value::from(issuer));
    let principal = Principal::from_claims(body, mapping, false);
    if principal.subject.is_empty() {
        return Err(Refusal::new(
            Reason::MissingClaim,
            "the token names no subject",
        ));
    }
    Ok(Verified {
        principal: Arc::new(principal),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<Verified, Refusal> {
        check_introspection(
            v.as_object().unwrap().clone(),
            "https://idp",
            "https://mcp/x",
            &ClaimMapping::default(),
        )
    }

    #[test]
    fn introspection_responses_are_checked_like_jwts() {
        let exp = 4_000_000_000i64;
        let ok = check(
            json!({"active": true, "sub": "bob", "aud": "https://mcp/x", "exp": exp,
            "scope": "a b", "iss": "https://idp"}),
        )
        .unwrap();
        assert_eq!(ok.principal.subject, "bob");
        assert_eq!(ok.principal.scopes, ["a", "b"]);
        assert_eq!(
            check(json!({"active": false})).unwrap_err().reason,
            Reason::Inactive
        );
        assert_eq!(
            check(json!({"active": true, "sub": "b", "aud": "https://other"}))
                .unwrap_err()
                .reason,
            Reason::WrongAudience
        );
        assert_eq!(
            check(json!({"active": true, "sub": "b", "aud": "https://mcp/x", "exp": 1}))
                .unwrap_err()
                .reason,
            Reason::Expired
        );
        assert_eq!(
            check(
                json!({"active": true, "sub": "b", "aud": ["https://mcp/x"], "iss": "https://evil"})
            )
            .unwrap_err()
            .reason,
            Reason::WrongIssuer
        );
    }
}
