//! Checks of names and scalar strings shared by all kinds: DNS labels, env/sysctl values.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::Deserializer;

/// Why `name` is not a DNS label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63), or `None`.
pub fn dns_label_error(name: &str) -> Option<String> {
    let hint = "hint: use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";
    let problem = if name.is_empty() {
        "must not be empty"
    } else if name.len() > 63 {
        "is longer than 63 characters"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            "has uppercase letters"
        } else {
            "has characters other than a-z, 0-9 and '-'"
        }
    } else if name.starts_with('-') || name.ends_with('-') {
        "starts or ends with '-'"
    } else {
        return None;
    };
    Some(format!("name `{name}` {problem}; {hint}"))
}

/// A check of a string value: `Err` holds the message (with an optional hint).
pub(crate) type Check = fn(&str) -> Result<(), String>;

/// A string checked inside serde's visitor, so that an error points at the value itself.
#[derive(Clone, Copy)]
pub(crate) struct CheckedStr(pub Check);

impl<'de> de::DeserializeSeed<'de> for CheckedStr {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for CheckedStr {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        (self.0)(v).map_err(E::custom)?;
        Ok(v.to_string())
    }
}

/// A list of strings, each checked where it is.
#[derive(Clone, Copy)]
pub(crate) struct CheckedList(pub Check);

impl<'de> Visitor<'de> for CheckedList {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of strings")
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element_seed(CheckedStr(self.0))? {
            out.push(s);
        }
        Ok(out)
    }
}

/// An integer checked inside serde's visitor against `min..=max`.
pub(crate) struct CheckedNumber {
    pub min: u64,
    pub max: u64,
    pub error: fn(i128) -> String,
}

impl CheckedNumber {
    fn check<E: de::Error>(&self, n: i128) -> Result<u64, E> {
        if n < i128::from(self.min) || n > i128::from(self.max) {
            return Err(E::custom((self.error)(n)));
        }
        Ok(n as u64)
    }
}

impl Visitor<'_> for CheckedNumber {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a whole number from {} to {}", self.min, self.max)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        self.check(i128::from(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        self.check(i128::from(v))
    }
}

fn check_dns_label(name: &str) -> Result<(), String> {
    dns_label_error(name).map_or(Ok(()), Err)
}

/// `deserialize_with` for names that must be DNS labels.
pub(crate) fn dns_label<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_str(CheckedStr(check_dns_label))
}

/// `deserialize_with` for lists of DNS labels (network names).
pub(crate) fn dns_labels<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_seq(CheckedList(check_dns_label))
}

/// A scalar value that becomes a string: strings, integers and booleans.
///
/// `PORT: 8080` is common in env maps; floats are refused because YAML would change
/// them (`1.10` reads as `1.1`).
struct ScalarString;

impl Visitor<'_> for ScalarString {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Err(E::custom(format!(
            "number {v} is not a string; hint: quote it, like \"{v}\", so YAML keeps it as written"
        )))
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(E::custom(
            "value is empty (null); hint: write \"\" for an empty string",
        ))
    }
}

struct ScalarStringSeed;

impl<'de> de::DeserializeSeed<'de> for ScalarStringSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(ScalarString)
    }
}

/// `deserialize_with` for string maps whose values may be written as plain scalars.
pub(crate) fn scalar_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct MapV;
    impl<'de> Visitor<'de> for MapV {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of names to strings")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                let value = map.next_value_seed(ScalarStringSeed)?;
                if out.insert(key.clone(), value).is_some() {
                    return Err(de::Error::custom(format!("duplicate key `{key}`")));
                }
            }
            Ok(out)
        }
    }
    d.deserialize_any(MapV)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["web", "a", "web-1", "0", &"a".repeat(63)] {
            assert_eq!(dns_label_error(good), None, "{good}");
        }
        let cases = [
            ("", "must not be empty"),
            ("Web", "has uppercase letters"),
            ("web_1", "has characters other than"),
            ("-web", "starts or ends with '-'"),
            ("web-", "starts or ends with '-'"),
        ];
        for (bad, why) in cases {
            let err = dns_label_error(bad).unwrap();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("hint: use lowercase letters"), "{err}");
        }
        let long = "a".repeat(64);
        assert!(dns_label_error(&long).unwrap().contains("longer than 63"));
    }

    #[derive(serde::Deserialize)]
    struct Env {
        #[serde(deserialize_with = "scalar_map")]
        env: BTreeMap<String, String>,
    }

    #[test]
    fn scalar_maps_stringify_ints_and_bools() {
        let e: Env = serde_yaml::from_str("env: {PORT: 8080, DEBUG: true, NAME: x}").unwrap();
        let want: BTreeMap<String, String> = [("PORT", "8080"), ("DEBUG", "true"), ("NAME", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(e.env, want);
        let err = serde_yaml::from_str::<Env>("env: {V: 1.10}")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("hint: quote it"), "{err}");
    }
}
