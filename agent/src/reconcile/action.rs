//! What the planner asks for: one action per object, typed, with the keys it holds while it
//! runs (so the next passes leave those objects alone until it is done).

use std::fmt;

use berth_engine::network::NetworkDef;
use berth_engine::state::{ContainerRecord, Reason, Revision, VolumeRecord};

use super::desired::{DesiredContainer, DesiredVolume};
use super::observed::Stray;

/// An object an action works on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Container(String),
    Network(String),
    Volume(String),
    /// The nftables table and the repair of every network.
    Firewall,
    /// A stray cgroup under berth's parent.
    Cgroup(String),
    /// The network wiring of a container id that has no record.
    Wiring(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Container(n) => write!(f, "container {n}"),
            Key::Network(n) => write!(f, "network {n}"),
            Key::Volume(n) => write!(f, "volume {n}"),
            Key::Firewall => f.write_str("firewall"),
            Key::Cgroup(c) => write!(f, "cgroup {c}"),
            Key::Wiring(id) => write!(f, "wiring of {id}"),
        }
    }
}

/// Why a running (or recorded) container is replaced by a new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecreateReason {
    /// Its runtime spec (image, command, mounts, …) or an env file changed.
    SpecChanged,
    /// The agent stopped while creating it: the half-made container is cleaned up first.
    Interrupted,
    /// A network it was on was rebuilt.
    NetworkChanged,
    /// Its veth on the host is gone.
    LinkLost,
    /// Its cgroup was removed: it ran without its limits.
    CgroupLost,
}

impl RecreateReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            RecreateReason::SpecChanged => "spec changed",
            RecreateReason::Interrupted => "an interrupted create",
            RecreateReason::NetworkChanged => "its network was rebuilt",
            RecreateReason::LinkLost => "its network link was deleted",
            RecreateReason::CgroupLost => "its cgroup was removed",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create a network, or repair what is missing of it.
    EnsureNetwork(NetworkDef),
    /// The network's spec changed: stop and remove the containers on it (they are created
    /// again on the new network by the next passes), then rebuild it.
    RebuildNetwork {
        def: NetworkDef,
        holders: Vec<ContainerRecord>,
    },
    /// Periodic drift repair: every network's bridge and addresses, and the nftables table.
    RepairNetworks(Vec<NetworkDef>),
    RemoveNetwork(String),
    /// Create a volume (or record a change of its spec).
    EnsureVolume(DesiredVolume),
    /// Its manifest is gone and its policy retains it: record that; the data stays.
    RetainVolume(VolumeRecord),
    /// Its manifest is gone, its policy is Delete and nothing uses it: delete its data.
    RemoveVolume(VolumeRecord),
    /// Pull the image, create and start a container that does not exist yet.
    Create(DesiredContainer),
    /// Replace the recorded container by a new one of `target`.
    Recreate {
        target: DesiredContainer,
        old: ContainerRecord,
        reason: RecreateReason,
        /// The revision to go back to if the new one does not become ready.
        previous: Option<Revision>,
    },
    /// Start a finished container again (its writable layer kept).
    Restart {
        target: DesiredContainer,
        old: ContainerRecord,
    },
    /// An update that did not become ready: run the previous revision `to` again (or, when
    /// `old` still runs it, only record that), and do not try `rejected` again.
    Rollback {
        old: ContainerRecord,
        to: Revision,
        rejected: String,
        why: String,
    },
    /// An update became ready: forget the previous revision.
    Promote(ContainerRecord),
    /// Only what berth does around the process changed (restart policy, probes, order,
    /// stop signal, the file it came from): record the new revision; the process stays.
    Refresh {
        target: DesiredContainer,
        old: ContainerRecord,
    },
    /// Stop a running container, recording why.
    Stop {
        old: ContainerRecord,
        reason: Reason,
        message: String,
    },
    /// The container's shim is gone: record how it ended and kill what is left of it.
    RecordExit(ContainerRecord),
    /// Processes are left in the cgroup of a container that does not run: kill them.
    Reap(ContainerRecord),
    /// A container finished for good gives its addresses and ports back.
    ReleaseNetworks(ContainerRecord),
    /// Its manifest is gone: stop the container and remove all it left.
    Remove(ContainerRecord),
    /// A cgroup berth has no record of: kill its processes and remove it.
    KillStray(Stray),
    /// Network wiring of a container berth has no record of: remove it.
    ReleaseOrphan(String),
}

impl Action {
    /// The objects this action holds while it runs.
    pub fn keys(&self) -> Vec<Key> {
        match self {
            Action::EnsureNetwork(d) => vec![Key::Network(d.name.clone())],
            Action::RebuildNetwork { def, holders } => {
                let mut keys = vec![Key::Network(def.name.clone())];
                keys.extend(holders.iter().map(|h| Key::Container(h.name.clone())));
                keys
            }
            Action::RepairNetworks(_) => vec![Key::Firewall],
            Action::RemoveNetwork(n) => vec![Key::Network(n.clone())],
            Action::EnsureVolume(v) => vec![Key::Volume(v.name.clone())],
            Action::RetainVolume(v) | Action::RemoveVolume(v) => vec![Key::Volume(v.name.clone())],
            Action::Create(t)
            | Action::Recreate { target: t, .. }
            | Action::Restart { target: t, .. }
            | Action::Refresh { target: t, .. } => vec![Key::Container(t.name.clone())],
            Action::Rollback { old: r, .. }
            | Action::Promote(r)
            | Action::Stop { old: r, .. }
            | Action::RecordExit(r)
            | Action::Reap(r)
            | Action::ReleaseNetworks(r)
            | Action::Remove(r) => vec![Key::Container(r.name.clone())],
            Action::KillStray(s) => vec![Key::Cgroup(s.cgroup.clone())],
            Action::ReleaseOrphan(id) => vec![Key::Wiring(id.clone())],
        }
    }

    /// The action's name, for logs and the `berth_actions_total` metric.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::EnsureNetwork(_) => "ensure-network",
            Action::RebuildNetwork { .. } => "rebuild-network",
            Action::RepairNetworks(_) => "repair-networks",
            Action::RemoveNetwork(_) => "remove-network",
            Action::EnsureVolume(_) => "ensure-volume",
            Action::RetainVolume(_) => "retain-volume",
            Action::RemoveVolume(_) => "remove-volume",
            Action::Create(_) => "create",
            Action::Recreate { .. } => "recreate",
            Action::Restart { .. } => "restart",
            Action::Rollback { .. } => "rollback",
            Action::Promote(_) => "promote",
            Action::Refresh { .. } => "refresh",
            Action::Stop { .. } => "stop",
            Action::RecordExit(_) => "record-exit",
            Action::Reap(_) => "reap",
            Action::ReleaseNetworks(_) => "release-networks",
            Action::Remove(_) => "remove",
            Action::KillStray(_) => "kill-stray",
            Action::ReleaseOrphan(_) => "release-orphan",
        }
    }

    /// The object's name (the first key's), for logs.
    pub fn object(&self) -> String {
        match self.keys().first() {
            Some(Key::Container(n) | Key::Network(n) | Key::Volume(n)) => n.clone(),
            Some(Key::Cgroup(n) | Key::Wiring(n)) => n.clone(),
            Some(Key::Firewall) | None => "firewall".to_string(),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.keys().first() {
            Some(k) => write!(f, "{} {k}", self.verb()),
            None => f.write_str(self.verb()),
        }
    }
}
