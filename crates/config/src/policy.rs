//! The `policies:` block (authorization) and the per-server operation classes policies see.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::DurationSpec;

/// Which Policy Decision Point decides every call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoliciesConfig {
    /// The policy engine that decides.
    pub engine: PolicyEngineKind,
    /// Policy files, relative to the config file; `*` and `?` match within a file name,
    /// e.g. `policies/*.cedar`. Cedar also reads `*.cedarschema` fragments listed here;
    /// `*.tests.yaml` next to the policies are run on every load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// `http` only: the OPA base URL, e.g. `http://127.0.0.1:8181` (Gatehouse POSTs to
    /// `/v1/data/gatehouse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Longest one decision may take (Rego evaluation, the `http` round trip); past it the
    /// request is denied with the reason logged. Default 50ms in process, 1s for `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
}

/// A policy engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyEngineKind {
    /// Cedar (`cedar-policy`), in process; policies are validated against Gatehouse's
    /// published schema (`gatehouse policy schema`).
    Cedar,
    /// Rego, OPA's language (`regorus`), in process; the decision is
    /// `data.gatehouse.allow`.
    Rego,
    /// An external OPA reached over its REST decision API at `url`.
    Http,
}

impl PolicyEngineKind {
    /// The name used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyEngineKind::Cedar => "cedar",
            PolicyEngineKind::Rego => "rego",
            PolicyEngineKind::Http => "http",
        }
    }
}

/// What a tool does, as policies see it (`resource.operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Reads only.
    Read,
    /// Changes something.
    Write,
    /// Deletes or destroys something.
    Delete,
    /// Runs something (code, a workflow).
    Execute,
}

impl Operation {
    /// The name policies compare against.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Delete => "delete",
            Operation::Execute => "execute",
        }
    }
}

/// Operation classes of a server's tools, keyed by the server's own tool names.
pub type ToolOperations = BTreeMap<String, Operation>;
