//! Semantic validation: the rules a schema cannot express (uniqueness,
//! references between sections, mutually exclusive fields, name syntax).

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{Mark, Problem};
use crate::model::{Config, GatewayConfig, ServerConfig};
use crate::path::{self, Positions};

mod audit;
mod audit_sinks;
mod identity;
mod isolation;
mod members;
mod telemetry;

pub use audit_sinks::SYSLOG_FACILITIES;
pub use identity::is_loopback_host;

/// Every semantic problem in `config`.
pub(crate) fn validate(config: &Config, positions: &Positions) -> Vec<Problem> {
    let mut v = Validator {
        positions,
        problems: Vec::new(),
    };
    if let Some(version) = config.version
        && version != 1
    {
        v.at_value(
            "version",
            format!("found version {version}, expected 1 (the only supported version)"),
        );
    }
    v.gateway(&config.gateway);
    if let Some(policies) = &config.policies {
        v.policies(policies);
    }
    v.telemetry(config);
    v.audit(&config.audit);
    v.audit_sinks(&config.audit.sinks);
    v.audit_retention(&config.audit.retention);
    v.audit_anomalies(&config.audit.anomalies);
    if let Some(store) = &config.store {
        let url = &store.url;
        if !["sqlite://", "postgres://", "postgresql://"]
            .iter()
            .any(|p| url.starts_with(p))
        {
            v.at_value(
                "store.url",
                "found an unsupported database URL, expected sqlite://PATH or postgres://…".into(),
            );
        }
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, server) in config.servers.iter().enumerate() {
        let p = path::index("servers", i);
        if let Some(first) = names.insert(&server.name, i) {
            names.insert(&server.name, first);
            v.at_value(
                &path::key(&p, "name"),
                format!(
                    "duplicate server name \"{}\" (also used by servers[{first}]), expected unique names",
                    server.name
                ),
            );
        }
        v.server(server, &p);
    }
    // Duplicates are reported above; list each name once in messages.
    let mut server_names: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
    let mut seen = std::collections::HashSet::new();
    server_names.retain(|n| seen.insert(*n));
    let mut vs_names: HashMap<&str, usize> = HashMap::new();
    let mut vs_paths: HashMap<&str, usize> = HashMap::new();
    for (i, vs) in config.virtual_servers.iter().enumerate() {
        let p = path::index("virtual_servers", i);
        if let Some(&first) = vs_names.get(vs.name.as_str()) {
            v.at_value(
                &path::key(&p, "name"),
                format!(
                    "duplicate virtual server name \"{}\" (also used by virtual_servers[{first}]), expected unique names",
                    vs.name
                ),
            );
        } else {
            vs_names.insert(&vs.name, i);
        }
        if let Some(&first) = vs_paths.get(vs.path.as_str()) {
            v.at_value(
                &path::key(&p, "path"),
                format!(
                    "duplicate path \"{}\" (also used by virtual_servers[{first}]), expected unique paths",
                    vs.path
                ),
            );
        } else {
            vs_paths.insert(&vs.path, i);
        }
        v.virtual_server(vs, &p, &server_names);
        if let Some(auth) = &vs.auth {
            v.auth(auth, &path::key(&p, "auth"));
        }
    }
    v.per_user_servers_need_auth(config);
    v.problems
}

/// Whether `name` is a valid MCP tool name: 1 to 128 characters from
/// `A-Z a-z 0-9 _ - .` (the rule of the 2025-11-25 specification).
pub fn valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.chars().all(is_tool_name_char)
}

fn is_tool_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

