//! Last-known-good objects. Every object of a file that loads is remembered in the state db;
//! when its file stops loading (or the whole directory goes missing) the desired state takes
//! the remembered version, so the object's container keeps running and is still restarted
//! under its policy — also after an agent restart, because the db is the memory.

use std::collections::BTreeMap;

use berth_engine::state::LastGoodRecord;
use berth_spec::{
    canonical_json, Container, ContainerSpec, Kind, LoadResult, Loaded, Metadata, Network,
    NetworkSpec, Object, Volume, VolumeSpec,
};
use serde_json::Value;

use berth_engine::state::StateDb;

use super::desired::{Desired, DesiredContainer, DesiredNetwork, DesiredVolume, Origin};

#[derive(Debug, thiserror::Error)]
pub enum LastGoodError {
    #[error("decode last-good {kind}/{name} (from {file}) in the state db: {source} (hint: it was written by another berth version; make {file} load again to replace it)")]
    Decode {
        kind: String,
        name: String,
        file: String,
        source: serde_json::Error,
    },
    #[error("decode last-good {kind}/{name} (from {file}) in the state db: unknown kind (hint: it was written by another berth version; make {file} load again to replace it)")]
    UnknownKind {
        kind: String,
        name: String,
        file: String,
    },
}

pub type Result<T, E = LastGoodError> = std::result::Result<T, E>;

/// A last-good object, decoded from its row.
#[derive(Clone, Debug, PartialEq)]
pub struct GoodObject {
    pub object: Object,
    pub source_file: String,
    pub hash: String,
    /// `None` for rows written before berth knew runtime hashes.
    pub runtime_hash: Option<String>,
}

/// The row that remembers `loaded`.
pub fn encode(loaded: &Loaded, now_ms: u64) -> LastGoodRecord {
    LastGoodRecord {
        kind: loaded.object.kind().as_str().to_string(),
        name: loaded.object.name().to_string(),
        source_file: loaded.source.file.display().to_string(),
        spec_hash: loaded.hash.clone(),
        runtime_hash: Some(loaded.runtime_hash.clone()),
        object_json: canonical_json(&loaded.object),
        updated_at: now_ms / 1000,
    }
}

/// The object a row holds. Its defaults were applied before it was stored, and its hash is
/// taken as stored: env files are not read again for an object whose file does not load.
pub fn decode(r: &LastGoodRecord) -> Result<GoodObject> {
    let err = |source| LastGoodError::Decode {
        kind: r.kind.clone(),
        name: r.name.clone(),
        file: r.source_file.clone(),
        source,
    };
    let mut doc: serde_json::Map<String, Value> =
        serde_json::from_str(&r.object_json).map_err(err)?;
    let metadata: Metadata =
        serde_json::from_value(doc.remove("metadata").unwrap_or_default()).map_err(err)?;
    let spec = doc
        .remove("spec")
        .unwrap_or(Value::Object(Default::default()));
    let object = match Kind::parse(&r.kind) {
        Some(Kind::Container) => Object::Container(Container {
            metadata,
            spec: serde_json::from_value::<ContainerSpec>(spec).map_err(err)?,
        }),
        Some(Kind::Network) => Object::Network(Network {
            metadata,
            spec: serde_json::from_value::<NetworkSpec>(spec).map_err(err)?,
        }),
        Some(Kind::Volume) => Object::Volume(Volume {
            metadata,
            spec: serde_json::from_value::<VolumeSpec>(spec).map_err(err)?,
        }),
        None => {
            return Err(LastGoodError::UnknownKind {
                kind: r.kind.clone(),
                name: r.name.clone(),
                file: r.source_file.clone(),
            })
        }
    };
    Ok(GoodObject {
        object,
        source_file: r.source_file.clone(),
        hash: r.spec_hash.clone(),
        runtime_hash: r.runtime_hash.clone(),
    })
}

/// Decodes every row; the ones that do not decode come back as errors, the rest still count.
pub fn decode_all(rows: &[LastGoodRecord]) -> (Vec<GoodObject>, Vec<LastGoodError>) {
    let mut good = Vec::new();
    let mut errors = Vec::new();
    for r in rows {
        match decode(r) {
            Ok(g) => good.push(g),
            Err(e) => errors.push(e),
        }
    }
    (good, errors)
}

/// What one pass changes in the `last_good` table.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub put: Vec<LastGoodRecord>,
    /// (kind, name)
    pub delete: Vec<(String, String)>,
}

/// Whether a row's object says `berth/prune: disabled` (a row that does not decode does not).
fn row_prune_disabled(r: &LastGoodRecord) -> bool {
    decode(r).is_ok_and(|g| g.object.metadata().prune_disabled())
}

