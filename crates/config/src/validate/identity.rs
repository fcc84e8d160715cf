//! Rules for `auth` on virtual servers and `credentials`/`scopes` on servers.

use crate::auth::{AuthConfig, CredentialKind, CredentialsConfig, SecretRef};
use crate::model::{Config, ServerConfig};
use crate::path;

use super::Validator;

/// Whether `host` is a loopback name or address (where plain `http://` is tolerated).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Validator<'_> {
    /// An authorization-server URL: `https://`, or `http://` on a loopback host.
    fn auth_url(&mut self, p: &str, url: &str, what: &str) {
        match url::Url::parse(url) {
            Ok(u) if u.scheme() == "https" && u.host().is_some() => {}
            Ok(u) if u.scheme() == "http" && u.host_str().is_some_and(is_loopback_host) => {}
            Ok(u) if u.scheme() == "http" => self.at_value(
                p,
                format!("found {what} \"{url}\" over plain http on a non-loopback host, expected https:// (http:// is accepted only on loopback, for development)"),
            ),
            Ok(_) | Err(_) => self.at_value(
                p,
                format!("found {what} \"{url}\", expected an https:// URL"),
            ),
        }
    }

    pub(super) fn secret(&mut self, p: &str, secret: &SecretRef) {
        if matches!(secret.source(), Some(crate::auth::SecretSource::Store(_))) {
            self.at_value(
                p,
                "found a store: reference, which only a server's credentials and a local server's isolation.secrets and secret_files accept, expected env:NAME or file:PATH".into(),
            );
        } else if secret.source().is_none() {
            // The value is not echoed: it may be the secret itself.
            self.at_value(
                p,
                "found a literal value, expected a secret reference env:NAME or file:PATH (secrets are never written in the config)".into(),
            );
        }
    }

    /// A server credential's secret: `env:`, `file:` or `store:` (read from the gateway's
    /// secret store when the server is built).
    fn credential_secret(&mut self, p: &str, secret: &SecretRef) {
        if secret.0.starts_with("store:") && secret.source().is_none() {
            self.at_value(
                p,
                "found an invalid stored secret's name, expected store:NAME with 1-128 characters of A-Z a-z 0-9 . _ -".into(),
            );
        } else if secret.source().is_none() {
            // The value is not echoed: it may be the secret itself.
            self.at_value(
                p,
                "found a literal value, expected a secret reference env:NAME, file:PATH or store:NAME (secrets are never written in the config)".into(),
            );
        }
    }

    pub(super) fn auth(&mut self, auth: &AuthConfig, p: &str) {
        let field = |f: &str| path::key(p, f);
        self.auth_url(&field("issuer"), &auth.issuer, "issuer");
        if auth.audience.trim().is_empty() {
            self.at_value(
                &field("audience"),
                "found an empty audience, expected this endpoint's canonical URI, e.g. \"https://mcp.example.com/tools\"".into(),
            );
        }
        if let Some(url) = &auth.jwks_url {
            self.auth_url(&field("jwks_url"), url, "jwks_url");
        }
        if let Some(intro) = &auth.introspection {
            let ip = field("introspection");
            if let Some(url) = &intro.url {
                self.auth_url(&path::key(&ip, "url"), url, "introspection url");
            }
            self.secret(&path::key(&ip, "client_secret"), &intro.client_secret);
        }
        for (i, w) in auth.workloads.iter().enumerate() {
            let wp = path::index(&field("workloads"), i);
            match (&w.jwks_url, &w.jwks_file) {
                (None, None) => self.at_value(
                    &wp,
                    "found a workload issuer without a trust bundle, expected jwks_url or jwks_file"
                        .into(),
                ),
                (Some(_), Some(_)) => self.at_key(
                    &path::key(&wp, "jwks_file"),
                    "found both jwks_url and jwks_file, expected one trust bundle".into(),
                ),
                (Some(url), None) => self.auth_url(&path::key(&wp, "jwks_url"), url, "jwks_url"),
                (None, Some(_)) => {}
            }
        }
        self.positive(
            &field("clock_skew"),
            auth.clock_skew
                .map_or(AuthConfig::DEFAULT_CLOCK_SKEW, |d| d.get()),
        );
    }

    pub(super) fn credentials(&mut self, s: &ServerConfig, c: &CredentialsConfig, p: &str) {
        let cp = path::key(p, "credentials");
        let field = |f: &str| path::key(&cp, f);
        let kind = c.kind.as_str();
        let stdio = s.url.is_none();
        let need = |v: &mut Self, present: bool, name: &str, why: &str| {
            if !present {
                v.at_value(
                    &cp,
                    format!("credentials of type {kind} need {name} ({why})"),
                );
            }
        };
        for (value, name) in [
            (&c.token_url, "token_url"),
            (&c.issuer, "issuer"),
            (&c.authorization_url, "authorization_url"),
        ] {
            if let Some(url) = value {
                self.auth_url(&field(name), url, name);
            }
        }
        if let Some(secret) = &c.client_secret {
            self.credential_secret(&field("client_secret"), secret);
        }
        if let Some(secret) = &c.secret {
            self.credential_secret(&field("secret"), secret);
        }
        if let Some(h) = &c.header
            && http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            self.at_value(
                &field("header"),
                format!("found header name \"{h}\", expected an HTTP header name"),
            );
        }
        if c.kind.is_per_user() && s.transport == Some(crate::model::Transport::Sse) {
            self.at_value(
                &field("type"),
                format!("credentials of type {kind} act for each user, but a transport: sse server has one connection shared by all users, expected static_secret or client_credentials (or the server's Streamable HTTP endpoint)"),
            );
        }
        let oauth = c.kind != CredentialKind::StaticSecret;
        if oauth {
            need(
                self,
                c.client_id.is_some(),
                "client_id",
                "Gatehouse's client at the authorization server",
            );
            if stdio {
                self.at_value(
                    &cp,
                    format!("credentials of type {kind} are for remote servers (with url); a stdio server gets secrets as environment variables with type static_secret"),
                );
            }
        }
        match c.kind {
            CredentialKind::TokenExchange | CredentialKind::ClientCredentials => {
                need(
                    self,
                    c.client_secret.is_some(),
                    "client_secret",
                    "to authenticate at the token endpoint",
                );
                need(
                    self,
                    c.token_url.is_some() || c.issuer.is_some(),
                    "token_url or issuer",
                    "where to get tokens",
                );
                if c.kind == CredentialKind::TokenExchange {
                    need(
                        self,
                        c.audience.is_some() || c.resource.is_some(),
                        "audience or resource",
                        "the downstream API the exchanged token is for",
                    );
                }
            }
            CredentialKind::EntraObo => {
                need(
                    self,
                    c.client_secret.is_some(),
                    "client_secret",
                    "to authenticate at Entra",
                );
                need(
                    self,
                    c.tenant.is_some() || c.token_url.is_some(),
                    "tenant or token_url",
                    "which Entra tenant issues the token",
                );
                need(
                    self,
                    !c.scopes.is_empty(),
                    "scopes",
                    "e.g. api://downstream/.default",
                );
            }
            CredentialKind::UserOauth => {
                need(
                    self,
                    c.issuer.is_some() || (c.authorization_url.is_some() && c.token_url.is_some()),
                    "issuer, or authorization_url and token_url",
                    "where users authorize",
                );
            }
            CredentialKind::StaticSecret => {
                need(self, c.secret.is_some(), "secret", "env:NAME or file:PATH");
                if stdio {
                    need(
                        self,
                        c.env.is_some(),
                        "env",
                        "the environment variable a stdio server reads the secret from",
                    );
                    if c.header.is_some() {
                        self.at_key(
                            &field("header"),
                            "header is for remote servers; a stdio server gets the secret in env"
                                .into(),
                        );
                    }
                } else if c.env.is_some() {
                    self.at_key(
                        &field("env"),
                        "env is for stdio servers; a remote server gets the secret in header"
                            .into(),
                    );
                }
            }
        }
    }

    /// A server whose credential depends on the caller must only be reachable by authenticated
    /// callers: otherwise there is no user to act for.
    pub(super) fn per_user_servers_need_auth(&mut self, config: &Config) {
        for (i, vs) in config.virtual_servers.iter().enumerate() {
            if vs.auth.is_some() {
                continue;
            }
            for (j, m) in vs.include.iter().enumerate() {
                let Some(server) = config.server(&m.server) else {
                    continue;
                };
                if let Some(c) = &server.credentials
                    && c.kind.is_per_user()
                {
                    self.at_value(
                        &path::key(&path::index(&path::key(&path::index("virtual_servers", i), "include"), j), "server"),
                        format!(
                            "server \"{}\" uses {} credentials, which act for the calling user, but virtual server \"{}\" has no auth, expected an auth section (who is the user?)",
                            server.name,
                            c.kind.as_str(),
                            vs.name
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> String {
        crate::load_str(yaml, std::path::Path::new("g.yaml"), &|_| None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn credential_rules_are_checked_with_positions() {
        let base = "servers:\n  - name: api\n    url: https://api.example.com/sse\n    transport: sse\n    credentials:\n      type: token_exchange\n      issuer: https://idp.example.com\n      client_id: gh\n      client_secret: env:S\n      audience: https://api.example.com\nvirtual_servers:\n  - name: v\n    path: /v\n    include: [{ server: api }]\n    auth: { issuer: https://idp.example.com, audience: https://gw/v }\n";
        let e = problems(base);
        assert!(
            e.contains("servers[0].credentials.type") && e.contains("shared by all users"),
            "{e}"
        );
        let literal = problems(&base.replace("env:S", "hunter2"));
        assert!(literal.contains("expected a secret reference"), "{literal}");
        assert!(
            !literal.contains("hunter2"),
            "a literal secret must not be echoed: {literal}"
        );
        let plain = problems(&base.replace(
            "issuer: https://idp.example.com\n",
            "issuer: http://idp.example.com\n",
        ));
        assert!(
            plain.contains("plain http on a non-loopback host"),
            "{plain}"
        );
        let no_auth = problems(&base.replace("    transport: sse\n", "").replace(
            "    auth: { issuer: https://idp.example.com, audience: https://gw/v }\n",
            "",
        ));
        assert!(no_auth.contains("has no auth"), "{no_auth}");
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("localhost"));
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("[::1]"));
        assert!(!is_loopback_host("idp.example.com"));
        assert!(!is_loopback_host("10.0.0.1"));
    }
}
