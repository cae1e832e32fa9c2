//! `GET /v1/status`: the agent at a glance — its version, where its manifests come from and
//! which revision runs, the last pass, containers by state, manifest problems, the prune guard.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use berth_engine::state::ContainerState;
use serde::Serialize;

use super::{db_unavailable, ApiError, ApiState};
use crate::source::status::SourceStatus;
use crate::status::LastPass;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    pub version: &'static str,
    pub source: SourceStatus,
    /// The first pass has loaded the manifests (what `/readyz` answers).
    pub ready: bool,
    pub last_pass: Option<LastPass>,
    /// Containers by state, every state present.
    pub containers: BTreeMap<&'static str, usize>,
    /// Problems of the manifests the last pass loaded.
    pub manifest_problems: usize,
    /// The last pass held back removals: the manifests hold no object (the prune guard).
    pub prune_blocked: bool,
}

pub async fn get_status(State(state): State<Arc<ApiState>>) -> Result<Json<AgentStatus>, ApiError> {
    let records = state.db.list_containers().map_err(db_unavailable)?;
    let mut containers: BTreeMap<&'static str, usize> = ContainerState::ALL
        .iter()
        .map(|s| (s.as_str(), 0))
        .collect();
    for r in &records {
        *containers.entry(r.state.as_str()).or_default() += 1;
    }
    let seen = state.last_load.get();
    Ok(Json(AgentStatus {
        version: env!("CARGO_PKG_VERSION"),
        source: state.source.get(),
        ready: seen.is_some(),
        last_pass: state.live.last_pass(),
        containers,
        manifest_problems: seen.map_or(0, |s| s.load.problems.len()),
        prune_blocked: state.live.prune_blocked(),
    }))
}