/// Objects that loaded are stored when they are new or changed (hash, file or content);
/// stored objects that no loaded file holds any more are deleted, unless their file is frozen
/// or they said `berth/prune: disabled` (then they stay, kept).
pub fn changes(
    stored: &[LastGoodRecord],
    load: &LoadResult,
    desired: &Desired,
    now_ms: u64,
) -> Changes {
    let by_ref: BTreeMap<(&str, &str), &LastGoodRecord> = stored
        .iter()
        .map(|r| ((r.kind.as_str(), r.name.as_str()), r))
        .collect();
    let mut out = Changes::default();
    let mut loaded_refs = std::collections::BTreeSet::new();
    for l in &load.objects {
        let row = encode(l, now_ms);
        loaded_refs.insert((row.kind.clone(), row.name.clone()));
        let same = by_ref
            .get(&(row.kind.as_str(), row.name.as_str()))
            .is_some_and(|old| {
                old.spec_hash == row.spec_hash
                    && old.runtime_hash == row.runtime_hash
                    && old.source_file == row.source_file
                    && old.object_json == row.object_json
            });
        if !same {
            out.put.push(row);
        }
    }
    for r in stored {
        if !loaded_refs.contains(&(r.kind.clone(), r.name.clone()))
            && !desired.is_frozen(&r.source_file)
            && !row_prune_disabled(r)
        {
            out.delete.push((r.kind.clone(), r.name.clone()));
        }
    }
    out
}

impl Desired {
    /// Adds the last good version of each object that no file that loads defines now and
    /// whose file is frozen (origin `Frozen`) or that said `berth/prune: disabled` (origin
    /// `Kept`). Objects of files that load always win.
    pub fn add_last_good(&mut self, good: &[GoodObject]) {
        for g in good {
            let origin = if self.is_frozen(&g.source_file) {
                Origin::Frozen
            } else if g.object.metadata().prune_disabled() {
                Origin::Kept
            } else {
                continue;
            };
            let name = g.object.name().to_string();
            let source_file = g.source_file.clone();
            let hash = g.hash.clone();
            match &g.object {
                Object::Container(c) if !self.containers.contains_key(&name) => {
                    self.containers.insert(
                        name.clone(),
                        DesiredContainer {
                            name,
                            spec: c.spec.clone(),
                            // An old row without one: the spec hash stands in, and a record
                            // from the same era carries the same.
                            runtime_hash: g.runtime_hash.clone().unwrap_or_else(|| hash.clone()),
                            hash,
                            source_file,
                            origin,
                            rejected: None,
                        },
                    );
                }
                Object::Network(n) if !self.networks.contains_key(&name) => {
                    self.networks.insert(
                        name.clone(),
                        DesiredNetwork {
                            name,
                            spec: n.spec.clone(),
                            hash,
                            source_file,
                            origin,
                        },
                    );
                }
                Object::Volume(v) if !self.volumes.contains_key(&name) => {
                    self.volumes.insert(
                        name.clone(),
                        DesiredVolume {
                            name,
                            spec: v.spec,
                            hash,
                            source_file,
                            origin,
                        },
                    );
                }
                _ => {}
            }
        }
    }
}

/// The desired state of one load: the objects of the files that load, and the last good
/// version of the objects that are frozen or kept. The agent and `berth plan` both build it
/// here, so they decide alike.
pub fn desired(load: &LoadResult, good: &[GoodObject], allow_empty: bool) -> Desired {
    let mut d = Desired::from_load(load, allow_empty);
    d.add_last_good(good);
    d
}

