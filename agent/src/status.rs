//! What the agent knows right now, as the API serves it: container records from the state db
//! plus the live parts that are not worth persisting (pull progress, manifest errors).

use std::collections::BTreeMap;
use std::sync::Mutex;

use berth_engine::state::{ContainerRecord, ContainerState, LeaseRecord, Reason};
use berth_spec::Port;
use serde::Serialize;

use crate::reconcile::health::{HealthBoard, HealthSnapshot};

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullStatus {
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// A container's address on one of its networks.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAddress {
    pub network: String,
    /// The interface in the container, like `eth0`.
    pub interface: String,
    pub address: String,
}

/// One container as `GET /v1/containers` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub id: Option<String>,
    pub image: String,
    pub image_digest: Option<String>,
    /// pulling | created | running | exited | failed, or `waiting` when it was never
    /// created because something it needs is not there yet (see `waitingFor`).
    pub state: String,
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    /// Why it is in its state: Completed, Error, OOMKilled, StartError, SetupError, ShimLost,
    /// Unhealthy, NetworkChanged, RolledBack.
    pub reason: Option<Reason>,
    /// Restarts over its whole life.
    pub restart_count: u32,
    pub spec_hash: Option<String>,
    /// The last error, verbatim.
    pub message: Option<String>,
    pub source_file: Option<String>,
    /// Unix seconds.
    pub created_at: Option<u64>,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub pull: Option<PullStatus>,
    /// Its addresses, while it holds them (from its start until it is removed or finished).
    pub networks: Vec<NetworkAddress>,
    /// Its published ports as `docker ps` shows them (`0.0.0.0:8080->80/tcp`), while they
    /// are published.
    pub ports: Vec<String>,
    /// Its health, while it runs with a healthcheck.
    pub health: Option<HealthSnapshot>,
    /// What keeps it from starting (or from going) now: `db to be healthy`, `network front
    /// to be ready`, `restart back-off (8s)`.
    pub waiting_for: Option<String>,
    /// The restart back-off it waits out now, like `8s`.
    pub backoff: Option<String>,
    /// Unix seconds when it is started again, while it waits out a back-off.
    pub next_restart_at: Option<u64>,
    /// A revision of its manifest that was rolled back, not tried again until the manifest
    /// changes.
    pub rejected_revision: Option<String>,
    /// While an update has not proved itself: the revision it would roll back to.
    pub rollback_to: Option<String>,
    /// The mounts of the revision it runs, as the manifest writes them.
    pub mounts: Vec<berth_spec::Mount>,
    /// The resource limits of the revision it runs (`{}`: none).
    pub resources: berth_spec::Resources,
}

/// What the planner says a container waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    pub waiting_for: String,
    /// Unix ms of a timed wait (back-off, retry).
    pub until_ms: Option<u64>,
    pub backoff: Option<String>,
}

impl ContainerStatus {
    fn empty(name: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.to_string(),
            id: None,
            image: String::new(),
            image_digest: None,
            state: String::new(),
            pid: None,
            exit_code: None,
            reason: None,
            restart_count: 0,
            spec_hash: None,
            message: None,
            source_file: None,
            created_at: None,
            started_at: None,
            finished_at: None,
            pull: None,
            networks: Vec::new(),
            ports: Vec::new(),
            health: None,
            waiting_for: None,
            backoff: None,
            next_restart_at: None,
            rejected_revision: None,
            rollback_to: None,
            mounts: Vec::new(),
            resources: berth_spec::Resources::default(),
        }
    }

    pub fn from_record(r: &ContainerRecord) -> ContainerStatus {
        let running = r.state == ContainerState::Running;
        let spec = crate::reconcile::plan::recorded_spec(r);
        ContainerStatus {
            mounts: spec.mounts,
            resources: spec.resources,
            id: Some(r.id.clone()),
            image: r.image.clone(),
            image_digest: r.image_digest.clone(),
            state: r.state.as_str().to_string(),
            pid: if running { r.init_pid } else { None },
            exit_code: r.exit_code,
            reason: r.reason,
            restart_count: r.restart_count,
            spec_hash: Some(r.spec_hash.clone()),
            message: r.message.clone(),
            source_file: Some(r.source_file.clone()),
            created_at: Some(r.created_at_ms / 1000),
            started_at: r.started_at_ms.map(|t| t / 1000),
            finished_at: r.finished_at_ms.map(|t| t / 1000),
            rejected_revision: r.rejected_hash.clone(),
            rollback_to: r.rollout.as_ref().map(|ro| ro.previous.spec_hash.clone()),
            ..ContainerStatus::empty(&r.name)
        }
    }

    /// Adds what the container's leases say: its addresses and the ports published through
    /// them.
    fn add_leases(&mut self, leases: &[&LeaseRecord]) {
        for l in leases {
            self.networks.push(NetworkAddress {
                network: l.network.clone(),
                interface: l.interface.clone(),
                address: l.address.clone(),
            });
            let ports: Vec<Port> = serde_json::from_str(&l.ports_json).unwrap_or_default();
            self.ports.extend(ports.iter().filter_map(|p| {
                let host_port = p.host_port?;
                Some(format!(
                    "{}:{host_port}->{}/{}",
                    p.host_ip,
                    p.container_port,
                    p.protocol.as_str()
                ))
            }));
        }
    }

    fn add_wait(&mut self, w: &Wait) {
        self.waiting_for = Some(w.waiting_for.clone());
        self.backoff = w.backoff.clone();
        if w.backoff.is_some() {
            self.next_restart_at = w.until_ms.map(|t| t.div_ceil(1000));
        }
    }
}

