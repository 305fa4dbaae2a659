//! A duration written the way Kubernetes users write them (`250ms`, `30s`, `1m30s`).
//!
//! The accepted syntax is a strict subset of Go's `time.ParseDuration`, so that CEL rules can
//! compare the same strings with `duration(...)` at admission and the operator reads them the
//! same way. Serialisation is canonical (`1m30s`, `0s`) so rendered output is deterministic.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern the CRD schema enforces; `Duration::from_str` accepts exactly this language.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,9}(ms|s|m|h))+$";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid duration {input:?}: expected digits followed by ms, s, m or h, e.g. 250ms, 30s, 1m30s"
)]
pub struct ParseDurationError {
    input: String,
}

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub const fn from_millis(millis: u64) -> Self {
        Duration(std::time::Duration::from_millis(millis))
    }

    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub fn as_std(self) -> std::time::Duration {
        self.0
    }

    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<std::time::Duration> for Duration {
    fn from(value: std::time::Duration) -> Self {
        Duration(value)
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = || ParseDurationError {
            input: input.to_owned(),
        };
        if input.is_empty() {
            return Err(error());
        }
        let mut total: u64 = 0;
        let mut rest = input;
        while !rest.is_empty() {
            let digits_end = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(error)?;
            if digits_end == 0 || digits_end > 9 {
                return Err(error());
            }
            let value: u64 = rest[..digits_end].parse().map_err(|_| error())?;
            let after = &rest[digits_end..];
            let (unit_millis, unit_len) = if after.starts_with("ms") {
                (1, 2)
            } else if after.starts_with('s') {
                (1_000, 1)
            } else if after.starts_with('m') {
                (60_000, 1)
            } else if after.starts_with('h') {
                (3_600_000, 1)
            } else {
                return Err(error());
            };
            total = value
                .checked_mul(unit_millis)
                .and_then(|part| total.checked_add(part))
                .ok_or_else(error)?;
            rest = &after[unit_len..];
        }
        Ok(Duration::from_millis(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut millis = self.as_millis();
        if millis == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if millis >= size {
                write!(f, "{}{unit}", millis / size)?;
                millis %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonically() {
        for (text, millis, canonical) in [
            ("0s", 0, "0s"),
            ("250ms", 250, "250ms"),
            ("30s", 30_000, "30s"),
            ("90s", 90_000, "1m30s"),
            ("1m30s", 90_000, "1m30s"),
            ("2h", 7_200_000, "2h"),
            ("1s500ms", 1_500, "1s500ms"),
        ] {
            let parsed: Duration = text.parse().expect(text);
            assert_eq!(parsed.as_millis(), millis, "{text}");
            assert_eq!(parsed.to_string(), canonical, "{text}");
        }
    }

    #[test]
    fn rejects_what_the_schema_rejects() {
        for bad in ["", "5", "1.5s", "-1s", "10 s", "1d", "s", "1234567890s"] {
            assert!(
                bad.parse::<Duration>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
