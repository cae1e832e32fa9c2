//! `GET /v1/plan` (what the agent would do for its live directory, as `berth plan` shows it)
//! and `GET /v1/state` (the records and last-good objects `berth plan DIR` plans against).
//! Both only read.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_engine::state::{ContainerRecord, LastGoodRecord};
use serde::Deserialize;
use serde_json::json;

use super::{error, ApiState};
use crate::reconcile::{last_good, now_unix, preview};

/// The container records and last-good rows; `None` (logged) when the db fails.
fn read_state(state: &ApiState) -> Option<(Vec<ContainerRecord>, Vec<LastGoodRecord>)> {
    match (state.db.list_containers(), state.db.list_last_good()) {
        (Ok(r), Ok(g)) => Some((r, g)),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "read the state db for the plan");
            None
        }
    }
}

fn db_unavailable() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "state database unavailable",
    )
}

pub async fn get_plan(State(state): State<Arc<ApiState>>) -> Response {
    let Some(seen) = state.last_load.get() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent has not loaded its manifests yet",
        );
    };
    let Some((records, rows)) = read_state(&state) else {
        return db_unavailable();
    };
    let (good, errors) = last_good::decode_all(&rows);
    for e in errors {
        tracing::debug!(error = %e, "last-good object left out of the plan");
    }
    let dir = state.last_load.dir().display().to_string();
    Json(preview::preview(
        &seen.load,
        &good,
        &records,
        &dir,
        now_unix(),
    ))
    .into_response()
}

pub async fn get_state(State(state): State<Arc<ApiState>>) -> Response {
    match read_state(&state) {
        Some((containers, last_good)) => Json(json!({
            "manifests": state.last_load.dir(),
            "containers": containers,
            "lastGood": last_good,
        }))
        .into_response(),
        None => db_unavailable(),
    }
}

/// `GET /v1/state` as a client reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentState {
    /// The agent's manifest directory.
    pub manifests: PathBuf,
    pub containers: Vec<RecordWire>,
    pub last_good: Vec<LastGoodRecord>,
}

/// A [`ContainerRecord`] as the API serializes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordWire {
    name: String,
    id: String,
    source_file: String,
    spec_hash: String,
    spec_json: String,
    image: String,
    image_digest: Option<String>,
    state: String,
    shim_pid: Option<i32>,
    shim_start_time: Option<u64>,
    init_pid: Option<i32>,
    exit_code: Option<i32>,
    restart_count: u32,
    message: Option<String>,
    created_at: u64,
    started_at: Option<u64>,
    finished_at: Option<u64>,
    reason: Option<String>,
}

impl From<RecordWire> for ContainerRecord {
    fn from(w: RecordWire) -> ContainerRecord {
        ContainerRecord {
            name: w.name,
            id: w.id,
            source_file: w.source_file,
            spec_hash: w.spec_hash,
            spec_json: w.spec_json,
            image: w.image,
            image_digest: w.image_digest,
            state: w.state,
            shim_pid: w.shim_pid,
            shim_start_time: w.shim_start_time,
            init_pid: w.init_pid,
            exit_code: w.exit_code,
            restart_count: w.restart_count,
            message: w.message,
            created_at: w.created_at,
            started_at: w.started_at,
            finished_at: w.finished_at,
            reason: w.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::router;
    use crate::reconcile::last_good::encode;
    use berth_engine::state::StateDb;

    const WEB: &str = "apiVersion: berth/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  image: busybox:1.36\n  args: [a]\n";

    fn setup(dir: &std::path::Path) -> (Arc<ApiState>, ContainerRecord) {
        let db = StateDb::open(dir).unwrap();
        let live = berth_spec::load_files(vec![(
            PathBuf::from("/m/web.yaml"),
            WEB.as_bytes().to_vec(),
        )]);
        let loaded = &live.objects[0];
        let berth_spec::Object::Container(c) = &loaded.object else {
            unreachable!()
        };
        let record = ContainerRecord {
            name: "web".into(),
            id: "web-1".into(),
            source_file: "/m/web.yaml".into(),
            spec_hash: loaded.hash.clone(),
            spec_json: serde_json::to_string(&c.spec).unwrap(),
            image: c.spec.image.clone(),
            image_digest: Some("sha256:bb".into()),
            state: "running".into(),
            shim_pid: Some(5),
            shim_start_time: Some(1),
            init_pid: Some(6),
            exit_code: None,
            restart_count: 2,
            message: Some("m".into()),
            created_at: 10,
            started_at: Some(11),
            finished_at: None,
            reason: Some("Error".into()),
        };
        db.put_container(&record).unwrap();
        db.update_last_good(&[encode(loaded, 3)], &[]).unwrap();
        let last_load = Arc::new(crate::reconcile::last_load::LastLoad::new("/m".into()));
        let edited = WEB.replace("[a]", "[b]");
        last_load.set(
            berth_spec::load_files(vec![(PathBuf::from("/m/web.yaml"), edited.into_bytes())]),
            4,
        );
        let state = ApiState {
            last_load,
            ..ApiState::for_tests(Arc::new(db), dir)
        };
        (Arc::new(state), record)
    }

    async fn get(state: Arc<ApiState>, uri: &str) -> (StatusCode, serde_json::Value) {
        let (status, body) = super::super::call(router(state), "GET", uri).await;
        (status, serde_json::from_str(&body).unwrap())
    }

    #[tokio::test]
    async fn plan_shows_the_pending_recreate_with_its_fields() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = setup(dir.path());
        let (status, v) = get(state, "/v1/plan").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["dir"], "/m");
        assert_eq!(v["entries"][0]["action"], "recreate");
        assert_eq!(v["entries"][0]["kind"], "Container");
        assert_eq!(
            v["entries"][0]["changes"],
            json!([{"path": "spec.args", "old": ["a"], "new": ["b"]}])
        );
        assert_eq!(
            v["summary"],
            json!({"create": 0, "recreate": 1, "remove": 0, "unchanged": 0, "frozen": 0})
        );
    }

    #[tokio::test]
    async fn state_round_trips_into_records() {
        let dir = tempfile::tempdir().unwrap();
        let (state, record) = setup(dir.path());
        let (status, v) = get(state, "/v1/state").await;
        assert_eq!(status, StatusCode::OK);
        let parsed: AgentState = serde_json::from_value(v).unwrap();
        assert_eq!(parsed.manifests, PathBuf::from("/m"));
        let records: Vec<ContainerRecord> = parsed.containers.into_iter().map(Into::into).collect();
        assert_eq!(records, [record]);
        assert_eq!(parsed.last_good.len(), 1);
        assert_eq!(parsed.last_good[0].name, "web");
    }

    #[tokio::test]
    async fn manifests_and_plan_wait_for_the_first_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = setup(dir.path());
        let fresh = Arc::new(ApiState {
            last_load: Arc::new(crate::reconcile::last_load::LastLoad::new("/m".into())),
            ..ApiState::for_tests(state.db.clone(), dir.path())
        });
        for uri in ["/v1/plan", "/v1/manifests"] {
            let (status, v) = get(fresh.clone(), uri).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
            assert_eq!(
                v,
                json!({"error": "the agent has not loaded its manifests yet"})
            );
        }
        let (status, v) = get(state, "/v1/manifests").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["files"][0]["path"], "/m/web.yaml");
        assert_eq!(v["files"][0]["runningLastGood"], true);
    }
}
