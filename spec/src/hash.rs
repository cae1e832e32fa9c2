//! The canonical spec hash: what decides whether a running object must be recreated.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::object::Object;

/// Bumped when the meaning of a hashed field changes, so every object is recreated once.
/// 2: `metadata.annotations` left out of the hash.
pub const HASH_SCHEMA_VERSION: &str = "berth-spec-hash/2";

/// `sha256:` and the hex digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            // Sorted explicitly: serde_json keeps insertion order when a crate in the build
            // turns on its `preserve_order` feature.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The object as JSON with sorted keys and no whitespace, after defaults.
pub fn canonical_json(object: &Object) -> String {
    let value = serde_json::to_value(object).expect("manifest objects always serialize to json");
    let mut out = String::new();
    write_canonical(&value, &mut out);
    out
}

/// The canonical JSON that the hash covers: kind, name, labels and spec, but not
/// `metadata.annotations` — those are operational hints (`berth/prune`) that must not
/// recreate a running object.
fn hashed_json(object: &Object) -> String {
    let mut value =
        serde_json::to_value(object).expect("manifest objects always serialize to json");
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("annotations");
    }
    let mut out = String::new();
    write_canonical(&value, &mut out);
    out
}

/// `sha256:<hex>` over the schema version, the canonical JSON without annotations and the
/// digests of the object's env files (in `envFiles` order, each as returned by
/// [`sha256_digest`]).
pub fn spec_hash(object: &Object, env_file_digests: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(HASH_SCHEMA_VERSION.as_bytes());
    h.update(b"\n");
    h.update(hashed_json(object).as_bytes());
    for digest in env_file_digests {
        h.update(b"\nenvFile ");
        h.update(digest.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerSpec;
    use crate::object::{Container, Metadata};

    fn web(args: &[&str]) -> Object {
        let mut spec = ContainerSpec::new("busybox:1.36");
        spec.args = Some(args.iter().map(|s| s.to_string()).collect());
        Object::Container(Container {
            metadata: Metadata::named("web"),
            spec,
        })
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let json = canonical_json(&web(&["a"]));
        assert!(json.starts_with(r#"{"apiVersion":"berth/v1","kind":"Container","metadata":{"annotations":{},"labels":{},"name":"web"},"spec":{"args":["a"],"dependsOn":[],"devices":[]"#), "{json}");
        assert!(!json.contains(' '), "{json}");
    }

    #[test]
    fn hash_depends_on_spec_and_env_files() {
        let a = spec_hash(&web(&["a"]), &[]);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
        assert_eq!(a, spec_hash(&web(&["a"]), &[]));
        assert_ne!(a, spec_hash(&web(&["b"]), &[]));
        let env = sha256_digest(b"A=1\n");
        assert_ne!(a, spec_hash(&web(&["a"]), std::slice::from_ref(&env)));
        assert_ne!(
            spec_hash(&web(&["a"]), &[env]),
            spec_hash(&web(&["a"]), &[sha256_digest(b"A=2\n")])
        );
    }

    #[test]
    fn hash_covers_labels_but_not_annotations() {
        let plain = web(&["a"]);
        let base = spec_hash(&plain, &[]);
        let mut annotated = plain.clone();
        if let Object::Container(c) = &mut annotated {
            c.metadata
                .annotations
                .insert("berth/prune".into(), "disabled".into());
        }
        assert_eq!(spec_hash(&annotated, &[]), base);
        assert!(canonical_json(&annotated).contains(r#""annotations":{"berth/prune":"disabled"}"#));
        let mut labelled = plain;
        if let Object::Container(c) = &mut labelled {
            c.metadata.labels.insert("app".into(), "web".into());
        }
        assert_ne!(spec_hash(&labelled, &[]), base);
    }
}
