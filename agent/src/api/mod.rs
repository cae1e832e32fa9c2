//! The read-only HTTP status API. Only GET and HEAD are routed; nothing served here can start,
//! stop or delete anything — the only way to change a host is a manifest.

pub mod images;
mod logs;
mod manifests;
pub mod plan;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use berth_engine::state::StateDb;
use serde_json::json;

use crate::metrics::Metrics;
use crate::status::{ContainerStatus, LiveStatus};

pub struct ApiState {
    pub db: Arc<StateDb>,
    pub live: Arc<LiveStatus>,
    pub metrics: Arc<Metrics>,
    /// `<stateDir>/containers`: each container's dir, with its logs.
    pub containers_dir: PathBuf,
    /// What the reconciler's last pass loaded from the manifest directory.
    pub last_load: Arc<crate::reconcile::last_load::LastLoad>,
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1/containers", get(list_containers))
        .route("/v1/containers/{name}", get(get_container))
        .route("/v1/containers/{name}/logs", get(logs::get_logs))
        .route("/v1/manifests", get(manifests::get_manifests))
        .route("/v1/plan", get(plan::get_plan))
        .route("/v1/state", get(plan::get_state))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// An error the API answers with: a status and a message safe to show (no internals).
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

fn containers(state: &ApiState) -> Result<Vec<ContainerStatus>, ApiError> {
    let records = state.db.list_containers().map_err(|e| {
        tracing::error!(error = %e, "read containers for the api");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "state database unavailable".into(),
        )
    })?;
    Ok(state.live.view(&records))
}

async fn list_containers(
    State(state): State<Arc<ApiState>>,
) -> Result<Json<Vec<ContainerStatus>>, ApiError> {
    containers(&state).map(Json)
}

async fn get_container(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Json<ContainerStatus>, ApiError> {
    containers(&state)?
        .into_iter()
        .find(|c| c.name == name)
        .map(Json)
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no container named {name:?}"),
            )
        })
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use berth_engine::state::ContainerRecord;
    use tower::ServiceExt;

    fn state(dir: &std::path::Path) -> Arc<ApiState> {
        let db = StateDb::open(dir).unwrap();
        db.put_container(&ContainerRecord {
            name: "web".into(),
            id: "web-1".into(),
            source_file: "/m/web.yaml".into(),
            spec_hash: "sha256:aa".into(),
            spec_json: "{}".into(),
            image: "docker.io/library/busybox:1.36".into(),
            image_digest: Some("sha256:bb".into()),
            state: "running".into(),
            shim_pid: Some(5),
            shim_start_time: Some(1),
            init_pid: Some(6),
            exit_code: None,
            restart_count: 1,
            message: None,
            created_at: 10,
            started_at: Some(11),
            finished_at: None,
            reason: None,
        })
        .unwrap();
        Arc::new(ApiState {
            db: Arc::new(db),
            live: Arc::default(),
            metrics: Arc::default(),
            containers_dir: dir.join("containers"),
            last_load: Arc::new(crate::reconcile::last_load::LastLoad::new(
                dir.join("manifests"),
            )),
        })
    }

    async fn call(app: Router, method: &str, uri: &str) -> (StatusCode, String) {
        let resp = app
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn lists_and_gets_containers_with_their_fields() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(state(dir.path()));
        let (status, body) = call(app.clone(), "GET", "/v1/containers").await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v[0]["name"], "web");
        assert_eq!(v[0]["state"], "running");
        assert_eq!(v[0]["pid"], 6);
        assert_eq!(v[0]["imageDigest"], "sha256:bb");
        assert_eq!(v[0]["specHash"], "sha256:aa");
        assert_eq!(v[0]["restartCount"], 1);
        assert_eq!(v[0]["exitCode"], serde_json::Value::Null);
        let (status, body) = call(app, "GET", "/v1/containers/web").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"],
            "web-1"
        );
    }

    #[tokio::test]
    async fn unknown_name_is_a_json_404() {
        let dir = tempfile::tempdir().unwrap();
        let (status, body) = call(router(state(dir.path())), "GET", "/v1/containers/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, r#"{"error":"no container named \"nope\""}"#);
    }

    #[tokio::test]
    async fn only_get_and_head_are_answered() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(state(dir.path()));
        for m in ["POST", "PUT", "DELETE", "PATCH"] {
            let (status, _) = call(app.clone(), m, "/v1/containers").await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{m}");
        }
        let (status, body) = call(app, "HEAD", "/v1/containers").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "");
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path());
        st.metrics.reconcile_total.with_label_values(&["ok"]).inc();
        st.metrics.reconcile_duration.observe(0.01);
        let (status, body) = call(router(st), "GET", "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("berth_reconcile_total{result=\"ok\"} 1\n"),
            "{body}"
        );
        assert!(
            body.contains("berth_reconcile_duration_seconds_count 1\n"),
            "{body}"
        );
    }
}
