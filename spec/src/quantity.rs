//! Resource quantities: byte sizes (`64Mi`, `1G`, `512`) and CPU amounts (`0.5`, `500m`).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parse errors of quantities; the text says what a right value looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("invalid byte size `{0}`; hint: write a whole number of bytes or a number with a unit, like 512, 64Mi, 1.5Gi or 1G (Ki Mi Gi Ti Pi Ei are powers of 1024; k M G T P E of 1000)")]
    ByteSize(String),
    #[error("byte size `{0}` is too large; hint: the largest size is 16Ei - 1 bytes")]
    ByteSizeOverflow(String),
    #[error("invalid cpu amount `{0}`; hint: write cores as a number or millicores, like 2, 0.5 or 500m (at most 3 decimals)")]
    Cpus(String),
    #[error("cpu amount `{0}` must be more than zero; hint: write at least 1m, or leave cpus out for no limit")]
    CpusZero(String),
}

/// Splits a decimal number `int[.frac]` into (numerator, denominator) exactly.
fn parse_decimal(text: &str) -> Option<(u128, u128)> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More digits than this cannot be exact u64 byte counts anyway.
    if int.len() > 30 || frac.len() > 18 {
        return None;
    }
    let mut num: u128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        num = num * 10 + u128::from(b - b'0');
    }
    let den = 10u128.pow(frac.len() as u32);
    Some((num, den))
}

