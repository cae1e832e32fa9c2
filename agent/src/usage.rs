//! Resource usage of the running containers, read when asked (a scrape of `/metrics`, a
//! `GET /v1/stats`): CPU time, memory, pids and OOM kills from each container's cgroup, and
//! traffic counters from its network namespace. Nothing is sampled in the background.

use std::sync::Arc;

use berth_engine::cgroups::Stats;
use berth_engine::network::{InterfaceCounters, NetworkManager};
use berth_engine::runtime::Runtime;
use berth_engine::state::ContainerRecord;
use serde::Serialize;

/// One running container's usage, as the API serves it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerUsage {
    pub name: String,
    pub id: String,
    /// The image reference of the manifest (for the metrics' `image` label).
    #[serde(skip)]
    pub image: String,
    /// Unix seconds of the start (`container_start_time_seconds`).
    #[serde(skip)]
    pub started_at: Option<u64>,
    /// The limits of the spec (`container_spec_*`).
    #[serde(skip)]
    pub limits: berth_engine::cgroups::Limits,
    /// CPU, memory, pids, OOM kills; a field is null when its controller is missing.
    #[serde(flatten)]
    pub cgroup: Stats,
    /// Counters of each interface but `lo`; null when the container has no network
    /// namespace of its own (`networkMode: host`).
    pub network: Option<Vec<InterfaceCounters>>,
}

/// Where usage is read from.
pub struct Usage {
    pub runtime: Arc<Runtime>,
    pub networks: Option<NetworkManager>,
}

impl Usage {
    /// The usage of every running container in `records`, in their order. A container whose
    /// cgroup cannot be read (it stopped a moment ago) is left out.
    pub async fn collect(&self, records: &[ContainerRecord]) -> Vec<ContainerUsage> {
        let running: Vec<&ContainerRecord> = records
            .iter()
            .filter(|r| r.state == berth_engine::state::ContainerState::Running)
            .collect();
        let ids: Vec<String> = running.iter().map(|r| r.id.clone()).collect();
        let runtime = self.runtime.clone();
        let cgroups = {
            let ids = ids.clone();
            tokio::task::spawn_blocking(move || {
                ids.iter()
                    .map(|id| runtime.cgroups().open(id).stats())
                    .collect::<Vec<_>>()
            })
        };
        let network = async {
            match &self.networks {
                Some(n) if !ids.is_empty() => match n.counters_of(ids.clone()).await {
                    Ok(all) => all.into_iter().map(Result::ok).collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "read container traffic counters");
                        vec![None; ids.len()]
                    }
                },
                _ => vec![None; ids.len()],
            }
        };
        let (cgroups, network) = tokio::join!(cgroups, network);
        let Ok(cgroups) = cgroups else {
            return Vec::new();
        };
        running
            .into_iter()
            .zip(cgroups)
            .zip(network)
            .filter_map(|((r, cgroup), network)| {
                let spec = crate::reconcile::plan::recorded_spec(r);
                Some(ContainerUsage {
                    name: r.name.clone(),
                    id: r.id.clone(),
                    image: r.image.clone(),
                    started_at: r.started_at_ms.map(|t| t / 1000),
                    limits: crate::reconcile::host::limits(&spec),
                    cgroup: cgroup.ok()?,
                    network,
                })
            })
            .collect()
    }
}
