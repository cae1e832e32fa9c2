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
use crate::reconcile::{last_good, preview};

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
        crate::reconcile::Clock::system().now_ms(),
        state.allow_empty,
    ))
    .into_response()
}

/// The records `berth plan` plans against, env values hidden.
pub async fn get_state(State(state): State<Arc<ApiState>>) -> Response {
    match read_state(&state) {
        Some((mut containers, mut last_good)) => {
            for c in &mut containers {
                c.spec_json = crate::redact::spec_json(&c.spec_json);
            }
            for g in &mut last_good {
                g.object_json = crate::redact::object_json(&g.object_json);
            }
            Json(json!({
            "manifests": state.last_load.dir(),
            "containers": containers,
            "lastGood": last_good,
            "allowEmpty": state.allow_empty,
            }))
            .into_response()
        }
        None => db_unavailable(),
    }
}

/// `GET /v1/state` as a client reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentState {
    /// The agent's manifest directory.
    pub manifests: PathBuf,
    pub containers: Vec<ContainerRecord>,
    pub last_good: Vec<LastGoodRecord>,
    /// `allowEmpty` of the agent config.
    #[serde(default)]
    pub allow_empty: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::router;
    use crate::reconcile::last_good::encode;
    use berth_engine::state::StateDb;

    /// An env value no endpoint may show.
    const SECRET: &str = "hunter2-s3cret";
    const WEB: &str = "apiVersion: berth/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  image: busybox:1.36\n  args: [a]\n  env: {TOKEN: hunter2-s3cret}\n";

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
            id: "web-1".into(),
            source_file: "/m/web.yaml".into(),
            spec_hash: loaded.hash.clone(),
            spec_json: serde_json::to_string(&c.spec).unwrap(),
            image: c.spec.image.clone(),
            image_digest: Some("sha256:bb".into()),
            restart_count: 2,
            message: Some("m".into()),
            reason: Some(berth_engine::state::Reason::Error),
            ..crate::reconcile::fake_record("web")
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
            json!({"create": 0, "recreate": 1, "update": 0, "remove": 0, "unchanged": 0, "frozen": 0})
        );
    }

    #[tokio::test]
    async fn no_endpoint_shows_an_env_value() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = setup(dir.path());
        // The secret changes too, so the plan has an env change to show.
        let changed = WEB.replace("[a]", "[b]").replace(SECRET, "other-s3cret");
        state.last_load.set(
            berth_spec::load_files(vec![(PathBuf::from("/m/web.yaml"), changed.into_bytes())]),
            5,
        );
        for uri in [
            "/v1/state",
            "/v1/plan",
            "/v1/containers",
            "/v1/containers/web",
            "/v1/manifests",
            "/v1/volumes",
            "/v1/source",
            "/v1/status",
            "/v1/events",
            "/metrics",
        ] {
            let (status, body) = super::super::call(router(state.clone()), "GET", uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            assert!(
                !body.contains(SECRET) && !body.contains("other-s3cret"),
                "{uri} shows an env value: {body}"
            );
            if uri == "/v1/state" {
                assert!(body.contains("TOKEN"), "env names stay: {body}");
            }
        }
        let (_, plan) = get(state, "/v1/plan").await;
        let changes = &plan["entries"][0]["changes"];
        assert_eq!(
            changes,
            &json!([
                {"path": "spec.args", "old": ["a"], "new": ["b"]},
                {"path": "spec.env.TOKEN", "old": crate::redact::HIDDEN, "new": crate::redact::HIDDEN}
            ]),
            "{plan}"
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
        let shown = ContainerRecord {
            spec_json: crate::redact::spec_json(&record.spec_json),
            ..record
        };
        assert_eq!(parsed.containers, [shown]);
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
