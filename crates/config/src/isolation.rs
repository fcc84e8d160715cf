//! Where a local server runs and what it may touch: the `isolation` block of a stdio server.
//!
//! One schema for every runtime. The defaults are the minimal profile: no network, nothing of
//! the host visible beyond what the interpreter needs, resource limits. Only `runtime: process`
//! (no isolation at all) must be written out.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::auth::SecretRef;

/// How a local server is isolated (`servers[].isolation`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IsolationConfig {
    /// Where the server runs (default `sandbox` on Linux). `process` runs it as a plain child
    /// of the gateway with the gateway's own rights, files and network, and must be written
    /// explicitly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeKind>,
    /// What the command's interpreter needs to read (default: chosen from the command:
    /// `node` → `node`, `python`/`python3`/`uv` → `python`, anything else → `binary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// Container only: the image to run, e.g. `localhost/mcp-node:22`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Host paths the server may read or write (absolute, or relative to the config file).
    #[serde(default, skip_serializing_if = "FilesystemGrants::is_empty")]
    pub filesystem: FilesystemGrants,
    /// Where the server may connect to. Absent or an empty `egress` list: no network at all.
    #[serde(default, skip_serializing_if = "NetworkGrants::is_empty")]
    pub network: NetworkGrants,
    /// Resource limits (defaults: 1Gi of memory, 256 processes and threads, no CPU limit).
    #[serde(default, skip_serializing_if = "Resources::is_default")]
    pub resources: Resources,
    /// Environment variables of the server from secret references, e.g.
    /// `{ GITHUB_TOKEN: "env:GITHUB_TOKEN" }`. The value never appears in a command line or
    /// a log.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRef>,
    /// Files inside the sandbox holding a secret, e.g. `{ /run/secrets/token: "file:token" }`:
    /// on a memory-backed file system, readable by the server only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_files: BTreeMap<PathBuf, SecretRef>,
    /// Container only: the OCI runtime class (e.g. `kata`, `runsc`), passed to the engine as
    /// it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class: Option<String>,
    /// Container only: the server speaks Streamable HTTP on this port inside its container
    /// instead of stdio. The container gets a network namespace of its own, holding nothing
    /// but its loopback (and the egress proxy with an allow-list); the gateway reaches the
    /// port from inside that namespace, so nothing on the host or the network can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<LocalHttp>,
    /// `npx`/`uvx` servers only: the lockfile their package is installed from (relative to the
    /// config file) — npm's `package-lock.json` or `npm-shrinkwrap.json` for `npx` (installed
    /// with `npm ci`), a requirements file pinning every package for `uvx` (`pip freeze`,
    /// `uv pip compile`; hashes are checked when present). The installation is keyed by the
    /// file's content, so a changed lockfile installs afresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockfile: Option<PathBuf>,
}

impl IsolationConfig {
    /// The runtime this profile asks for, `sandbox` unless written otherwise.
    pub fn runtime(&self) -> RuntimeKind {
        self.runtime.unwrap_or(RuntimeKind::Sandbox)
    }
}

/// How the gateway reaches a containerised server that speaks Streamable HTTP
/// (`isolation.http`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalHttp {
    /// The TCP port the server listens on inside its container, e.g. `8080`.
    pub port: u16,
    /// The MCP endpoint's path (default `/mcp`).
    #[serde(default = "LocalHttp::default_path")]
    pub path: String,
}

impl LocalHttp {
    fn default_path() -> String {
        "/mcp".into()
    }
}

/// Where a local server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// A Linux sandbox without a daemon: own user, PID, IPC, UTS, mount and network
    /// namespaces, read-only view of what the profile grants, Landlock, a seccomp filter,
    /// no capabilities, `no_new_privs`, cgroup limits where the gateway may write them.
    Sandbox,
    /// A container through the Docker Engine API (Podman or Docker): no network, read-only
    /// root, no capabilities, `no-new-privileges`, limits from the profile.
    Container,
    /// No isolation: a plain child process with the gateway's rights.
    Process,
}

impl RuntimeKind {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Sandbox => "sandbox",
            RuntimeKind::Container => "container",
            RuntimeKind::Process => "process",
        }
    }
}

/// What an interpreter needs to read, so common servers work without hand-written paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Node.js: the `node` binary's installation and the package the script belongs to.
    Node,
    /// Python: the interpreter's prefix (standard library, site-packages) and the script.
    Python,
    /// A compiled program: the binary itself and the system's shared libraries.
    Binary,
}

impl Preset {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Node => "node",
            Preset::Python => "python",
            Preset::Binary => "binary",
        }
    }
}

/// Host paths a server may read or write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesystemGrants {
    /// Paths visible read-only, at the same place inside.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<PathBuf>,
    /// Paths visible read-write, at the same place inside.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<PathBuf>,
}

impl FilesystemGrants {
    /// Nothing granted.
    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty()
    }
}

/// Where a server may connect to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkGrants {
    /// `host:port` or `CIDR:port` pairs the server may connect to, e.g.
    /// `["api.github.com:443", "10.20.0.0/16:5432"]`. Empty: no network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<String>,
}

impl NetworkGrants {
    /// No egress at all.
    pub fn is_empty(&self) -> bool {
        self.egress.is_empty()
    }
}

