//! Declarative configuration of the Gatehouse MCP gateway.
//!
//! A configuration is a YAML file describing upstream MCP servers
//! (`servers`) and the endpoints the gateway exposes (`virtual_servers`).
//! [`load_file`] / [`load_str`] parse it, interpolate `${ENV}` references,
//! check it against the JSON Schema generated from the Rust types
//! ([`json_schema`]) and then validate cross-references, reporting *every*
//! problem with file, line, column and field path.
//!
//! `${VAR}` references are expanded in values (not keys); see
//! [`load_str`] for how the environment is supplied.
//!
//! ```
//! use std::path::Path;
//!
//! let yaml = "
//! servers:
//!   - name: echo
//!     url: http://127.0.0.1:18001/mcp
//! virtual_servers:
//!   - name: default
//!     path: /mcp
//!     include: [{ server: echo, prefix: echo_ }]
//! ";
//! let config = gatehouse_config::load_str(yaml, Path::new("inline.yaml"), &|_| None)?;
//! let member = &config.virtual_servers[0].include[0];
//! assert_eq!(member.exposed_name("ping").as_deref(), Some("echo_ping"));
//!
//! let err = gatehouse_config::load_str("servers: [{name: x, comand: y}]", Path::new("bad.yaml"), &|_| None)
//!     .unwrap_err();
//! assert!(err.to_string().starts_with("bad.yaml:1:21: servers[0].comand: unknown field"));
//! # Ok::<(), gatehouse_config::ConfigErrors>(())
//! ```
#![warn(missing_docs)]

mod audit;
mod audit_sinks;
mod auth;
mod duration;
pub mod egress;
mod error;
mod interpolate;
mod isolation;
mod limits;
mod model;
mod path;
mod policy;
mod reference;
pub mod reload;
mod schema_check;
mod telemetry;
mod validate;
mod yaml;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

pub use audit::{
    ArgumentsMode, AuditConfig, DEFAULT_SECRET_KEYS, Durability, OnFailure, PathStep, ServerAudit,
    parse_redact_path,
};
pub use audit_sinks::{
    AnomalyConfig, EventFormat, RetentionConfig, SinkConfig, SinkKind, SinkStart,
};
pub use auth::{
    AuthConfig, ClaimMapping, CredentialKind, CredentialsConfig, IntrospectionConfig, ListenerTls,
    SecretRef, SecretSource, ToolScopes, WorkloadIssuerConfig, WorkloadKind, valid_secret_name,
};
pub use duration::{DURATION_PATTERN, DurationSpec};
pub use egress::{AddressRefused, EgressPolicy, forbidden_range};
pub use error::{ConfigError, ConfigErrors};
pub use isolation::{
    ByteSize, EgressRule, FilesystemGrants, IsolationConfig, LocalHttp, NetworkGrants, Preset,
    Resources, RuntimeKind,
};
pub use limits::{ConnectionLimits, SessionLimits, StderrLimits};
pub use model::{
    Config, GatewayConfig, MemberConfig, NAME_PATTERN, ProtocolSetting, ServerConfig, ServerKind,
    StoreConfig, TlsConfig, Transport, VirtualServerConfig,
};
pub use policy::{Operation, PoliciesConfig, PolicyEngineKind, ToolOperations};
pub use reference::reference_markdown;
pub use telemetry::{AdminConfig, DEFAULT_SERVICE_NAME, OtlpConfig, OtlpProtocol, TelemetryConfig};
pub use validate::{SYSLOG_FACILITIES, is_loopback_host, valid_tool_name};

use error::Mark;

/// Title of the generated JSON Schema.
pub const SCHEMA_TITLE: &str = "Gatehouse configuration";

/// Loads and validates the configuration file at `path`, reading `${VAR}`
/// references from the process environment.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigErrors::single(
            path,
            Mark::START,
            "",
            format!("cannot read configuration file: {e}"),
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let valid = std::str::from_utf8(valid).unwrap_or_default();
        let line = valid.matches('\n').count() + 1;
        let column = valid.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        ConfigErrors::single(
            path,
            Mark { line, column },
            "",
            "found bytes that are not UTF-8, expected UTF-8 text".into(),
        )
    })?;
    load_str(&text, path, &|name| std::env::var(name).ok())
}

/// Loads and validates configuration `text`.
///
/// `origin` names the file in error messages and its folder anchors the
/// relative paths in the file (`tls` files, `cwd`). `env` looks up the
/// variables referenced as `${VAR}`.
pub fn load_str(
    text: &str,
    origin: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (mut doc, mut problems) =
        yaml::parse(text, env).map_err(|p| ConfigErrors::from_problems(origin, vec![p]))?;
    // An empty file (or one with only comments) is an empty configuration.
    if doc.value.is_null() {
        doc.value = Value::Object(serde_json::Map::new());
    }
    // A value already reported (say, an unset variable left as "${X}")
    // would only produce a confusing second error from the schema.
    let reported: HashSet<String> = problems.iter().map(|p| p.path.clone()).collect();
    problems.extend(
        schema_check::check(cached_schema(), &doc.value, &doc.positions)
            .into_iter()
            .filter(|p| !reported.contains(&p.path)),
    );
    if !problems.is_empty() {
        return Err(ConfigErrors::from_problems(origin, problems));
    }
    let mut config: Config = serde_path_to_error::deserialize(&doc.value).map_err(|e| {
        // The schema check should have caught this; serde's message is the
        // precise fallback for anything it cannot express.
        let path = render_serde_path(e.path());
        let mark = doc.positions.value(&path);
        ConfigErrors::single(origin, mark, &path, e.into_inner().to_string())
    })?;
    let problems = validate::validate(&config, &doc.positions);
    if !problems.is_empty() {
        return Err(ConfigErrors::from_problems(origin, problems));
    }
    resolve_paths(&mut config, origin);
    Ok(config)
}

