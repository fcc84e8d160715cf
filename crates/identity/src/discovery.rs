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
        check_learned_endpoints(&meta, issuer).await?;
        return Ok(meta);
    }
    Err(IdentityError::Unavailable {
        reason: format!("no authorization server metadata for {issuer} ({last})"),
    })
}

/// The address rule for the endpoints the metadata names: they were learned at run time,
/// not written in the config, so one on another host than the issuer must not lead the
/// gateway to an internal address (a metadata document pointing `jwks_uri` at the cloud
/// metadata service, or at an admin port on loopback). The issuer's own host is the
/// operator's choice and is used as written.
pub async fn check_learned_endpoints(
    meta: &ServerMetadata,
    issuer: &str,
) -> Result<(), IdentityError> {
    let issuer_host = url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    for (field, value) in [
        ("jwks_uri", &meta.jwks_uri),
        ("token_endpoint", &meta.token_endpoint),
        ("authorization_endpoint", &meta.authorization_endpoint),
        ("introspection_endpoint", &meta.introspection_endpoint),
        ("revocation_endpoint", &meta.revocation_endpoint),
    ] {
        let Some(value) = value else { continue };
        let refused = |why: String| IdentityError::Unavailable {
            reason: format!("the metadata of {issuer} names {field} {value}, {why}"),
        };
        let url = url::Url::parse(value).map_err(|e| refused(format!("not a URL: {e}")))?;
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err(refused("which has no host".into())),
        };
        if issuer_host.as_deref() == Some(host.as_str()) {
            continue;
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<std::net::IpAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![ip.into()],
            Some(url::Host::Ipv6(ip)) => vec![ip.into()],
            _ => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| refused(format!("which does not resolve: {e}")))?
                .map(|a| a.ip())
                .collect(),
        };
        for ip in addrs {
            gatehouse_config::egress::check_fetched_address(ip).map_err(|e| {
                refused(format!(
                    "on another host than the issuer, and {e} (only the issuer's own host may be internal)"
                ))
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn learned_endpoints_on_other_hosts_may_not_be_internal() {
        let issuer = "http://127.0.0.1:9000/realms/r";
        let meta = |jwks: &str| ServerMetadata {
            issuer: issuer.into(),
            jwks_uri: Some(jwks.into()),
            ..Default::default()
        };
        // The issuer's own host is the operator's choice, internal or not.
        check_learned_endpoints(&meta("http://127.0.0.1:9000/certs"), issuer)
            .await
            .unwrap();
        check_learned_endpoints(&meta("https://203.0.113.5/certs"), issuer)
            .await
            .unwrap();
        for internal in [
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/certs",
            "http://[::1]:8080/certs",
            "http://localhost:9001/certs",
        ] {
            let e = check_learned_endpoints(&meta(internal), issuer)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("names jwks_uri") && e.contains("range (only the issuer's own host"),
                "{internal}: {e}"
            );
        }
    }

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
