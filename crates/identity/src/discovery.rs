//! Authorization-server metadata: OpenID Connect discovery, then RFC 8414.

use serde::Deserialize;

use crate::error::IdentityError;

/// The endpoints Gatehouse uses from an authorization server's metadata.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerMetadata {
    /// The issuer the metadata names (must equal the one asked for).
    pub issuer: String,
    /// Where the signing keys are.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Token endpoint.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Authorization endpoint.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// RFC 7662 introspection endpoint.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// RFC 7009 revocation endpoint.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
}

/// The well-known URLs to try for `issuer`, in order: OIDC discovery (appended to the issuer),
/// then RFC 8414 (inserted before the issuer's path).
pub fn metadata_urls(issuer: &str) -> Result<Vec<String>, IdentityError> {
    let url = url::Url::parse(issuer).map_err(|e| IdentityError::Config {
        reason: format!("issuer {issuer:?} is not a URL: {e}"),
    })?;
    let trimmed = issuer.trim_end_matches('/');
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    let mut urls = vec![format!("{trimmed}/.well-known/openid-configuration")];
    urls.push(format!(
        "{origin}/.well-known/oauth-authorization-server{path}"
    ));
    if !path.is_empty() {
        urls.push(format!("{origin}/.well-known/openid-configuration{path}"));
    }
    Ok(urls)
}

/// Fetches the metadata of `issuer`, checking that it names the same issuer (mix-up defence).
pub async fn discover(
    client: &reqwest::Client,
    issuer: &str,
) -> Result<ServerMetadata, IdentityError> {
    let mut last = String::new();
    for url in metadata_urls(issuer)? {
        let resp = match client.get(&url).send().await {
            Ok(r) => r,
            Err(e) => {
                last = format!("{url}: {}", crate::http_error(&e));
                continue;
            }
        };
        if !resp.status().is_success() {
            last = format!("{url}: HTTP {}", resp.status().as_u16());
            continue;
        }
        let meta: ServerMetadata = match resp.json().await {
            Ok(m) => m,
            Err(e) => {
                last = format!("{url}: invalid metadata: {e}");
                continue;
            }
        };
        if meta.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(IdentityError::Unavailable {
                reason: format!("{url} names issuer {:?}, expected {issuer:?}", meta.issuer),
            });
        }
        return Ok(meta);
    }
    Err(IdentityError::Unavailable {
        reason: format!("no authorization server metadata for {issuer} ({last})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls_follow_oidc_then_rfc8414() {
        assert_eq!(
            metadata_urls("https://idp.example.com").unwrap(),
            [
                "https://idp.example.com/.well-known/openid-configuration",
                "https://idp.example.com/.well-known/oauth-authorization-server",
            ]
        );
        assert_eq!(
            metadata_urls("https://login.example.com/tenant1/v2.0").unwrap(),
            [
                "https://login.example.com/tenant1/v2.0/.well-known/openid-configuration",
                "https://login.example.com/.well-known/oauth-authorization-server/tenant1/v2.0",
                "https://login.example.com/.well-known/openid-configuration/tenant1/v2.0",
            ]
        );
    }
}