/// Parses a YAML file other than the configuration (policy test cases, say) into `T`, with
/// the same positioned errors: file, line, column and field path. `${VAR}` is not
/// supported there (it is reported as an unset variable).
pub fn load_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &Path,
) -> Result<T, ConfigErrors> {
    let (doc, problems) =
        yaml::parse(text, &|_| None).map_err(|p| ConfigErrors::from_problems(origin, vec![p]))?;
    if !problems.is_empty() {
        return Err(ConfigErrors::from_problems(origin, problems));
    }
    serde_path_to_error::deserialize(&doc.value).map_err(|e| {
        let path = render_serde_path(e.path());
        let mark = doc.positions.value(&path);
        ConfigErrors::single(origin, mark, &path, e.into_inner().to_string())
    })
}

/// The JSON Schema (draft 2020-12) of the configuration file, generated
/// from the Rust types, with descriptions taken from their documentation.
pub fn json_schema() -> Value {
    cached_schema().clone()
}

fn cached_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let generator = schemars::generate::SchemaSettings::draft2020_12()
            .for_deserialize()
            .into_generator();
        let mut schema = generator.into_root_schema_for::<Config>().to_value();
        if let Some(obj) = schema.as_object_mut() {
            obj.insert("title".into(), SCHEMA_TITLE.into());
            obj.insert(
                "description".into(),
                "Configuration of the Gatehouse MCP gateway: upstream servers and the virtual servers (endpoints) that expose their tools.".into(),
            );
        }
        schema
    })
}

fn render_serde_path(p: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    p.iter().fold(String::new(), |acc, seg| match seg {
        Segment::Seq { index } => path::index(&acc, *index),
        Segment::Map { key } => path::key(&acc, key),
        Segment::Enum { variant } => path::key(&acc, variant),
        Segment::Unknown => acc,
    })
}

/// Makes relative paths absolute against the config file's folder, so
/// that the gateway behaves the same whatever its working directory.
fn resolve_paths(config: &mut Config, origin: &Path) {
    let base = origin
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            let joined = base.join(&*p);
            *p = std::path::absolute(&joined).unwrap_or(joined);
        }
    };
    for server in &mut config.servers {
        if let Some(tls) = &mut server.tls {
            for p in [&mut tls.ca, &mut tls.cert, &mut tls.key]
                .into_iter()
                .flatten()
            {
                resolve(p);
            }
        }
        if let Some(cwd) = &mut server.cwd {
            resolve(cwd);
        }
        if let Some(iso) = &mut server.isolation {
            for p in iso
                .filesystem
                .read
                .iter_mut()
                .chain(&mut iso.filesystem.write)
                .chain(&mut iso.lockfile)
            {
                resolve(p);
            }
            for secret in iso
                .secrets
                .values_mut()
                .chain(iso.secret_files.values_mut())
            {
                resolve_secret(secret, &resolve);
            }
        }
        if let Some(c) = &mut server.credentials {
            for secret in [&mut c.client_secret, &mut c.secret].into_iter().flatten() {
                resolve_secret(secret, &resolve);
            }
        }
    }
    if let Some(policies) = &mut config.policies {
        for pattern in &mut policies.paths {
            let mut p = PathBuf::from(&*pattern);
            resolve(&mut p);
            *pattern = p.to_string_lossy().into_owned();
        }
    }
    for p in [&mut config.audit.dir, &mut config.audit.signing_key]
        .into_iter()
        .flatten()
    {
        resolve(p);
    }
    for sink in &mut config.audit.sinks {
        for p in [&mut sink.path, &mut sink.ca].into_iter().flatten() {
            resolve(p);
        }
        for secret in [&mut sink.token, &mut sink.password, &mut sink.client_secret]
            .into_iter()
            .flatten()
        {
            resolve_secret(secret, &resolve);
        }
    }
    if let Some(tls) = &mut config.gateway.tls {
        resolve(&mut tls.cert);
        resolve(&mut tls.key);
    }
    for vs in &mut config.virtual_servers {
        let Some(auth) = &mut vs.auth else { continue };
        if let Some(i) = &mut auth.introspection {
            resolve_secret(&mut i.client_secret, &resolve);
        }
        for w in &mut auth.workloads {
            if let Some(f) = &mut w.jwks_file {
                resolve(f);
            }
        }
    }
}

/// A `file:` secret reference relative to the config file becomes absolute.
fn resolve_secret(secret: &mut SecretRef, resolve: &dyn Fn(&mut PathBuf)) {
    if let Some(SecretSource::File(p)) = secret.source() {
        let mut p = PathBuf::from(p);
        resolve(&mut p);
        secret.0 = format!("file:{}", p.display());
    }
}
