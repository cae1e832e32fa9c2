//! Networks in the control loop: every pass brings the host's networks in line with the
//! manifests (create, rebuild on change, repair drift such as a deleted bridge or a flushed
//! nftables table, remove what no manifest wants once no container holds a lease on it),
//! and containers are attached to their networks before they start and detached after they
//! are removed.
//!
//! The built-in network `default` is created when a container first needs it and removed
//! when the last container on it is gone, so an agent without bridge containers leaves no
//! trace on the host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

use berth_engine::network::{AttachRequest, NetworkDef, NetworkError, NetworkManager};
use berth_engine::runtime::NetworkNamespace;
use berth_engine::state::ContainerRecord;
use berth_spec::{NetworkMode, NetworkSpec, DEFAULT_NETWORK};

use super::desired::{Desired, DesiredContainer};
use super::last_good::is_frozen;
use super::Reconciler;

/// Changes when the built-in network's definition does.
const DEFAULT_NETWORK_HASH: &str = "builtin:default:v1";

/// The reconciler's networking: the engine's manager and what the agent config says.
pub struct Networks {
    pub manager: NetworkManager,
    /// `networks.defaultNetwork` of the agent config.
    pub default_network: bool,
    /// Last error per network, so a failure that repeats every pass is logged once.
    errors: Mutex<BTreeMap<String, String>>,
}

impl Networks {
    pub fn new(manager: NetworkManager, default_network: bool) -> Networks {
        Networks {
            manager,
            default_network,
            errors: Mutex::default(),
        }
    }

    fn note(&self, network: &str, outcome: Result<(), String>) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(()) => {
                if errors.remove(network).is_some() {
                    tracing::info!(network, "network is fine again");
                }
            }
            Err(e) => {
                if errors.get(network) != Some(&e) {
                    tracing::warn!(network, error = %e, "network");
                    errors.insert(network.to_string(), e);
                }
            }
        }
    }
}

/// The networks the pass wants: those the manifests define, the last good version of those
/// whose file does not load, and `default` while a container needs it.
pub fn wanted(
    desired: &Desired,
    frozen: Vec<NetworkDef>,
    default_network: bool,
    leased: &BTreeSet<String>,
) -> BTreeMap<String, NetworkDef> {
    let mut out: BTreeMap<String, NetworkDef> = desired
        .networks
        .values()
        .map(|n| {
            (
                n.name.clone(),
                NetworkDef {
                    name: n.name.clone(),
                    spec: n.spec.clone(),
                    hash: n.hash.clone(),
                    source_file: n.source_file.clone(),
                },
            )
        })
        .collect();
    for f in frozen {
        out.entry(f.name.clone()).or_insert(f);
    }
    let needs_default = leased.contains(DEFAULT_NETWORK)
        || desired.containers.values().any(|c| {
            c.spec.network_mode == NetworkMode::Bridge
                && c.spec.networks.iter().any(|n| n == DEFAULT_NETWORK)
        });
    if default_network && needs_default && !out.contains_key(DEFAULT_NETWORK) {
        out.insert(
            DEFAULT_NETWORK.to_string(),
            NetworkDef {
                name: DEFAULT_NETWORK.to_string(),
                spec: NetworkSpec::default(),
                hash: DEFAULT_NETWORK_HASH.to_string(),
                source_file: String::new(),
            },
        );
    }
    out
}

