//! `GET /v1/networks[/{name}]`: the networks berth created — driver, interface, subnet,
//! gateway — and the containers attached to each, with their addresses.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::{db_unavailable, ApiError, ApiState};

/// One network as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    pub name: String,
    /// bridge | macvlan
    pub driver: String,
    /// The bridge berth created, or a macvlan network's parent interface.
    pub interface: String,
    pub subnet: String,
    pub gateway: String,
    pub internal: bool,
    /// The manifest file; empty for the built-in `default`.
    pub source_file: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Containers attached, by name.
    pub containers: Vec<Attachment>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub container: String,
    pub address: String,
    pub interface: String,
}

pub async fn list_networks(
    State(state): State<Arc<ApiState>>,
) -> Result<Json<Vec<NetworkStatus>>, ApiError> {
    let networks = state.db.list_networks().map_err(db_unavailable)?;
    let leases = state.db.list_leases().map_err(db_unavailable)?;
    Ok(Json(
        networks
            .into_iter()
            .map(|n| {
                let mut containers: Vec<Attachment> = leases
                    .iter()
                    .filter(|l| l.network == n.name)
                    .map(|l| Attachment {
                        container: l.container_name.clone(),
                        address: l.address.clone(),
                        interface: l.interface.clone(),
                    })
                    .collect();
                containers.sort_by(|a, b| a.container.cmp(&b.container));
                NetworkStatus {
                    name: n.name,
                    driver: n.driver,
                    interface: n.interface,
                    subnet: n.subnet,
                    gateway: n.gateway,
                    internal: n.internal,
                    source_file: n.source_file,
                    created_at: n.created_at,
                    containers,
                }
            })
            .collect(),
    ))
}

pub async fn get_network(
    state: State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Json<NetworkStatus>, ApiError> {
    let Json(all) = list_networks(state).await?;
    all.into_iter()
        .find(|n| n.name == name)
        .map(Json)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no network named {name:?}")))
}
