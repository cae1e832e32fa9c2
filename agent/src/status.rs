//! What the agent knows right now, as the API serves it: container records from the state db
//! plus the live parts that are not worth persisting (pull progress, manifest errors).

use std::collections::BTreeMap;
use std::sync::Mutex;

use berth_engine::state::{ContainerRecord, LeaseRecord};
use berth_spec::Port;
use serde::Serialize;

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
    /// pulling | created | running | exited | failed
    pub state: String,
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    /// Why it ended: OOMKilled, Error or Completed.
    pub reason: Option<String>,
    pub restart_count: u32,
    pub spec_hash: Option<String>,
    /// The last error, verbatim.
    pub message: Option<String>,
    pub source_file: Option<String>,
    pub created_at: Option<u64>,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub pull: Option<PullStatus>,
    /// Its addresses, while it holds them (from its start until it is removed or finished).
    pub networks: Vec<NetworkAddress>,
    /// Its published ports as `docker ps` shows them (`0.0.0.0:8080->80/tcp`), while they
    /// are published.
    pub ports: Vec<String>,
}

impl ContainerStatus {
    pub fn from_record(r: &ContainerRecord) -> ContainerStatus {
        ContainerStatus {
            name: r.name.clone(),
            id: Some(r.id.clone()),
            image: r.image.clone(),
            image_digest: r.image_digest.clone(),
            state: r.state.clone(),
            pid: if r.state == "running" {
                r.init_pid
            } else {
                None
            },
            exit_code: r.exit_code,
            reason: r.reason.clone(),
            restart_count: r.restart_count,
            spec_hash: Some(r.spec_hash.clone()),
            message: r.message.clone(),
            source_file: Some(r.source_file.clone()),
            created_at: Some(r.created_at),
            started_at: r.started_at,
            finished_at: r.finished_at,
            pull: None,
            networks: Vec::new(),
            ports: Vec::new(),
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

    /// Merges records and their leases with the live view. A container named only by a
    /// manifest that does not load shows up as `failed` with the file's error.
    pub fn view(
        &self,
        records: &[ContainerRecord],
        leases: &[LeaseRecord],
    ) -> Vec<ContainerStatus> {
        let live = self.lock();
        let mut out: BTreeMap<String, ContainerStatus> = BTreeMap::new();
        for r in records {
            let mut s = ContainerStatus::from_record(r);
            let mine: Vec<&LeaseRecord> =
                leases.iter().filter(|l| l.container_id == r.id).collect();
            s.add_leases(&mine);
            s.pull = live.pulls.get(&r.name).cloned();
            if let Some(error) = live.file_errors.get(&r.source_file) {
                s.message = Some(frozen_message(&r.source_file, error));
            }
            out.insert(r.name.clone(), s);
        }
        for (name, (file, error)) in &live.manifest_errors {
            let msg = frozen_message(file, error);
            match out.get_mut(name) {
                Some(s) => s.message = Some(msg),
                None => {
                    out.insert(
                        name.clone(),
                        ContainerStatus {
                            name: name.clone(),
                            id: None,
                            image: String::new(),
                            image_digest: None,
                            state: "failed".into(),
                            pid: None,
                            exit_code: None,
                            reason: None,
                            restart_count: 0,
                            spec_hash: None,
                            message: Some(format!("manifest {file} does not load: {error}")),
                            source_file: Some(file.clone()),
                            created_at: None,
                            started_at: None,
                            finished_at: None,
                            pull: None,
                            networks: Vec::new(),
                            ports: Vec::new(),
                        },
                    );
                }
            }
        }
        out.into_values().collect()
    }
}
