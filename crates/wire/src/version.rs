//! MCP protocol versions and the two eras they fall into.

use std::fmt;
use std::str::FromStr;

/// The two generations of MCP a gateway must serve at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Era {
    /// 2024-11-05 … 2025-11-25: `initialize` handshake, `Mcp-Session-Id`, server→client requests on streams.
    Handshake,
    /// 2026-07-28 and later: stateless requests with per-request `_meta`, MRTR for server→client input.
    Stateless,
}

/// A protocol revision Gatehouse understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// Original release: stdio and HTTP+SSE.
    V2024_11_05,
    /// Streamable HTTP, first OAuth spec.
    V2025_03_26,
    /// Structured content, elicitation, `MCP-Protocol-Version` header.
    V2025_06_18,
    /// Last revision of the handshake era.
    V2025_11_25,
    /// Stateless core, `server/discover`, MRTR.
    V2026_07_28,
}

impl ProtocolVersion {
    /// Every version Gatehouse speaks, newest first (the order `-32022` errors list them in).
    pub const ALL: [ProtocolVersion; 5] = [
        Self::V2026_07_28,
        Self::V2025_11_25,
        Self::V2025_06_18,
        Self::V2025_03_26,
        Self::V2024_11_05,
    ];
    /// The newest revision.
    pub const LATEST: ProtocolVersion = Self::V2026_07_28;
    /// The newest revision that still has an `initialize` handshake.
    pub const LATEST_HANDSHAKE: ProtocolVersion = Self::V2025_11_25;

    /// The version string as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2024_11_05 => "2024-11-05",
            Self::V2025_03_26 => "2025-03-26",
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
            Self::V2026_07_28 => "2026-07-28",
        }
    }

    /// Which era this revision belongs to.
    pub fn era(self) -> Era {
        if self >= Self::V2026_07_28 {
            Era::Stateless
        } else {
            Era::Handshake
        }
    }

    /// The supported versions as wire strings, newest first.
    pub fn supported_strings() -> Vec<&'static str> {
        Self::ALL.iter().map(|v| v.as_str()).collect()
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version string Gatehouse does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported MCP protocol version {0:?}")]
pub struct UnknownVersion(pub String);

impl FromStr for ProtocolVersion {
    type Err = UnknownVersion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownVersion(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_versions() {
        assert_eq!(
            "2025-06-18".parse::<ProtocolVersion>().unwrap(),
            ProtocolVersion::V2025_06_18
        );
        assert!("2025-01-01".parse::<ProtocolVersion>().is_err());
        assert_eq!(ProtocolVersion::V2026_07_28.era(), Era::Stateless);
        assert_eq!(ProtocolVersion::V2025_11_25.era(), Era::Handshake);
        assert_eq!(ProtocolVersion::supported_strings()[0], "2026-07-28");
    }
}
