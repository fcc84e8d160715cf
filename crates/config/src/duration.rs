//! Human-friendly durations (`"500ms"`, `"30s"`, `"5m"`, `"1h 30m"`).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Regex accepted by [`DurationSpec`] in the JSON Schema: one or more
/// `<number><unit>` groups, optionally separated by spaces. The unit list
/// itself is checked by `humantime` when the value is parsed.
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*[A-Za-zµ]+\s*)+$";

/// A duration written as a string such as `"30s"`, `"500ms"` or `"1h 30m"`.
///
/// Plain numbers are rejected on purpose: `timeout: 30` is ambiguous
/// between seconds and milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationSpec(pub Duration);

impl DurationSpec {
    /// Wraps a [`Duration`].
    pub const fn new(d: Duration) -> Self {
        DurationSpec(d)
    }

    /// A whole number of seconds.
    pub const fn from_secs(secs: u64) -> Self {
        DurationSpec(Duration::from_secs(secs))
    }

    /// The wrapped [`Duration`].
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for DurationSpec {
    fn from(d: Duration) -> Self {
        DurationSpec(d)
    }
}

impl From<DurationSpec> for Duration {
    fn from(d: DurationSpec) -> Self {
        d.0
    }
}

impl std::str::FromStr for DurationSpec {
    type Err = humantime::DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim()).map(DurationSpec)
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DurationSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"30s\", \"500ms\" or \"5m\"")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationSpec, E> {
                v.parse().map_err(|e| {
                    E::custom(format!(
                        "found \"{v}\", expected a duration such as \"30s\", \"500ms\" or \"5m\" ({e})"
                    ))
                })
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number followed by a unit (ms, s, m, h, d), e.g. \"500ms\", \"30s\", \"5m\", \"1h 30m\".",
            "examples": ["500ms", "30s", "5m", "24h"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let d: DurationSpec = "1h 30m".parse().unwrap();
        assert_eq!(d.get(), Duration::from_secs(5400));
        assert_eq!(d.to_string(), "1h 30m");
        assert_eq!(
            "500ms".parse::<DurationSpec>().unwrap().get().as_millis(),
            500
        );
        assert!("30".parse::<DurationSpec>().is_err());
        assert!("5 parsecs".parse::<DurationSpec>().is_err());
    }

    #[test]
    fn serde_round_trip() {
        let d = DurationSpec::from_secs(90);
        let json = serde_json::to_value(d).unwrap();
        assert_eq!(json, serde_json::json!("1m 30s"));
        assert_eq!(serde_json::from_value::<DurationSpec>(json).unwrap(), d);
        assert!(serde_json::from_value::<DurationSpec>(serde_json::json!(30)).is_err());
    }

    #[test]
    fn pattern_matches_formatted_durations() {
        let re = regex_lite::Regex::new(DURATION_PATTERN).unwrap();
        for s in ["30s", "1h 30m", "500ms", "1m 30s", " 5m "] {
            assert!(re.is_match(s), "{s}");
        }
        for s in ["30", "s", "", "-5s"] {
            assert!(!re.is_match(s), "{s}");
        }
    }
}
