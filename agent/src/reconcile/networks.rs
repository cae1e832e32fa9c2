//! Which networks a pass wants: those the manifests define (or keep at their last good
//! version), and the built-in `default` while a container needs it — created when a container
//! first needs it and removed after the last one is gone, so an agent without bridge
//! containers leaves no trace on the host.

use std::collections::{BTreeMap, BTreeSet};

use berth_engine::network::NetworkDef;
use berth_spec::{NetworkMode, NetworkSpec, DEFAULT_NETWORK};

use super::desired::Desired;

/// Changes when the built-in network's definition does.
const DEFAULT_NETWORK_HASH: &str = "builtin:default:v1";

/// The networks the pass wants. `leased`: networks a lease is held on. `default_network`:
/// `networks.defaultNetwork` of the agent config.
pub fn wanted(
    desired: &Desired,
    default_network: bool,
    leased: &BTreeSet<&str>,
) -> BTreeMap<String, NetworkDef> {
    let mut out: BTreeMap<String, NetworkDef> = desired
        .networks
        .values()
        .map(|n| (n.name.clone(), n.def()))
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::desired::{DesiredContainer, DesiredNetwork, Origin};

    fn container(name: &str, yaml: &str) -> DesiredContainer {
        let mut spec: berth_spec::ContainerSpec =
            serde_yaml::from_str(&format!("image: busybox\n{yaml}")).expect("container spec");
        // The loader's default: bridge mode without networks means [default].
        if spec.network_mode == NetworkMode::Bridge && spec.networks.is_empty() {
            spec.networks = vec![DEFAULT_NETWORK.into()];
        }
        DesiredContainer {
            name: name.into(),
            spec,
            hash: "h".into(),
            runtime_hash: "r".into(),
            source_file: "/m/c.yaml".into(),
            origin: Origin::Loaded,
            rejected: None,
        }
    }

    fn desired(containers: &[DesiredContainer], networks: &[&str]) -> Desired {
        let mut d = Desired::default();
        for c in containers {
            d.containers.insert(c.name.clone(), c.clone());
        }
        for n in networks {
            d.networks.insert(
                n.to_string(),
                DesiredNetwork {
                    name: n.to_string(),
                    spec: NetworkSpec::default(),
                    hash: format!("h-{n}"),
                    source_file: "/m/n.yaml".into(),
                    origin: Origin::Loaded,
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
            wanted(&desired(&[], &[]), true, &none).is_empty(),
            "nothing needs it"
        );
        let web = container("web", "");
        assert_eq!(
            names(&wanted(
                &desired(std::slice::from_ref(&web), &[]),
                true,
                &none
            )),
            ["default"]
        );
        let host = container("h", "networkMode: host\n");
        assert!(
            wanted(&desired(&[host], &[]), true, &none).is_empty(),
            "host mode needs no network"
        );
        let leased: BTreeSet<&str> = ["default"].into();
        assert_eq!(
            names(&wanted(&desired(&[], &[]), true, &leased)),
            ["default"],
            "kept while a lease holds it"
        );
        assert!(
            wanted(&desired(&[web], &[]), false, &none).is_empty(),
            "turned off in the agent config"
        );
    }

    #[test]
    fn manifests_define_networks_and_win_over_the_builtin() {
        let none = BTreeSet::new();
        let api = container("api", "networks: [front]\n");
        let w = wanted(&desired(&[api], &["front", "default"]), true, &none);
        assert_eq!(names(&w), ["default", "front"]);
        assert_eq!(
            w["default"].hash, "h-default",
            "a Network named default replaces the built-in one"
        );
    }
}