struct Validator<'a> {
    positions: &'a Positions,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn push(&mut self, path: &str, mark: Mark, message: String) {
        self.problems.push(Problem {
            path: path.to_string(),
            mark,
            message,
        });
    }

    /// A problem with the value at `path`.
    fn at_value(&mut self, path: &str, message: String) {
        let mark = self.positions.value(path);
        self.push(path, mark, message);
    }

    /// A problem with the presence of the field at `path` (points at its key).
    fn at_key(&mut self, path: &str, message: String) {
        let mark = self.positions.key(path);
        self.push(path, mark, message);
    }

    fn positive(&mut self, path: &str, d: Duration) {
        if d.is_zero() && self.positions.contains(path) {
            self.at_value(path, "found a zero duration, expected more than 0".into());
        }
    }

    fn gateway(&mut self, g: &GatewayConfig) {
        if g.listen_addr().is_err() {
            self.at_value(
                "gateway.listen",
                format!(
                    "found \"{}\", expected an IP address and port such as \"127.0.0.1:8080\" or \"[::1]:8080\"",
                    g.listen
                ),
            );
        }
        if g.max_body_bytes == 0 {
            self.at_value(
                "gateway.max_body_bytes",
                "found 0, expected a positive number of bytes".into(),
            );
        }
        self.positive("gateway.request_timeout", g.request_timeout.get());
        self.positive("gateway.session_ttl", g.session_ttl.get());
        self.positive("gateway.body_timeout", g.body_timeout.get());
        self.positive(
            "gateway.connections.header_timeout",
            g.connections.header_timeout.get(),
        );
        self.positive(
            "gateway.connections.idle_timeout",
            g.connections.idle_timeout.get(),
        );
        self.positive(
            "gateway.sessions.idle_timeout",
            g.sessions.idle_timeout.get(),
        );
        for (path, value) in [
            (
                "gateway.max_body_bytes_in_flight",
                g.max_body_bytes_in_flight,
            ),
            ("gateway.sse_queue_bytes", g.sse_queue_bytes),
            ("gateway.connections.max", u64::from(g.connections.max)),
            (
                "gateway.connections.max_per_ip",
                u64::from(g.connections.max_per_ip),
            ),
            (
                "gateway.sessions.max_per_principal",
                u64::from(g.sessions.max_per_principal),
            ),
            ("gateway.sessions.max", u64::from(g.sessions.max)),
            (
                "gateway.stderr.max_line_bytes",
                u64::from(g.stderr.max_line_bytes),
            ),
            (
                "gateway.stderr.max_lines_per_second",
                u64::from(g.stderr.max_lines_per_second),
            ),
        ] {
            if value == 0 && self.positions.contains(path) {
                self.at_value(path, "found 0, expected a positive number".into());
            }
        }
        if g.max_body_bytes_in_flight < g.max_body_bytes
            && self.positions.contains("gateway.max_body_bytes_in_flight")
        {
            self.at_value(
                "gateway.max_body_bytes_in_flight",
                format!(
                    "found {}, expected at least gateway.max_body_bytes ({}): one request body must fit",
                    g.max_body_bytes_in_flight, g.max_body_bytes
                ),
            );
        }
        if let Some(url) = &g.public_url
            && !url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        {
            self.at_value(
                "gateway.public_url",
                format!("found \"{url}\", expected the http(s) URL clients reach the gateway at"),
            );
        }
        for (i, origin) in g.allowed_origins.iter().enumerate() {
            if !valid_origin(origin) {
                self.at_value(
                    &path::index("gateway.allowed_origins", i),
                    format!(
                        "found \"{origin}\", expected an origin: scheme://host[:port] with http or https and no path, such as \"https://app.example.com\""
                    ),
                );
            }
        }
    }

    fn server(&mut self, s: &ServerConfig, p: &str) {
        self.server_audit(&s.audit, p);
        self.isolation(s, p);
        let field = |f: &str| path::key(p, f);
        match (&s.url, &s.command) {
            (None, None) => self.at_value(
                p,
                format!(
                    "server \"{}\" has neither url nor command, expected exactly one of them (url for a remote server, command for a local process)",
                    s.name
                ),
            ),
            (Some(_), Some(_)) => self.at_key(
                &field("command"),
                "found both url and command, expected exactly one of them (url for a remote server, command for a local process)".into(),
            ),
            (Some(url), None) => {
                for (present, name) in [
                    (s.args.is_some(), "args"),
                    (s.env.is_some(), "env"),
                    (s.cwd.is_some(), "cwd"),
                    (s.idle_timeout.is_some(), "idle_timeout"),
                ] {
                    if present {
                        self.at_key(
                            &field(name),
                            format!("{name} is only valid for local servers (with command), but this server has url"),
                        );
                    }
                }
                self.remote(s, url, p);
            }
            (None, Some(command)) => {
                for (present, name) in [
                    (s.transport.is_some(), "transport"),
                    (s.headers.is_some(), "headers"),
                    (s.tls.is_some(), "tls"),
                ] {
                    if present {
                        self.at_key(
                            &field(name),
                            format!("{name} is only valid for remote servers (with url), but this server has command"),
                        );
                    }
                }
                if command.trim().is_empty() {
                    self.at_value(
                        &field("command"),
                        "found an empty command, expected a program name or path".into(),
                    );
                }
                for key in s.env.iter().flat_map(|e| e.keys()) {
                    if key.is_empty() || key.contains(['=', '\0']) {
                        self.at_key(
                            &path::key(&field("env"), key),
                            format!("found environment variable name \"{key}\", expected a non-empty name without \"=\""),
                        );
                    }
                }
                if let Some(d) = s.idle_timeout {
                    self.positive(&field("idle_timeout"), d.get());
                }
            }
        }
        if let Some(d) = s.timeout {
            self.positive(&field("timeout"), d.get());
        }
        if let Some(c) = &s.credentials {
            self.credentials(s, c, p);
        }
        for (tool, scopes) in &s.scopes {
            if scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
                self.at_value(
                    &path::key(&field("scopes"), tool),
                    "found an empty scope or one with a space, expected scope tokens such as jira:write".into(),
                );
            }
        }
    }

    fn policies(&mut self, p: &crate::policy::PoliciesConfig) {
        use crate::policy::PolicyEngineKind as Kind;
        match (p.engine, &p.url) {
            (Kind::Http, None) => self.at_value(
                "policies",
                "engine http needs url: the base URL of the OPA server, such as \"http://127.0.0.1:8181\"".into(),
            ),
            (Kind::Http, Some(u))
                if !url::Url::parse(u)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()) =>
            {
                self.at_value(
                    "policies.url",
                    format!("found \"{u}\", expected an http(s) URL such as \"http://127.0.0.1:8181\""),
                );
            }
            (Kind::Http, Some(_)) => {}
            (engine, Some(_)) => self.at_key(
                "policies.url",
                format!("url is only valid with engine http, but the engine is {}", engine.as_str()),
            ),
            (engine, None) if p.paths.is_empty() => self.at_value(
                "policies",
                format!(
                    "engine {} needs paths: the policy files, such as [\"policies/*.{}\"]",
                    engine.as_str(),
                    engine.as_str()
                ),
            ),
            _ => {}
        }
        for (i, pattern) in p.paths.iter().enumerate() {
            if pattern.trim().is_empty() {
                self.at_value(
                    &path::index("policies.paths", i),
                    "found an empty path, expected a file or a pattern such as policies/*.cedar"
                        .into(),
                );
            }
        }
        if let Some(d) = p.timeout {
            self.positive("policies.timeout", d.get());
        }
    }

    fn remote(&mut self, s: &ServerConfig, url: &str, p: &str) {
        let url_path = path::key(p, "url");
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(u) => self.at_value(
                &url_path,
                format!(
                    "found URL \"{url}\" with scheme \"{}\", expected an http:// or https:// URL with a host",
                    u.scheme()
                ),
            ),
            Err(e) => self.at_value(
                &url_path,
                format!("found \"{url}\", which is not a valid URL ({e}), expected an http:// or https:// URL"),
            ),
        }
        let headers_path = path::key(p, "headers");
        for (name, value) in s.headers.iter().flatten() {
            let header_path = path::key(&headers_path, name);
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.at_key(
                    &header_path,
                    format!("found header name \"{name}\", expected an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"),
                );
            }
            if http::HeaderValue::from_str(value).is_err() {
                self.at_value(
                    &header_path,
                    "found a header value with control characters or line breaks, expected printable text".into(),
                );
            }
        }
        if let Some(tls) = &s.tls {
            let tls_path = path::key(p, "tls");
            match (&tls.cert, &tls.key) {
                (Some(_), None) => self.at_key(
                    &path::key(&tls_path, "cert"),
                    "found cert without key, expected both (a client certificate needs its private key)".into(),
                ),
                (None, Some(_)) => self.at_key(
                    &path::key(&tls_path, "key"),
                    "found key without cert, expected both (a private key needs its client certificate)".into(),
                ),
                _ => {}
            }
        }
    }
}

fn valid_origin(origin: &str) -> bool {
    match url::Url::parse(origin) {
        Ok(u) => {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.origin().ascii_serialization() == origin
        }
        Err(_) => false,
    }
}

/// Why `path` cannot be a virtual server's endpoint, if it cannot.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names() {
        assert!(valid_tool_name("fs_read.file-2"));
        assert!(!valid_tool_name(""));
        assert!(!valid_tool_name("has space"));
        assert!(!valid_tool_name(&"x".repeat(129)));
    }

    #[test]
    fn origins() {
        assert!(valid_origin("https://app.example.com"));
        assert!(valid_origin("http://localhost:3000"));
        assert!(!valid_origin("https://app.example.com/"));
        assert!(!valid_origin("https://app.example.com/path"));
        assert!(!valid_origin("ftp://x"));
        assert!(!valid_origin("*"));
    }
}