impl Reconciler {
    /// Brings the host's networks in line with `desired`. Failures are logged (once) and
    /// reach the containers of the network as "network X is not ready".
    pub(super) async fn sync_networks(&self, desired: &Desired) {
        let Some(nets) = &self.networks else {
            return;
        };
        let leases = match self.db.list_leases() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "read leases");
                return;
            }
        };
        let leased: BTreeSet<String> = leases.iter().map(|l| l.network.clone()).collect();
        let recorded = match nets.manager.records() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "read network records");
                return;
            }
        };
        let want = wanted(
            desired,
            self.frozen_networks(desired),
            nets.default_network,
            &leased,
        );

        for def in want.values() {
            let before = recorded
                .iter()
                .find(|r| r.name == def.name)
                .map(|r| r.spec_hash.clone());
            let outcome = nets.manager.ensure(def.clone()).await;
            if outcome.is_ok() && before.as_ref().is_some_and(|h| *h != def.hash) {
                self.recreate_holders(&def.name, &leases);
            }
            nets.note(&def.name, outcome.map(|_| ()).map_err(|e| e.to_string()));
        }
        for r in recorded.iter().filter(|r| !want.contains_key(&r.name)) {
            if desired.freeze_all
                || (!r.source_file.is_empty() && is_frozen(desired, &r.source_file))
            {
                continue;
            }
            let outcome = match nets.manager.remove(&r.name).await {
                Ok(()) => Ok(()),
                // Not an error: it goes once its containers are removed.
                Err(errs) if matches!(errs.as_slice(), [NetworkError::InUse { .. }]) => Ok(()),
                Err(errs) => Err(errs
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")),
            };
            nets.note(&r.name, outcome);
        }
        if want.is_empty() {
            return;
        }
        if let Err(e) = nets.manager.sync_firewall().await {
            nets.note("(nftables)", Err(e.to_string()));
        }
    }

    /// Last good versions of the networks whose manifest file does not load now.
    fn frozen_networks(&self, desired: &Desired) -> Vec<NetworkDef> {
        let rows = match self.db.list_last_good() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "read last-good networks");
                return Vec::new();
            }
        };
        rows.into_iter()
            .filter(|r| {
                r.kind == "Network"
                    && is_frozen(desired, &r.source_file)
                    && !desired.networks.contains_key(&r.name)
            })
            .filter_map(|r| {
                let obj: serde_json::Value = serde_json::from_str(&r.object_json).ok()?;
                let spec: NetworkSpec = serde_json::from_value(obj.get("spec")?.clone()).ok()?;
                Some(NetworkDef {
                    name: r.name,
                    spec,
                    hash: r.spec_hash,
                    source_file: r.source_file,
                })
            })
            .collect()
    }

    /// A rebuilt network cut its containers off: mark them so the plan recreates them.
    fn recreate_holders(&self, network: &str, leases: &[berth_engine::state::LeaseRecord]) {
        let busy = self.busy.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let holders: BTreeSet<&str> = leases
            .iter()
            .filter(|l| l.network == network)
            .map(|l| l.container_id.as_str())
            .collect();
        for mut rec in self.db.list_containers().unwrap_or_default() {
            if holders.contains(rec.id.as_str()) && !busy.contains(&rec.name) {
                tracing::info!(container = %rec.name, network, "network was rebuilt: recreating the container");
                rec.spec_hash = format!("network {network} changed");
                if let Err(e) = self.db.put_container(&rec) {
                    tracing::error!(container = %rec.name, error = %e, "mark container for recreation");
                }
            }
        }
    }

    /// Wires the container before its start: its namespace and the etc files to mount.
    pub(super) async fn attach_networks(
        &self,
        rec: &ContainerRecord,
        d: &DesiredContainer,
    ) -> Result<(NetworkNamespace, Vec<(PathBuf, String)>), String> {
        let Some(nets) = &self.networks else {
            let ns = match d.spec.network_mode {
                NetworkMode::Host => NetworkNamespace::Host,
                _ => NetworkNamespace::New,
            };
            return Ok((ns, Vec::new()));
        };
        let hostname = d.spec.hostname.clone().unwrap_or_else(|| d.name.clone());
        let req = AttachRequest {
            id: rec.id.clone(),
            name: d.name.clone(),
            hostname,
            mode: d.spec.network_mode,
            networks: d.spec.networks.clone(),
            ports: d.spec.ports.clone(),
            dir: self.runtime.container_dir(&rec.id),
        };
        let a = nets.manager.attach(req).await.map_err(|e| e.to_string())?;
        Ok((a.namespace, a.etc_files))
    }

    /// Releases the networks of containers that are finished for good, as Docker does at
    /// exit: exited or failed, with a restart policy that will not start them again. Their
    /// addresses and published ports are free for others and their names stop resolving.
    /// A container that will restart keeps its address through the back-off; one started
    /// again later (its manifest changed) is attached afresh.
    pub(super) async fn release_finished(
        &self,
        desired: &Desired,
        records: &[ContainerRecord],
        busy: &BTreeSet<String>,
    ) {
        let finished: Vec<&ContainerRecord> = records
            .iter()
            .filter(|r| {
                matches!(r.state.as_str(), "exited" | "failed")
                    && !busy.contains(&r.name)
                    && desired.containers.get(&r.name).is_some_and(|d| {
                        d.hash == r.spec_hash
                            && !super::plan::wants_restart(d.spec.restart_policy, r)
                    })
            })
            .collect();
        if finished.is_empty() {
            return;
        }
        // One read of the leases for the whole pass, not one per finished container.
        let holders: BTreeSet<String> = match self.db.list_leases() {
            Ok(leases) => leases.into_iter().map(|l| l.container_id).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "read leases to release finished containers");
                return;
            }
        };
        for r in finished.into_iter().filter(|r| holders.contains(&r.id)) {
            match self.detach_networks(&r.id).await {
                Ok(()) => {
                    tracing::info!(container = %r.name, "finished container released its network addresses")
                }
                Err(e) => {
                    tracing::warn!(container = %r.name, error = %e, "release the networks of a finished container")
                }
            }
        }
    }

    /// Removes the container's wiring and releases its leases, after it is removed.
    pub(super) async fn detach_networks(&self, id: &str) -> Result<(), String> {
        let Some(nets) = &self.networks else {
            return Ok(());
        };
        nets.manager.detach(id).await.map_err(|errs| {
            format!(
                "detach container {id} from its networks: {}",
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::desired::DesiredNetwork;

    fn container(name: &str, yaml: &str) -> DesiredContainer {
        let spec =
            serde_yaml::from_str(&format!("image: busybox\n{yaml}")).expect("container spec");
        DesiredContainer {
            name: name.into(),
            spec,
            hash: "h".into(),
            source_file: "/m/c.yaml".into(),
        }
    }

    fn desired(containers: &[DesiredContainer], networks: &[&str]) -> Desired {
        let mut d = Desired::default();
        for c in containers {
            let mut c = c.clone();
            // The loader's default: bridge mode without networks means [default].
            if c.spec.network_mode == NetworkMode::Bridge && c.spec.networks.is_empty() {
                c.spec.networks = vec![DEFAULT_NETWORK.into()];
            }
            d.containers.insert(c.name.clone(), c);
        }
        for n in networks {
            d.networks.insert(
                n.to_string(),
                DesiredNetwork {
                    name: n.to_string(),
                    spec: NetworkSpec::default(),
                    hash: format!("h-{n}"),
                    source_file: "/m/n.yaml".into(),
                },
            );
        }
        d
    }

    fn names(w: &BTreeMap<String, NetworkDef>) -> Vec<&str> {
        w.keys().map(String::as_str).collect()
    }

    #[test]
    fn default_exists_while_a_container_needs_it() {
        let none = BTreeSet::new();
        assert!(
            wanted(&desired(&[], &[]), vec![], true, &none).is_empty(),
            "nothing needs it"
        );
        let web = container("web", "");
        assert_eq!(
            names(&wanted(
                &desired(std::slice::from_ref(&web), &[]),
                vec![],
                true,
                &none
            )),
            ["default"]
        );
        let host = container("h", "networkMode: host\n");
        assert!(
            wanted(&desired(&[host], &[]), vec![], true, &none).is_empty(),
            "host mode needs no network"
        );
        let leased: BTreeSet<String> = ["default".to_string()].into();
        assert_eq!(
            names(&wanted(&desired(&[], &[]), vec![], true, &leased)),
            ["default"],
            "kept while a lease holds it"
        );
        assert!(
            wanted(&desired(&[web], &[]), vec![], false, &none).is_empty(),
            "turned off in the agent config"
        );
    }

    #[test]
    fn manifests_and_frozen_files_define_networks_and_win_over_the_builtin() {
        let none = BTreeSet::new();
        let api = container("api", "networks: [front]\n");
        let w = wanted(&desired(&[api], &["front", "default"]), vec![], true, &none);
        assert_eq!(names(&w), ["default", "front"]);
        assert_eq!(
            w["default"].hash, "h-default",
            "a Network named default replaces the built-in one"
        );
        let frozen = NetworkDef {
            name: "back".into(),
            spec: NetworkSpec::default(),
            hash: "old".into(),
            source_file: "/m/bad.yaml".into(),
        };
        let w = wanted(&desired(&[], &["front"]), vec![frozen], true, &none);
        assert_eq!(names(&w), ["back", "front"]);
        assert_eq!(w["back"].hash, "old");
    }
}
