//! Limits against YAML abuse, checked before a document is deserialized into types.
//!
//! One pass over the document's events counts nodes (aliases expanded, as serde_yaml replays
//! them), tracks nesting depth and finds duplicate keys, without storing the values, so
//! memory stays bounded by the file size limit.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;

/// Largest manifest file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Deepest nesting of mappings and sequences in a document.
pub const MAX_DEPTH: usize = 64;
/// Most nodes in one document, counting the content every alias repeats.
pub const MAX_NODES: usize = 100_000;

/// Which limit a document broke, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Breach {
    Depth,
    Nodes,
}

/// The shape of a document's top node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Top {
    Mapping,
    Other(&'static str),
}

pub(crate) struct Guard {
    nodes: Cell<usize>,
    pub breach: Cell<Option<Breach>>,
}

impl Guard {
    pub fn new() -> Self {
        Guard {
            nodes: Cell::new(0),
            breach: Cell::new(None),
        }
    }

    /// Walks one document; the error is serde_yaml's (syntax, limits) with its location.
    pub fn check(&self, text: &str) -> Result<Top, serde_yaml::Error> {
        Node {
            guard: self,
            depth: 0,
            keys: None,
        }
        .deserialize(serde_yaml::Deserializer::from_str(text))
        .map(|shape| shape.top)
    }

    fn count<E: de::Error>(&self, depth: usize) -> Result<(), E> {
        let n = self.nodes.get() + 1;
        self.nodes.set(n);
        if n > MAX_NODES {
            self.breach.set(Some(Breach::Nodes));
            return Err(E::custom("too many nodes"));
        }
        if depth > MAX_DEPTH {
            self.breach.set(Some(Breach::Depth));
            return Err(E::custom("too deep"));
        }
        Ok(())
    }
}

struct Shape {
    top: Top,
}

#[derive(Clone, Copy)]
struct Node<'g> {
    guard: &'g Guard,
    depth: usize,
    /// Set when this node is a mapping key: the keys seen so far in that mapping. The
    /// duplicate check runs while the key is read so the error points at the key.
    keys: Option<&'g RefCell<HashSet<String>>>,
}

impl Node<'_> {
    fn scalar<E: de::Error>(self, text: String) -> Result<Shape, E> {
        if let Some(keys) = self.keys {
            if !keys.borrow_mut().insert(text.clone()) {
                return Err(E::custom(format!(
                    "duplicate key `{text}`; hint: a key may appear once per mapping, remove one"
                )));
            }
        }
        Ok(Shape {
            top: Top::Other("a scalar"),
        })
    }

    fn child(self) -> Self {
        Node {
            guard: self.guard,
            depth: self.depth + 1,
            keys: None,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Shape;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        self.guard.count(self.depth)?;
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any yaml value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Shape, E> {
        self.scalar(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Shape, E> {
        self.scalar(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Shape, E> {
        self.scalar(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Shape, E> {
        self.scalar(v.to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Shape, E> {
        self.scalar(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
        self.scalar("null".to_string())?;
        Ok(Shape {
            top: Top::Other("empty (null)"),
        })
    }
    fn visit_none<E: de::Error>(self) -> Result<Shape, E> {
        self.visit_unit()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Shape, A::Error> {
        // A tagged value (`!tag x`): walk the tag's content.
        let (_, variant) = data.variant::<de::IgnoredAny>()?;
        de::VariantAccess::newtype_variant_seed(variant, self.child())?;
        Ok(Shape {
            top: Top::Other("a tagged value"),
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        while seq.next_element_seed(self.child())?.is_some() {}
        Ok(Shape {
            top: Top::Other("a list"),
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let keys = RefCell::new(HashSet::new());
        let key_node = Node {
            keys: Some(&keys),
            ..self.child()
        };
        while map.next_key_seed(key_node)?.is_some() {
            map.next_value_seed(self.child())?;
        }
        Ok(Shape { top: Top::Mapping })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_documents_pass() {
        let g = Guard::new();
        assert_eq!(g.check("a: {b: [1, 2]}\nc: x\n").unwrap(), Top::Mapping);
        assert_eq!(Guard::new().check("- 1\n").unwrap(), Top::Other("a list"));
        assert_eq!(g.breach.get(), None);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}{}", "[".repeat(80), "]".repeat(80));
        let g = Guard::new();
        assert!(g.check(&deep).is_err());
        assert_eq!(g.breach.get(), Some(Breach::Depth));
        let ok = format!("{}{}", "[".repeat(60), "]".repeat(60));
        assert_eq!(Guard::new().check(&ok).unwrap(), Top::Other("a list"));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let g = Guard::new();
        let err = g.check(&bomb).unwrap_err().to_string();
        // Either our node budget or serde_yaml's own repetition limit stops it.
        assert!(
            g.breach.get() == Some(Breach::Nodes) || err.contains("repetition limit exceeded"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = Guard::new().check("a: 1\nb: {x: 1, x: 2}\n").unwrap_err();
        assert!(err.to_string().contains("duplicate key `x`"), "{err}");
        let at = err.location().unwrap();
        assert_eq!((at.line(), at.column()), (2, 11));
        let err = Guard::new().check("a: 1\nb: 2\na: 3\n").unwrap_err();
        let at = err.location().unwrap();
        assert_eq!((at.line(), at.column()), (3, 1));
    }
}
