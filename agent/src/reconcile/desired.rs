//! The desired state, from one load of the manifest directory.

use std::collections::{BTreeMap, BTreeSet};

use berth_spec::{ContainerSpec, LoadResult, NetworkSpec, Object};

#[derive(Clone, Debug)]
pub struct DesiredContainer {
    pub name: String,
    pub spec: ContainerSpec,
    pub hash: String,
    pub source_file: String,
}

#[derive(Clone, Debug)]
pub struct DesiredNetwork {
    pub name: String,
    pub spec: NetworkSpec,
    pub hash: String,
    pub source_file: String,
}

#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub containers: BTreeMap<String, DesiredContainer>,
    /// Networks the manifests define (the built-in `default` is added by the reconciler).
    pub networks: BTreeMap<String, DesiredNetwork>,
    /// Files that do not load: their objects keep their last good version.
    pub frozen_files: BTreeSet<String>,
    /// The directory itself could not be read: prune nothing at all.
    pub freeze_all: bool,
    /// Container name → (file, error) for objects named by a file that does not load.
    pub manifest_errors: BTreeMap<String, (String, String)>,
    /// File → error, for every file that does not load.
    pub file_errors: BTreeMap<String, String>,
}

impl Desired {
    pub fn from_load(load: &LoadResult) -> Desired {
        let mut d = Desired::default();
        for loaded in &load.objects {
            if let Object::Network(n) = &loaded.object {
                d.networks.insert(
                    n.metadata.name.clone(),
                    DesiredNetwork {
                        name: n.metadata.name.clone(),
                        spec: n.spec.clone(),
                        hash: loaded.hash.clone(),
                        source_file: loaded.source.file.display().to_string(),
                    },
                );
            }
            if let Object::Container(c) = &loaded.object {
                d.containers.insert(
                    c.metadata.name.clone(),
                    DesiredContainer {
                        name: c.metadata.name.clone(),
                        spec: c.spec.clone(),
                        hash: loaded.hash.clone(),
                        source_file: loaded.source.file.display().to_string(),
                    },
                );
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
        d
    }
}
