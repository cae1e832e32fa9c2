//! The seam between the reconciler and the host: every host operation the executor and the
//! observer use, as one trait. [`super::host::HostEngine`] is the real one (images, runtime,
//! networks, volumes); tests use a fake that records typed calls.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use berth_engine::images::Image;
use berth_engine::network::NetworkDef;
use berth_engine::runtime::ExitRecord;
use berth_engine::state::ContainerRecord;
use berth_spec::{ContainerSpec, NetworkMode, Probe};

/// Resolves when a container's shim has exited.
pub type ExitWatch = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A container whose process runs.
pub struct Started {
    pub shim_pid: i32,
    pub shim_start_time: u64,
    pub init_pid: i32,
    pub exit: ExitWatch,
}

/// Why a start failed: berth's own setup, or the container's process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    /// Image, mounts, devices, network, cgroup: berth could not set it up.
    Setup(String),
    /// The shim reported the process could not be started (no such command, bad working
    /// dir, unknown user): the workload's own configuration.
    Process(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Setup(e) | StartError::Process(e) => f.write_str(e),
        }
    }
}

/// Which running container a health probe is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    pub id: String,
    pub init_pid: i32,
    pub network_mode: NetworkMode,
}

pub use berth_engine::health::ProbeResult;

/// A cgroup under berth's parent and the processes in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupUse {
    pub name: String,
    pub pids: Vec<i32>,
}

pub trait Engine: Send + Sync + 'static {
    // ---- images ----

    /// The image `reference` in the local store, without network access.
    fn lookup_image(&self, reference: &str) -> Result<Option<Image>, String>;

    /// Pulls `reference` (for container `name`: its progress shows in its status).
    fn pull_image(
        &self,
        name: &str,
        reference: &str,
    ) -> impl Future<Output = Result<Image, String>> + Send;

    // ---- containers ----

    /// Sets up (mounts, devices, network) and starts the container of `rec`.
    fn start(
        &self,
        rec: &ContainerRecord,
        spec: &ContainerSpec,
        image: &Image,
    ) -> impl Future<Output = Result<Started, StartError>> + Send;

    /// Stops the container: its stop signal, then SIGKILL to its whole cgroup after its stop
    /// timeout. Returns once no process of it is left.
    fn stop(&self, rec: &ContainerRecord, spec: &ContainerSpec) -> impl Future<Output = ()> + Send;

    /// Removes what a stopped container left: cgroup, dirs, network wiring and leases.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), String>> + Send;

    /// SIGKILLs every process in the container's cgroup and waits until it is empty.
    fn kill(&self, id: &str) -> impl Future<Output = Result<(), String>> + Send;

    /// What the shim wrote when the container's process ended, if it did.
    fn exit_record(&self, id: &str) -> Option<ExitRecord>;

    /// Whether the kernel's OOM killer struck in the container's cgroup.
    fn oom_killed(&self, id: &str) -> bool;

    /// Follows the recorded shim of a running container (after an agent restart); `None`
    /// when it is gone (or the pid now belongs to another process).
    fn watch(&self, rec: &ContainerRecord) -> Option<ExitWatch>;

    // ---- observation ----

    /// Whether the recorded shim of `rec` still runs.
    fn shim_alive(&self, rec: &ContainerRecord) -> bool;

    /// The processes in the container's cgroup.
    fn cgroup_pids(&self, id: &str) -> Vec<i32>;

    /// Whether every directory of the container's cgroup exists (one removed by hand leaves
    /// its processes without limits).
    fn cgroup_intact(&self, id: &str) -> bool;

    /// The cgroups under berth's parent, and the parent's own processes (as the cgroup
    /// named `.`).
    fn cgroups(&self) -> Result<Vec<CgroupUse>, String>;

    /// Kills the processes of a cgroup under berth's parent that no record owns, and
    /// removes it.
    fn kill_stray(&self, cgroup: &str) -> impl Future<Output = Result<(), String>> + Send;

    /// Container ids that have a pinned network namespace.
    fn netns_ids(&self) -> Vec<String>;

    /// Of `interfaces`, the host interfaces that do not exist.
    fn missing_links(
        &self,
        interfaces: BTreeSet<String>,
    ) -> impl Future<Output = BTreeSet<String>> + Send;

    // ---- networks ----

    /// Creates, rebuilds or repairs network `def`, and brings the firewall in line.
    fn ensure_network(&self, def: NetworkDef) -> impl Future<Output = Result<(), String>> + Send;

    /// Removes network `name` and what berth made for it.
    fn remove_network(&self, name: &str) -> impl Future<Output = Result<(), String>> + Send;

    /// Repairs drift of the networks (bridges, addresses) and of the nftables table.
    fn repair_networks(
        &self,
        defs: Vec<NetworkDef>,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Removes a container's network wiring and releases its leases.
    fn detach(&self, id: &str) -> impl Future<Output = Result<(), String>> + Send;

    // ---- volumes ----

    fn create_volume(&self, name: &str) -> Result<(), String>;

    /// Deletes the volume's data.
    fn delete_volume(&self, name: &str) -> Result<(), String>;

    // ---- health ----

    /// Runs one health probe against a running container.
    fn probe(
        &self,
        target: &ProbeTarget,
        probe: &Probe,
        timeout: Duration,
    ) -> impl Future<Output = ProbeResult> + Send;
}
