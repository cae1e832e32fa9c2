//! Building the observed state: the records in the state db, checked against the host
//! through the engine (is each running container's shim alive, are processes left in the
//! cgroup of one that is not, which cgroups and network wiring belong to no record).

use std::collections::{BTreeMap, BTreeSet};

use berth_engine::state::{ContainerState, StateDb};

use super::action::Key;
use super::engine::{Engine, ProbeTarget};
use super::health::{HealthBoard, Monitored};
use super::observed::{Failure, Observed, ObservedContainer, Shim, Stray};
use super::plan::recorded_spec;

/// The name of the container whose id is `id` (`<name>-<8 hex>`).
pub fn container_name(id: &str) -> Option<&str> {
    let (name, suffix) = id.rsplit_once('-')?;
    (suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit()) && !name.is_empty())
        .then_some(name)
}

pub async fn observe<E: Engine>(
    engine: &E,
    db: &StateDb,
    health: &HealthBoard,
    in_flight: BTreeSet<Key>,
    failures: BTreeMap<Key, Failure>,
    drift_check: bool,
) -> Result<Observed, String> {
    // The host before the records: a cgroup or namespace seen here was made after its
    // record was written, so the records read next know it (unless an action in flight
    // removed the record meanwhile, and those are left alone below).
    let cgroups = engine.cgroups()?;
    let netns = engine.netns_ids();
    let records = db
        .list_containers()
        .map_err(|e| format!("read container records: {e}"))?;
    let networks = db
        .list_networks()
        .map_err(|e| format!("read network records: {e}"))?;
    let leases = db.list_leases().map_err(|e| format!("read leases: {e}"))?;
    let volumes = db
        .list_volumes()
        .map_err(|e| format!("read volume records: {e}"))?;

    let missing = if drift_check {
        let interfaces = leases
            .iter()
            .map(|l| l.host_interface.clone())
            .filter(|i| !i.is_empty())
            .collect();
        engine.missing_links(interfaces).await
    } else {
        BTreeSet::new()
    };
    let busy_name = |name: &str| in_flight.contains(&Key::Container(name.to_string()));
    let ids: BTreeSet<&str> = records.iter().map(|r| r.id.as_str()).collect();

    let mut containers = BTreeMap::new();
    for r in &records {
        let running = r.state == ContainerState::Running;
        let shim = match (running, busy_name(&r.name)) {
            (false, _) => Shim::NotExpected,
            // An action on it knows better than a look from outside.
            (true, true) => Shim::Alive,
            (true, false) if engine.shim_alive(r) => Shim::Alive,
            (true, false) => Shim::Gone,
        };
        let leftovers =
            r.state.is_finished() && !busy_name(&r.name) && !engine.cgroup_pids(&r.id).is_empty();
        let link_lost = running
            && leases
                .iter()
                .any(|l| l.container_id == r.id && missing.contains(&l.host_interface));
        containers.insert(
            r.name.clone(),
            ObservedContainer {
                record: r.clone(),
                shim,
                leftovers,
                health: if running { health.get(&r.id) } else { None },
                link_lost,
                cgroup_lost: drift_check && shim == Shim::Alive && !engine.cgroup_intact(&r.id),
            },
        );
    }

    let mut strays = Vec::new();
    for c in cgroups {
        let known = ids.contains(c.name.as_str())
            || container_name(&c.name).is_some_and(busy_name)
            || in_flight.contains(&Key::Cgroup(c.name.clone()));
        // An empty cgroup is nothing to act on (berth did not make it: it is left alone).
        if known || c.pids.is_empty() {
            continue;
        }
        strays.push(Stray {
            cgroup: c.name,
            pids: c.pids,
        });
    }
    let orphan_wiring = leases
        .iter()
        .map(|l| l.container_id.clone())
        .chain(netns)
        .filter(|id| !ids.contains(id.as_str()))
        .filter(|id| !container_name(id).is_some_and(busy_name))
        .filter(|id| !in_flight.contains(&Key::Wiring(id.clone())))
        .collect();

    Ok(Observed {
        containers,
        networks: networks.into_iter().map(|n| (n.name.clone(), n)).collect(),
        leases,
        volumes: volumes.into_iter().map(|v| (v.name.clone(), v)).collect(),
        strays,
        orphan_wiring,
        in_flight,
        failures,
        drift_check,
    })
}

/// The running containers with a healthcheck, as the health monitors should follow them.
pub fn monitored(observed: &Observed) -> Vec<Monitored> {
    observed
        .containers
        .values()
        .filter(|o| o.record.state == ContainerState::Running && o.shim == Shim::Alive)
        .filter_map(|o| {
            let r = &o.record;
            let spec = recorded_spec(r);
            Some(Monitored {
                name: r.name.clone(),
                target: ProbeTarget {
                    id: r.id.clone(),
                    init_pid: r.init_pid?,
                    network_mode: spec.network_mode,
                },
                healthcheck: spec.healthcheck?,
                started_at_ms: r.started_at_ms.unwrap_or(r.created_at_ms),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_come_from_ids() {
        assert_eq!(container_name("web-0a1b2c3d"), Some("web"));
        assert_eq!(container_name("web-api-0a1b2c3d"), Some("web-api"));
        assert_eq!(container_name("web-api"), None);
        assert_eq!(container_name("-0a1b2c3d"), None);
        assert_eq!(container_name("web-0a1b2c3g"), None);
    }
}
