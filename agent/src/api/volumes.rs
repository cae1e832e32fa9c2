//! `GET /v1/volumes`: the named volumes berth created — their reclaim policy, where their
//! data is, whether their manifest still defines them, and which containers mount them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_engine::state::VolumeRecord;
use berth_spec::MountSource;
use serde::Serialize;

use super::{db_unavailable, ApiError, ApiState};
use crate::reconcile::plan::recorded_spec;

/// One volume as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    pub name: String,
    /// Retain | Delete: what happens to the data when its manifest goes.
    pub reclaim_policy: String,
    pub source_file: String,
    /// Its manifest is gone and `Retain` kept it: the data stays until an admin removes it.
    pub retained: bool,
    /// Where its data is on the host.
    pub path: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Containers whose spec mounts it, sorted.
    pub used_by: Vec<String>,
}

pub async fn list_volumes(
    State(state): State<Arc<ApiState>>,
) -> Result<Json<Vec<VolumeStatus>>, ApiError> {
    let volumes = state.db.list_volumes().map_err(db_unavailable)?;
    let records = state.db.list_containers().map_err(db_unavailable)?;
    let mounts: Vec<(String, Vec<String>)> = records
        .iter()
        .map(|r| {
            let names = recorded_spec(r)
                .mounts
                .into_iter()
                .filter_map(|m| match m.source {
                    MountSource::Volume(v) => Some(v),
                    _ => None,
                })
                .collect();
            (r.name.clone(), names)
        })
        .collect();
    Ok(Json(
        volumes
            .into_iter()
            .map(|v: VolumeRecord| {
                let mut used_by: Vec<String> = mounts
                    .iter()
                    .filter(|(_, vols)| vols.contains(&v.name))
                    .map(|(c, _)| c.clone())
                    .collect();
                used_by.sort();
                VolumeStatus {
                    path: crate::reconcile::mounts::volume_paths(&state.volumes_dir, &v.name)
                        .0
                        .display()
                        .to_string(),
                    name: v.name,
                    reclaim_policy: v.reclaim_policy,
                    source_file: v.source_file,
                    retained: v.retained,
                    created_at: v.created_at_ms / 1000,
                    used_by,
                }
            })
            .collect(),
    ))
}

/// `GET /v1/volumes/{name}`: one volume; an unknown name is a 404.
pub async fn get_volume(
    state: State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Json<VolumeStatus>, ApiError> {
    let Json(all) = list_volumes(state).await?;
    all.into_iter()
        .find(|v| v.name == name)
        .map(Json)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no volume named {name:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{call, router};
    use berth_engine::state::StateDb;

    #[tokio::test]
    async fn lists_volumes_with_their_users() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        db.put_volume(&VolumeRecord {
            name: "data".into(),
            spec_hash: "v".into(),
            reclaim_policy: "Delete".into(),
            source_file: "/m/v.yaml".into(),
            retained: false,
            created_at_ms: 5_500,
        })
        .unwrap();
        let mut r = crate::reconcile::fake_record("db");
        r.spec_json =
            r#"{"image":"busybox","mounts":[{"volume":"data","path":"/var/lib/db"}]}"#.into();
        db.put_container(&r).unwrap();
        let state = Arc::new(ApiState::for_tests(Arc::new(db), dir.path()));
        let (status, body) = call(router(state), "GET", "/v1/volumes").await;
        assert_eq!(status, axum::http::StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{
                "name": "data", "reclaimPolicy": "Delete", "sourceFile": "/m/v.yaml",
                "retained": false, "createdAt": 5,
                "path": dir.path().join("volumes/data/_data").display().to_string(),
                "usedBy": ["db"],
            }])
        );
    }
}
