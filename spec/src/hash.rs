//! The canonical spec hash: what decides whether a running object must be recreated.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::object::Object;

/// Bumped when the meaning of a hashed field changes, so every object is recreated once.
/// 2: `metadata.annotations` left out of the hash.
pub const HASH_SCHEMA_VERSION: &str = "berth-spec-hash/2";

/// Version of the runtime hash ([`runtime_hash`]).
pub const RUNTIME_HASH_VERSION: &str = "berth-runtime-hash/1";

/// Container fields berth applies to a running container without recreating it: they steer
/// the agent (restarts, probes, order, updates, how to stop, when to pull), not the process.
pub const LIVE_FIELDS: [&str; 7] = [
    "restartPolicy",
    "healthcheck",
    "dependsOn",
    "update",
    "stopSignal",
    "stopTimeout",
    "imagePullPolicy",
];

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

/// `sha256:<hex>` over what a running object is made of: the canonical JSON without
/// annotations and without the [`LIVE_FIELDS`] of a container, and its env files' digests.
/// Two revisions with the same runtime hash run the same process: a change between them is
/// applied without recreating the container.
pub fn runtime_hash(object: &Object, env_file_digests: &[String]) -> String {
    let mut value =
        serde_json::to_value(object).expect("manifest objects always serialize to json");
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("annotations");
    }
    if matches!(object, Object::Container(_)) {
        if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
            for f in LIVE_FIELDS {
                spec.remove(f);
            }
        }
    }
    let mut json = String::new();
    write_canonical(&value, &mut json);
    let mut h = Sha256::new();
    h.update(RUNTIME_HASH_VERSION.as_bytes());
    h.update(b"\n");
    h.update(json.as_bytes());
    for digest in env_file_digests {
        h.update(b"\nenvFile ");
        h.update(digest.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
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
    fn runtime_hash_ignores_live_fields_only() {
        let base = web(&["a"]);
        let (h, r) = (spec_hash(&base, &[]), runtime_hash(&base, &[]));
        assert_ne!(h, r, "the two hashes are versioned apart");
        let mut live = base.clone();
        if let Object::Container(c) = &mut live {
            c.spec.restart_policy = crate::RestartPolicy::Never;
            c.spec.stop_timeout = crate::DurationSpec::from_secs(3);
            c.spec.update.strategy = crate::UpdateStrategy::KillThenDownload;
            c.spec.depends_on.push(crate::Dependency {
                name: "db".into(),
                condition: crate::DependencyCondition::Started,
            });
        }
        assert_ne!(spec_hash(&live, &[]), h, "a new revision");
        assert_eq!(runtime_hash(&live, &[]), r, "the same process");
        assert_ne!(runtime_hash(&web(&["b"]), &[]), r);
        assert_ne!(
            runtime_hash(&base, &[sha256_digest(b"A=1\n")]),
            r,
            "env files are part of the process"
        );
    }

    #[test]
    fn objects_without_the_new_update_and_probe_fields_keep_their_hash() {
        // Written by berth before minReady, rollbackAfter and startInterval existed: their
        // defaults must not show up in the canonical JSON, or every container would be
        // recreated by an upgrade.
        let mut spec = ContainerSpec::new("busybox:1.36");
        spec.healthcheck = Some(serde_yaml::from_str("{tcp: {port: 80}}").unwrap());
        let json = canonical_json(&Object::Container(Container {
            metadata: Metadata::named("web"),
            spec,
        }));
        assert!(
            json.contains(r#""update":{"strategy":"DownloadThenKill"}"#),
            "{json}"
        );
        assert!(!json.contains("startInterval"), "{json}");
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