/// The status message of a container whose manifest file does not load.
fn frozen_message(file: &str, error: &str) -> String {
    format!("manifest {file} does not load, keeping the last good version: {error}")
}

/// Live, in-memory additions to the records.
#[derive(Default)]
pub struct LiveStatus {
    inner: Mutex<Live>,
}

#[derive(Default)]
struct Live {
    pulls: BTreeMap<String, PullStatus>,
    /// Container name → (manifest file, its error): the object's file does not load.
    manifest_errors: BTreeMap<String, (String, String)>,
    /// Manifest file → its error, for files too broken to say which objects they hold.
    file_errors: BTreeMap<String, String>,
    /// Container name → what it waits for, from the last plan.
    waiting: BTreeMap<String, Wait>,
    /// The last plan held back removals: the manifest directory holds no object.
    prune_blocked: bool,
    /// Container name → why it stays although no manifest defines it now.
    kept: BTreeMap<String, String>,
    last_pass: Option<LastPass>,
}

/// The last reconcile pass: when it ran, whether the manifests loaded and the host could be
/// observed, how long it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastPass {
    /// Unix seconds.
    pub at: u64,
    /// `ok`, or `error` (a manifest problem, or the host could not be observed).
    pub result: &'static str,
    pub duration_ms: u64,
}

impl LiveStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_pull(&self, name: &str, p: Option<PullStatus>) {
        let mut live = self.lock();
        match p {
            Some(p) => live.pulls.insert(name.to_string(), p),
            None => live.pulls.remove(name),
        };
    }

    pub fn set_manifest_errors(
        &self,
        by_name: BTreeMap<String, (String, String)>,
        by_file: BTreeMap<String, String>,
    ) {
        let mut live = self.lock();
        live.manifest_errors = by_name;
        live.file_errors = by_file;
    }

    pub fn set_waiting(&self, waiting: BTreeMap<String, Wait>) {
        self.lock().waiting = waiting;
    }

    pub fn set_prune_blocked(&self, blocked: bool) {
        self.lock().prune_blocked = blocked;
    }

    /// Containers that stay although no manifest defines them now, and why.
    pub fn set_kept(&self, kept: BTreeMap<String, String>) {
        self.lock().kept = kept;
    }

    pub fn set_last_pass(&self, pass: LastPass) {
        self.lock().last_pass = Some(pass);
    }

    pub fn last_pass(&self) -> Option<LastPass> {
        self.lock().last_pass
    }

    /// Whether the last pass held back removals (the prune guard).
    pub fn prune_blocked(&self) -> bool {
        self.lock().prune_blocked
    }

    /// Merges records and their leases with the live view. A container named only by a
    /// manifest that does not load shows up as `failed` with the file's error; one that was
    /// never created because it waits for something shows up as `waiting`.
    pub fn view(
        &self,
        records: &[ContainerRecord],
        leases: &[LeaseRecord],
        health: &HealthBoard,
    ) -> Vec<ContainerStatus> {
        let live = self.lock();
        let mut out: BTreeMap<String, ContainerStatus> = BTreeMap::new();
        for r in records {
            let mut s = ContainerStatus::from_record(r);
            let mine: Vec<&LeaseRecord> =
                leases.iter().filter(|l| l.container_id == r.id).collect();
            s.add_leases(&mine);
            s.pull = live.pulls.get(&r.name).cloned();
            if r.state == ContainerState::Running {
                s.health = health.get(&r.id);
            }
            if let Some(error) = live.file_errors.get(&r.source_file) {
                s.message = Some(frozen_message(&r.source_file, error));
            }
            if let Some(w) = live.waiting.get(&r.name) {
                s.add_wait(w);
            }
            if let (None, Some(why)) = (&s.message, live.kept.get(&r.name)) {
                s.message = Some(why.clone());
            }
            out.insert(r.name.clone(), s);
        }
        for (name, w) in &live.waiting {
            if !out.contains_key(name) {
                let mut s = ContainerStatus::empty(name);
                s.state = "waiting".into();
                s.add_wait(w);
                out.insert(name.clone(), s);
            }
        }
        for (name, (file, error)) in &live.manifest_errors {
            let msg = frozen_message(file, error);
            match out.get_mut(name) {
                Some(s) => s.message = Some(msg),
                None => {
                    let mut s = ContainerStatus::empty(name);
                    s.state = "failed".into();
                    s.message = Some(format!("manifest {file} does not load: {error}"));
                    s.source_file = Some(file.clone());
                    out.insert(name.clone(), s);
                }
            }
        }
        out.into_values().collect()
    }
}