/// One parsed entry of `network.egress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressRule {
    /// A host name and port, e.g. `api.github.com:443`.
    Host {
        /// Lower-case host name.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// An address range and port, e.g. `10.20.0.0/16:5432` or `[fd00::/8]:443`.
    Net {
        /// First address of the range.
        addr: std::net::IpAddr,
        /// Prefix length.
        prefix: u8,
        /// TCP port.
        port: u16,
    },
}

impl EgressRule {
    /// Parses `host:port`, `ADDR:port`, `CIDR:port` or `[IPv6 or CIDR]:port`.
    pub fn parse(rule: &str) -> Result<EgressRule, String> {
        let expected = "expected host:port or CIDR:port, such as \"api.github.com:443\" or \"10.20.0.0/16:5432\"";
        let (target, port) = rule
            .rsplit_once(':')
            .ok_or_else(|| format!("found \"{rule}\" without a port, {expected}"))?;
        let port: u16 =
            port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                format!("found port \"{port}\" in \"{rule}\", expected 1 to 65535")
            })?;
        let target = target
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(target);
        let (addr, prefix) = match target.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (target, None),
        };
        if let Ok(addr) = addr.parse::<std::net::IpAddr>() {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                    format!("found prefix \"/{p}\" in \"{rule}\", expected 0 to {max}")
                })?,
            };
            return Ok(EgressRule::Net { addr, prefix, port });
        }
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if prefix.is_some() || target.len() > 253 || !target.split('.').all(valid_label) {
            return Err(format!("found \"{rule}\", {expected}"));
        }
        Ok(EgressRule::Host {
            host: target.to_ascii_lowercase(),
            port,
        })
    }
}

/// Resource limits of one server process and everything it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// Most memory, e.g. `512Mi` or `2Gi` (default `1Gi`).
    pub memory: ByteSize,
    /// CPU time as a number of CPUs, e.g. `0.5` (default: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Most processes and threads at once (default 256).
    pub pids: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            memory: ByteSize(1 << 30),
            cpus: None,
            pids: 256,
        }
    }
}

impl Resources {
    /// The defaults, unchanged.
    pub fn is_default(&self) -> bool {
        *self == Resources::default()
    }
}

/// Regex accepted by [`ByteSize`] strings in the JSON Schema.
pub const BYTE_SIZE_PATTERN: &str = r"^\s*[0-9]+\s*(k|K|Ki|M|Mi|G|Gi|T|Ti)?\s*$";

/// A number of bytes written as `512Mi`, `2Gi`, `100M`, `64k` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("found \"{s}\", expected a size such as 512Mi or 2Gi"))?;
        let scale: u64 = match unit.trim() {
            "" => 1,
            "k" | "K" => 1_000,
            "Ki" => 1 << 10,
            "M" => 1_000_000,
            "Mi" => 1 << 20,
            "G" => 1_000_000_000,
            "Gi" => 1 << 30,
            "T" => 1_000_000_000_000,
            "Ti" => 1 << 40,
            other => {
                return Err(format!(
                    "found unit \"{other}\" in \"{s}\", expected one of k, Ki, M, Mi, G, Gi, T, Ti"
                ));
            }
        };
        n.checked_mul(scale)
            .map(ByteSize)
            .ok_or_else(|| format!("found \"{s}\", which is more bytes than fit in 64 bits"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, scale) in [
            ("Ti", 1u64 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ] {
            if self.0 >= scale && self.0.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"512Mi\" or \"2Gi\"")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size in bytes: a number, or a number with a unit (k, Ki, M, Mi, G, Gi, T, Ti), such as \"512Mi\".",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": BYTE_SIZE_PATTERN }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units_and_print_back() {
        assert_eq!("512Mi".parse::<ByteSize>().unwrap().0, 512 << 20);
        assert_eq!("2Gi".parse::<ByteSize>().unwrap().0, 2 << 30);
        assert_eq!("100M".parse::<ByteSize>().unwrap().0, 100_000_000);
        assert_eq!("4096".parse::<ByteSize>().unwrap().0, 4096);
        assert_eq!(ByteSize(512 << 20).to_string(), "512Mi");
        assert_eq!(ByteSize(1000).to_string(), "1000");
        let err = "12 MB".parse::<ByteSize>().unwrap_err();
        assert!(err.contains("unit \"MB\""), "{err}");
        assert!("99999999999Ti".parse::<ByteSize>().is_err());
        assert!("Mi".parse::<ByteSize>().is_err());
    }

    #[test]
    fn egress_rules_parse_hosts_ranges_and_bracketed_ipv6() {
        assert_eq!(
            EgressRule::parse("API.github.com:443").unwrap(),
            EgressRule::Host {
                host: "api.github.com".into(),
                port: 443
            }
        );
        assert_eq!(
            EgressRule::parse("10.20.0.0/16:5432").unwrap(),
            EgressRule::Net {
                addr: "10.20.0.0".parse().unwrap(),
                prefix: 16,
                port: 5432
            }
        );
        assert_eq!(
            EgressRule::parse("[fd00::/8]:443").unwrap(),
            EgressRule::Net {
                addr: "fd00::".parse().unwrap(),
                prefix: 8,
                port: 443
            }
        );
        for bad in [
            "api.github.com",
            "host:0",
            "host:70000",
            "10.0.0.0/33:1",
            "bad_host:1",
            "a..b:1",
            ":443",
        ] {
            assert!(EgressRule::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
