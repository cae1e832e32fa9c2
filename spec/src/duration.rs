//! Durations written as `500ms`, `10s`, `5m`, `1h` or compounds like `1m30s`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration `{0}`; hint: write a number with a unit, like 500ms, 10s, 5m, 1h or 1m30s"
)]
pub struct DurationError(String);

/// A duration with millisecond precision. Serializes canonically (`90s` becomes `1m30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationSpec(u64);

const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

impl DurationSpec {
    pub const fn from_millis(millis: u64) -> Self {
        DurationSpec(millis)
    }

    pub const fn from_secs(secs: u64) -> Self {
        DurationSpec(secs * 1000)
    }

    pub const fn millis(&self) -> u64 {
        self.0
    }

    pub const fn get(&self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl FromStr for DurationSpec {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || DurationError(s.to_string());
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total: u64 = 0;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            if digits == 0 {
                return Err(bad());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let scale = UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, scale)| *scale)
                .ok_or_else(bad)?;
            total = number
                .checked_mul(scale)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
        }
        Ok(DurationSpec(total))
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.0;
        for (name, scale) in UNITS {
            if rest >= scale {
                write!(f, "{}{}", rest / scale, name)?;
                rest %= scale;
            }
        }
        Ok(())
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 500ms, 10s or 5m")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationSpec, E> {
                // A bare number is ambiguous (seconds? milliseconds?), so ask for a unit.
                Err(E::custom(DurationError(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationSpec, E> {
                Err(E::custom(DurationError(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationSpec, E> {
                Err(E::custom(DurationError(v.to_string())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationSpec, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        let cases = [
            ("500ms", 500),
            ("10s", 10_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
            ("0s", 0),
            ("1h1ms", 3_600_001),
        ];
        for (text, millis) in cases {
            let d: DurationSpec = text.parse().unwrap();
            assert_eq!(d.millis(), millis, "{text}");
            assert_eq!(d.get(), Duration::from_millis(millis));
        }
    }

    #[test]
    fn prints_canonically() {
        assert_eq!(DurationSpec::from_millis(90_000).to_string(), "1m30s");
        assert_eq!(DurationSpec::from_millis(1500).to_string(), "1s500ms");
        assert_eq!(DurationSpec::from_millis(0).to_string(), "0s");
        assert_eq!(DurationSpec::from_secs(7200).to_string(), "2h");
    }

    #[test]
    fn errors_say_what_is_right() {
        for bad in [
            "10",
            "",
            "s",
            "10 s",
            "1.5s",
            "10sec",
            "-1s",
            "99999999999999999999h",
        ] {
            let err = bad.parse::<DurationSpec>().unwrap_err().to_string();
            assert!(err.contains("like 500ms, 10s, 5m"), "{bad}: {err}");
        }
        let err = serde_yaml::from_str::<DurationSpec>("10").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid duration `10`"),
            "{err}"
        );
    }
}
