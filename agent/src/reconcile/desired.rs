//! The desired state, from one load of the manifest directory: what loaded, plus the last
//! good version of what is frozen (its file does not load), kept (`berth/prune: disabled`
//! and its manifest gone) or guarded (the directory came back empty).

use std::collections::{BTreeMap, BTreeSet};

use berth_engine::network::NetworkDef;
use berth_spec::{ContainerSpec, LoadResult, NetworkSpec, Object, VolumeSpec};

/// Why an object is in the desired state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file that loads defines it now.
    Loaded,
    /// Its file does not load (or the directory is unreadable or guarded): its last good
    /// version stands in.
    Frozen,
    /// Its manifest is gone, and it said `berth/prune: disabled`: its last version stays.
    Kept,
}

/// One revision of a container: what to run.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredContainer {
    pub name: String,
    pub spec: ContainerSpec,
    /// The revision (spec hash).
    pub hash: String,
    /// What the process is made of; a change of it alone recreates the container.
    pub runtime_hash: String,
    pub source_file: String,
    pub origin: Origin,
    /// Set when this target is what runs instead of the manifest's revision, which was
    /// rolled back: that revision's hash, not tried again until the manifest changes.
    pub rejected: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DesiredNetwork {
    pub name: String,
    pub spec: NetworkSpec,
    pub hash: String,
    pub source_file: String,
    pub origin: Origin,
}

impl DesiredNetwork {
    pub fn def(&self) -> NetworkDef {
        NetworkDef {
            name: self.name.clone(),
            spec: self.spec.clone(),
            hash: self.hash.clone(),
            source_file: self.source_file.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct DesiredVolume {
    pub name: String,
    pub spec: VolumeSpec,
    pub hash: String,
    pub source_file: String,
    pub origin: Origin,
}

#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub containers: BTreeMap<String, DesiredContainer>,
    /// Networks the manifests define (the built-in `default` is added by the planner).
    pub networks: BTreeMap<String, DesiredNetwork>,
    pub volumes: BTreeMap<String, DesiredVolume>,
    /// Files that do not load: their objects keep their last good version.
    pub frozen_files: BTreeSet<String>,
    /// Nothing is pruned: the directory could not be read, or it came back empty.
    pub freeze_all: bool,
    /// The directory holds no object at all and the agent config does not allow that to
    /// prune: everything berth runs stays (the prune guard).
    pub empty_guard: bool,
    /// Container name → (file, error) for objects named by a file that does not load.
    pub manifest_errors: BTreeMap<String, (String, String)>,
    /// File → error, for every file that does not load.
    pub file_errors: BTreeMap<String, String>,
}

impl Desired {
    /// The objects of the files that load. `allow_empty`: an empty directory prunes
    /// everything (agent config `allowEmpty`), instead of freezing it all.
    pub fn from_load(load: &LoadResult, allow_empty: bool) -> Desired {
        let mut d = Desired::default();
        for loaded in &load.objects {
            let name = loaded.object.name().to_string();
            let source_file = loaded.source.file.display().to_string();
            match &loaded.object {
                Object::Container(c) => {
                    d.containers.insert(
                        name.clone(),
                        DesiredContainer {
                            name,
                            spec: c.spec.clone(),
                            hash: loaded.hash.clone(),
                            runtime_hash: loaded.runtime_hash.clone(),
                            source_file,
                            origin: Origin::Loaded,
                            rejected: None,
                        },
                    );
                }
                Object::Network(n) => {
                    d.networks.insert(
                        name.clone(),
                        DesiredNetwork {
                            name,
                            spec: n.spec.clone(),
                            hash: loaded.hash.clone(),
                            source_file,
                            origin: Origin::Loaded,
                        },
                    );
                }
                Object::Volume(v) => {
                    d.volumes.insert(
                        name.clone(),
                        DesiredVolume {
                            name,
                            spec: v.spec,
                            hash: loaded.hash.clone(),
                            source_file,
                            origin: Origin::Loaded,
                        },
                    );
                }
            }
        }
        for f in &load.files {
            if let Some(err) = &f.error {
                let file = f.path.display().to_string();
                for o in &f.objects {
                    if o.kind == berth_spec::Kind::Container {
                        d.manifest_errors
                            .insert(o.name.clone(), (file.clone(), err.clone()));
                    }
                }
                d.file_errors.insert(file.clone(), err.clone());
                d.frozen_files.insert(file);
            }
        }
        // Problems that belong to no listed file (an unreadable or missing directory).
        let listed: BTreeSet<_> = load.files.iter().map(|f| f.path.clone()).collect();
        d.freeze_all = load.problems.iter().any(|p| !listed.contains(&p.file));
        // A directory emptied by a half-finished checkout, an rsync --delete or a wrong
        // mount must not wipe the host.
        if !allow_empty && !d.freeze_all && load.objects.is_empty() && load.problems.is_empty() {
            d.empty_guard = true;
            d.freeze_all = true;
        }
        d
    }

    /// Whether the objects of `file` are held at their last good version.
    pub fn is_frozen(&self, file: &str) -> bool {
        self.freeze_all || self.frozen_files.contains(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::reconcile::test_load as load;

    #[test]
    fn an_empty_directory_freezes_everything_unless_allowed() {
        let empty = load(&[("/m/notes.yaml", "# nothing here\n")]);
        let guarded = Desired::from_load(&empty, false);
        assert!(guarded.empty_guard && guarded.freeze_all);
        let allowed = Desired::from_load(&empty, true);
        assert!(!allowed.empty_guard && !allowed.freeze_all);

        let one = "apiVersion: berth/v1\nkind: Volume\nmetadata: {name: data}\n";
        let d = Desired::from_load(&load(&[("/m/v.yaml", one)]), false);
        assert!(!d.empty_guard && !d.freeze_all);
        assert_eq!(d.volumes.keys().collect::<Vec<_>>(), ["data"]);
        assert_eq!(d.volumes["data"].origin, Origin::Loaded);

        // A broken file is not an empty directory: its objects are frozen, others go on.
        let broken = Desired::from_load(&load(&[("/m/a.yaml", "kind: [")]), false);
        assert!(!broken.empty_guard && !broken.freeze_all);
        assert!(broken.is_frozen("/m/a.yaml"));
    }
}
