//! The observed state: what berth recorded, checked against what the host shows (live shims,
//! processes in cgroups, links, leases), plus the health of running containers and the work
//! already in flight. The planner decides from this and the desired state alone.

use std::collections::{BTreeMap, BTreeSet};

use berth_engine::state::{ContainerRecord, LeaseRecord, NetworkRecord, VolumeRecord};

use super::action::Key;
use super::health::HealthSnapshot;

/// Whether a container's shim (its monitor process) is alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shim {
    /// The recorded shim runs (same pid and start time).
    Alive,
    /// The record says running, but its shim is gone.
    Gone,
    /// The record does not say running: no shim is expected.
    NotExpected,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ObservedContainer {
    pub record: ContainerRecord,
    pub shim: Shim,
    /// Processes are in its cgroup although it is not running (a shim died, a crash).
    pub leftovers: bool,
    /// Its health, while it runs with a healthcheck.
    pub health: Option<HealthSnapshot>,
    /// A host interface of one of its leases is gone (someone deleted its veth).
    pub link_lost: bool,
    /// Its cgroup was removed while it runs: it runs without its limits.
    pub cgroup_lost: bool,
}

impl ObservedContainer {
    /// A record as it is, with nothing checked on the host: its shim taken as alive when
    /// it says running (for `berth plan`, which cannot see the host).
    pub fn from_record(record: ContainerRecord) -> ObservedContainer {
        let shim = if record.state == berth_engine::state::ContainerState::Running {
            Shim::Alive
        } else {
            Shim::NotExpected
        };
        ObservedContainer {
            record,
            shim,
            leftovers: false,
            health: None,
            link_lost: false,
            cgroup_lost: false,
        }
    }
}

/// The last action on an object failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub error: String,
    /// Unix ms of the first failure in a row.
    pub since_ms: u64,
    /// Unix ms before which it is not tried again.
    pub retry_at_ms: u64,
    /// Failures in a row.
    pub streak: u32,
}

/// A cgroup under berth's parent that no record owns, with the processes in it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stray {
    /// Its name under the parent (a container id, or something else).
    pub cgroup: String,
    pub pids: Vec<i32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub containers: BTreeMap<String, ObservedContainer>,
    pub networks: BTreeMap<String, NetworkRecord>,
    pub leases: Vec<LeaseRecord>,
    pub volumes: BTreeMap<String, VolumeRecord>,
    /// Cgroups (and processes) under berth's parent that belong to no container it knows.
    pub strays: Vec<Stray>,
    /// Container ids that hold leases or a network namespace but have no record.
    pub orphan_wiring: BTreeSet<String>,
    /// Objects an action is working on: the plan leaves them alone.
    pub in_flight: BTreeSet<Key>,
    /// Objects whose last action failed, and when to try again.
    pub failures: BTreeMap<Key, Failure>,
    /// This pass also repairs host drift (bridges, the nftables table): a periodic pass.
    pub drift_check: bool,
}

impl Observed {
    /// Records only, as `berth plan` sees them (nothing in flight, nothing checked).
    pub fn from_records(records: Vec<ContainerRecord>) -> Observed {
        Observed {
            containers: records
                .into_iter()
                .map(|r| (r.name.clone(), ObservedContainer::from_record(r)))
                .collect(),
            ..Default::default()
        }
    }

    pub fn busy(&self, key: &Key) -> bool {
        self.in_flight.contains(key)
    }

    /// Container ids holding a lease on `network`.
    pub fn lease_holders(&self, network: &str) -> BTreeSet<&str> {
        self.leases
            .iter()
            .filter(|l| l.network == network)
            .map(|l| l.container_id.as_str())
            .collect()
    }

    pub fn holds_leases(&self, container_id: &str) -> bool {
        self.leases.iter().any(|l| l.container_id == container_id)
    }
}