const BINARY_UNITS: [(&str, u64); 6] = [
    ("Ei", 1 << 60),
    ("Pi", 1 << 50),
    ("Ti", 1 << 40),
    ("Gi", 1 << 30),
    ("Mi", 1 << 20),
    ("Ki", 1 << 10),
];
const DECIMAL_UNITS: [(&str, u64); 6] = [
    ("E", 1_000_000_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("T", 1_000_000_000_000),
    ("G", 1_000_000_000),
    ("M", 1_000_000),
    ("k", 1_000),
];

/// A number of bytes, written like Kubernetes quantities: `512`, `64Mi`, `1G`, `1.5Gi`.
///
/// Serializes canonically: the largest binary unit that divides it exactly, else the largest
/// decimal unit, else plain bytes (`67108864` becomes `64Mi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

impl ByteSize {
    pub const fn from_bytes(bytes: u64) -> Self {
        ByteSize(bytes)
    }

    pub const fn bytes(&self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let bad = || QuantityError::ByteSize(s.to_string());
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let multiplier = match unit {
            "" => 1,
            // Kubernetes writes kilo as `k`; `K` is a common slip with one meaning.
            "K" => 1_000,
            u => BINARY_UNITS
                .iter()
                .chain(DECIMAL_UNITS.iter())
                .find(|(name, _)| *name == u)
                .map(|(_, m)| *m)
                .ok_or_else(bad)?,
        };
        let (num, den) = parse_decimal(number).ok_or_else(bad)?;
        let total = num
            .checked_mul(u128::from(multiplier))
            .ok_or_else(|| QuantityError::ByteSizeOverflow(s.to_string()))?;
        if total % den != 0 {
            // A fraction of a byte has no meaning.
            return Err(bad());
        }
        let bytes = u64::try_from(total / den)
            .map_err(|_| QuantityError::ByteSizeOverflow(s.to_string()))?;
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b != 0 {
            for (name, m) in BINARY_UNITS.iter().chain(DECIMAL_UNITS.iter()) {
                if b.is_multiple_of(*m) {
                    return write!(f, "{}{}", b / m, name);
                }
            }
        }
        write!(f, "{b}")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte size like 512, 64Mi or 1G")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(QuantityError::ByteSize(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// An amount of CPU time, in cores: `2`, `0.5`, `500m`. Stored as millicores.
///
/// Serializes canonically as whole cores (`2`) or millicores (`500m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpus(u64);

impl Cpus {
    /// Millicores, greater than zero.
    pub fn from_millis(millis: u64) -> Option<Self> {
        (millis > 0).then_some(Cpus(millis))
    }

    pub const fn millis(&self) -> u64 {
        self.0
    }
}

impl FromStr for Cpus {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let bad = || QuantityError::Cpus(s.to_string());
        let millis: u128 = if let Some(m) = text.strip_suffix('m') {
            let (num, den) = parse_decimal(m).ok_or_else(bad)?;
            if den != 1 {
                return Err(bad());
            }
            num
        } else {
            let (num, den) = parse_decimal(text).ok_or_else(bad)?;
            let scaled = num * 1000;
            if scaled % den != 0 {
                return Err(bad());
            }
            scaled / den
        };
        let millis = u64::try_from(millis).map_err(|_| bad())?;
        Cpus::from_millis(millis).ok_or_else(|| QuantityError::CpusZero(s.to_string()))
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

impl Serialize for Cpus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Cpus;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cpu amount like 2, 0.5 or 500m")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cpus, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cpus, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cpus, E> {
                // `{}` prints the shortest text that round-trips, so 0.5 stays "0.5".
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cpus, E> {
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
    fn byte_sizes_parse() {
        let cases = [
            ("512", 512),
            ("64Mi", 64 << 20),
            ("1G", 1_000_000_000),
            ("1k", 1000),
            ("1K", 1000),
            ("1.5Gi", 3 << 29),
            ("0", 0),
            ("2Ei", 2 << 60),
        ];
        for (text, bytes) in cases {
            assert_eq!(text.parse::<ByteSize>().unwrap().bytes(), bytes, "{text}");
        }
    }

    #[test]
    fn byte_size_errors_say_what_is_right() {
        for bad in ["64MB", "", "1.5", "-1", "Mi", "1..2Mi", "1 Mi x"] {
            let err = bad.parse::<ByteSize>().unwrap_err().to_string();
            assert!(err.contains("like 512, 64Mi"), "{bad}: {err}");
        }
        let err = "16Ei".parse::<ByteSize>().unwrap_err();
        assert_eq!(err, QuantityError::ByteSizeOverflow("16Ei".into()));
    }

    #[test]
    fn byte_sizes_print_canonically() {
        let cases = [
            (67_108_864, "64Mi"),
            (1_000_000_000, "1G"),
            (512, "512"),
            (3072, "3Ki"),
            (1536, "1536"),
            (0, "0"),
            (1001, "1001"),
        ];
        for (bytes, text) in cases {
            assert_eq!(ByteSize::from_bytes(bytes).to_string(), text);
            assert_eq!(text.parse::<ByteSize>().unwrap().bytes(), bytes);
        }
    }

    #[test]
    fn cpus_parse_and_print() {
        let cases = [
            ("0.5", 500, "500m"),
            ("500m", 500, "500m"),
            ("2", 2000, "2"),
            ("1.25", 1250, "1250m"),
            ("1000m", 1000, "1"),
        ];
        for (text, millis, canon) in cases {
            let c: Cpus = text.parse().unwrap();
            assert_eq!(c.millis(), millis, "{text}");
            assert_eq!(c.to_string(), canon);
        }
        assert_eq!(
            "0".parse::<Cpus>().unwrap_err(),
            QuantityError::CpusZero("0".into())
        );
        for bad in ["0.0005", "1.5m", "abc", "2 cores", ""] {
            let err = bad.parse::<Cpus>().unwrap_err().to_string();
            assert!(err.contains("like 2, 0.5 or 500m"), "{bad}: {err}");
        }
    }

    #[test]
    fn yaml_numbers_are_accepted() {
        let c: Cpus = serde_yaml::from_str("0.5").unwrap();
        assert_eq!(c.millis(), 500);
        let c: Cpus = serde_yaml::from_str("3").unwrap();
        assert_eq!(c.millis(), 3000);
        let b: ByteSize = serde_yaml::from_str("1024").unwrap();
        assert_eq!(b.bytes(), 1024);
        assert_eq!(serde_json::to_string(&b).unwrap(), "\"1Ki\"");
    }
}