/// Remembers the objects of `load` as last good in `db` and returns the desired state (with
/// the last good version of frozen and kept objects). A db that fails still gives the loaded
/// objects: frozen ones are then left as they are this pass.
pub fn remember(db: &StateDb, load: &LoadResult, allow_empty: bool, now_ms: u64) -> Desired {
    let plain = Desired::from_load(load, allow_empty);
    let stored = match db.list_last_good() {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "read last-good objects; frozen and kept objects are left as they are this pass");
            return plain;
        }
    };
    let change = changes(&stored, load, &plain, now_ms);
    if !change.put.is_empty() || !change.delete.is_empty() {
        tracing::debug!(
            put = change.put.len(),
            delete = change.delete.len(),
            "update last-good objects"
        );
    }
    if let Err(e) = db.update_last_good(&change.put, &change.delete) {
        tracing::error!(error = %e, "remember last-good objects");
    }
    // Only rows that were not deleted matter below (frozen or kept ones).
    let deleted: std::collections::BTreeSet<&(String, String)> = change.delete.iter().collect();
    let rest: Vec<LastGoodRecord> = stored
        .into_iter()
        .filter(|r| !deleted.contains(&(r.kind.clone(), r.name.clone())))
        .collect();
    let (good, errors) = decode_all(&rest);
    for e in errors {
        tracing::warn!(error = %e, "last-good object unusable; its object is left as it is");
    }
    let mut d = plain;
    d.add_last_good(&good);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, args: &str) -> String {
        format!(
            "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  image: busybox:1.36\n  args: [{args}]\n  restartPolicy: OnFailure\n  resources: {{memory: 64Mi, cpus: 500m}}\n  ports: [{{containerPort: 80}}]\n  stopTimeout: 3s\n  stopSignal: SIGINT\n"
        )
    }

    use crate::reconcile::test_load as load;

    fn rows(load: &LoadResult) -> Vec<LastGoodRecord> {
        load.objects.iter().map(|l| encode(l, 1_000)).collect()
    }

    #[test]
    fn rows_decode_to_the_same_objects() {
        let network = "apiVersion: berth/v1\nkind: Network\nmetadata: {name: front}\nspec: {subnet: 10.89.1.0/24}\n---\napiVersion: berth/v1\nkind: Volume\nmetadata: {name: data}\nspec: {reclaimPolicy: Delete}\n";
        let l = load(&[
            ("/m/web.yaml", &container("web", "a, b")),
            ("/m/net.yaml", network),
        ]);
        assert!(l.is_valid(), "{:?}", l.problems);
        let (good, errors) = decode_all(&rows(&l));
        assert!(errors.is_empty(), "{errors:?}");
        let expected: Vec<GoodObject> = l
            .objects
            .iter()
            .map(|o| GoodObject {
                object: o.object.clone(),
                source_file: o.source.file.display().to_string(),
                hash: o.hash.clone(),
                runtime_hash: Some(o.runtime_hash.clone()),
            })
            .collect();
        assert_eq!(good, expected);
    }

    #[test]
    fn undecodable_rows_are_errors_that_name_the_object() {
        let mut row = rows(&load(&[("/m/web.yaml", &container("web", "a"))])).remove(0);
        row.object_json =
            r#"{"metadata":{"name":"web"},"spec":{"image":"busybox","bogus":1}}"#.into();
        let err = decode(&row).unwrap_err().to_string();
        assert!(err.starts_with("decode last-good Container/web (from /m/web.yaml) in the state db: unknown field `bogus`"), "{err}");
        row.kind = "Pod".into();
        let err = decode(&row).unwrap_err().to_string();
        assert!(
            err.contains("Pod/web") && err.contains("unknown kind"),
            "{err}"
        );
    }

    #[test]
    fn changes_store_new_and_changed_objects_and_forget_removed_ones() {
        let before = load(&[
            ("/m/a.yaml", &container("a", "x")),
            ("/m/b.yaml", &container("b", "x")),
        ]);
        let stored = rows(&before);
        let same = changes(&stored, &before, &Desired::from_load(&before, true), 2_000);
        assert_eq!(same, Changes::default(), "nothing changed, nothing written");

        let after = load(&[
            ("/m/a.yaml", &container("a", "y")),
            ("/m/c.yaml", &container("c", "x")),
        ]);
        let ch = changes(&stored, &after, &Desired::from_load(&after, true), 2_000);
        let put: Vec<(&str, u64)> = ch
            .put
            .iter()
            .map(|r| (r.name.as_str(), r.updated_at))
            .collect();
        assert_eq!(put, [("a", 2), ("c", 2)]);
        assert_eq!(ch.delete, [("Container".to_string(), "b".to_string())]);
    }

    #[test]
    fn frozen_files_keep_their_rows_and_their_containers() {
        let good_load = load(&[
            ("/m/a.yaml", &container("a", "x")),
            ("/m/b.yaml", &container("b", "x")),
        ]);
        let stored = rows(&good_load);
        let b_hash = good_load.objects[1].hash.clone();
        let broken = load(&[
            ("/m/a.yaml", &container("a", "x")),
            ("/m/b.yaml", "kind: Container\nmetadata: {name: b}\nspec: ["),
        ]);
        assert!(broken.files[1].error.is_some());

        let plain = Desired::from_load(&broken, true);
        assert_eq!(changes(&stored, &broken, &plain, 3), Changes::default());
        assert_eq!(plain.containers.keys().collect::<Vec<_>>(), ["a"]);

        let (good, _) = decode_all(&stored);
        let d = desired(&broken, &good, true);
        assert_eq!(d.containers.keys().collect::<Vec<_>>(), ["a", "b"]);
        let b = &d.containers["b"];
        assert_eq!(
            (b.hash.as_str(), b.source_file.as_str()),
            (b_hash.as_str(), "/m/b.yaml")
        );
        assert_eq!(b.spec.args, Some(vec!["x".to_string()]));
        assert_eq!(b.spec.restart_policy, berth_spec::RestartPolicy::OnFailure);
        assert!(d.frozen_files.contains("/m/b.yaml"));
    }

    #[test]
    fn a_missing_directory_freezes_everything_and_loaded_objects_win() {
        let stored = rows(&load(&[("/m/a.yaml", &container("a", "x"))]));
        let missing = berth_spec::load_dir(std::path::Path::new("/nonexistent/berth-manifests"));
        let plain = Desired::from_load(&missing, true);
        assert!(plain.freeze_all);
        assert_eq!(changes(&stored, &missing, &plain, 3), Changes::default());
        let (good, _) = decode_all(&stored);
        assert_eq!(
            desired(&missing, &good, true)
                .containers
                .keys()
                .collect::<Vec<_>>(),
            ["a"]
        );

        // The object moved to a file that loads, while its old file is broken: the new wins.
        let moved = load(&[
            ("/m/a.yaml", "spec: ["),
            ("/m/z.yaml", &container("a", "new")),
        ]);
        let d = desired(&moved, &good, true);
        assert_eq!(d.containers["a"].source_file, "/m/z.yaml");
        assert_eq!(d.containers["a"].spec.args, Some(vec!["new".to_string()]));
    }
}
