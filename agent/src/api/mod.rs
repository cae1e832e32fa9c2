//! The read-only HTTP status API. Only GET and HEAD are routed; nothing served here can start,
//! stop or delete anything — the only way to change a host is a manifest.

pub mod access;
mod events;
pub mod images;
mod logs;
mod manifests;
mod networks;
pub mod plan;
mod status;
mod volumes;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use berth_engine::state::{ContainerRecord, ContainerState, StateDb};
use serde_json::json;

use crate::metrics::Metrics;
use crate::status::{ContainerStatus, LiveStatus};
use crate::usage::{ContainerUsage, Usage};

pub struct ApiState {
    pub db: Arc<StateDb>,
    pub live: Arc<LiveStatus>,
    pub metrics: Arc<Metrics>,
    /// `<stateDir>/containers`: each container's dir, with its logs.
    pub containers_dir: PathBuf,
    /// What the reconciler's last pass loaded from the manifest directory.
    pub last_load: Arc<crate::reconcile::last_load::LastLoad>,
    /// Where the running containers' resource usage is read from.
    pub usage: Arc<Usage>,
    /// The health of running containers, from their monitors.
    pub health: Arc<crate::reconcile::health::HealthBoard>,
    /// `allowEmpty` of the agent config, for the plan.
    pub allow_empty: bool,
    /// `<stateDir>/volumes`: named volumes.
    pub volumes_dir: PathBuf,
    /// Where the manifests come from, and the git source's last sync.
    pub source: Arc<crate::source::status::SharedStatus>,
    /// What the agent did (`GET /v1/events`).
    pub events: Arc<crate::events::Events>,
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1/containers", get(list_containers))
        .route("/v1/containers/{name}", get(get_container))
        .route("/v1/containers/{name}/logs", get(logs::get_logs))
        .route("/v1/containers/{name}/stats", get(get_container_usage))
        .route("/v1/stats", get(list_usage))
        .route("/v1/volumes", get(volumes::list_volumes))
        .route("/v1/volumes/{name}", get(volumes::get_volume))
        .route("/v1/networks", get(networks::list_networks))
        .route("/v1/networks/{name}", get(networks::get_network))
        .route("/v1/status", get(status::get_status))
        .route("/v1/events", get(events::get_events))
        .route("/v1/manifests", get(manifests::get_manifests))
        .route("/v1/plan", get(plan::get_plan))
        .route("/v1/state", get(plan::get_state))
        .route(
            "/v1/source",
            get(|State(s): State<Arc<ApiState>>| async move { Json(s.source.get()) }),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
        .layer(axum::middleware::from_fn(read_only))
}

#[cfg(test)]
impl ApiState {
    /// An API over `db` with nothing live, for unit tests: manifests, state and a cgroup v2
    /// tree (parent `berth`) under `dir`, and no networks.
    pub(crate) fn for_tests(db: Arc<StateDb>, dir: &std::path::Path) -> ApiState {
        let db_for_events = db.clone();
        use berth_engine::cgroups::{CgroupManager, Mode};
        let cgroups = CgroupManager::with_mode(&dir.join("cgroup"), Mode::V2, "berth");
        ApiState {
            db,
            live: Arc::default(),
            metrics: Arc::default(),
            containers_dir: dir.join("containers"),
            last_load: Arc::new(crate::reconcile::last_load::LastLoad::new(
                dir.join("manifests"),
            )),
            usage: Arc::new(Usage {
                runtime: Arc::new(berth_engine::runtime::Runtime::new(
                    &dir.join("state"),
                    &dir.join("run"),
                    cgroups,
                    PathBuf::from("/nonexistent/berth"),
                )),
                networks: None,
            }),
            health: Arc::default(),
            allow_empty: false,
            volumes_dir: dir.join("volumes"),
            source: Arc::default(),
            events: crate::events::Events::new(db_for_events),
        }
    }
}

/// Sends one request to `app`, for unit tests: the status and the body as text.
#[cfg(test)]
pub(crate) async fn call(app: Router, method: &str, uri: &str) -> (StatusCode, String) {
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.oneshot(request).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The API is read-only: every method but GET and HEAD is a 405, on every path.
async fn read_only(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::Method;
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "the API is read-only: GET and HEAD only",
    );
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    resp
}

/// 200 once the agent has made its first pass (loaded its manifests), 503 before.
async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    if state.last_load.get().is_some() {
        "ok\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the first pass has not finished\n",
        )
            .into_response()
    }
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

/// A state db failure, logged in full and answered without internals.
fn db_unavailable(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "read containers for the api");
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "state database unavailable".into(),
    )
}

fn records(state: &ApiState) -> Result<Vec<ContainerRecord>, ApiError> {
    state.db.list_containers().map_err(db_unavailable)
}

fn containers(state: &ApiState) -> Result<Vec<ContainerStatus>, ApiError> {
    let leases = state.db.list_leases().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "read network leases for the api");
        Vec::new()
    });
    Ok(state.live.view(&records(state)?, &leases, &state.health))
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

/// The usage of every running container.
async fn list_usage(
    State(state): State<Arc<ApiState>>,
) -> Result<Json<Vec<ContainerUsage>>, ApiError> {
    let records = records(&state)?;
    Ok(Json(state.usage.collect(&records).await))
}

/// The usage of one container: 404 when there is none by that name, 409 when it is not
/// running (a stopped container uses nothing).
async fn get_container_usage(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Json<ContainerUsage>, ApiError> {
    let record = state
        .db
        .get_container(&name)
        .map_err(db_unavailable)?
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no container named {name:?}"),
            )
        })?;
    if record.state != ContainerState::Running {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "container {name:?} is {}, not running: it uses nothing",
                record.state
            ),
        ));
    }
    state
        .usage
        .collect(&[record])
        .await
        .pop()
        .map(Json)
        .ok_or_else(|| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the usage of container {name:?} could not be read (it may have just stopped)"
                ),
            )
        })
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let usage = match records(&state) {
        Ok(records) => state.usage.collect(&records).await,
        Err(_) => Vec::new(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render_with(&usage),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_engine::state::ContainerRecord;

    fn state(dir: &std::path::Path) -> Arc<ApiState> {
        let db = StateDb::open(dir).unwrap();
        db.put_container(&ContainerRecord {
            id: "web-1".into(),
            source_file: "/m/web.yaml".into(),
            spec_hash: "sha256:aa".into(),
            image: "docker.io/library/busybox:1.36".into(),
            image_digest: Some("sha256:bb".into()),
            shim_pid: Some(5),
            init_pid: Some(6),
            restart_count: 1,
            created_at_ms: 10_000,
            started_at_ms: Some(11_000),
            spec_json: r#"{"image":"docker.io/library/busybox:1.36","mounts":[{"volume":"data","path":"/data","readOnly":true}],"resources":{"memory":"64Mi","pids":100}}"#.into(),
            ..crate::reconcile::fake_record("web")
        })
        .unwrap();
        Arc::new(ApiState::for_tests(Arc::new(db), dir))
    }

    /// Every endpoint of the router (the log one needs a container dir, tested elsewhere).
    const ENDPOINTS: &[&str] = &[
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/status",
        "/v1/source",
        "/v1/containers",
        "/v1/containers/web",
        "/v1/containers/web/logs",
        "/v1/containers/web/stats",
        "/v1/stats",
        "/v1/networks",
        "/v1/networks/front",
        "/v1/volumes",
        "/v1/volumes/data",
        "/v1/manifests",
        "/v1/plan",
        "/v1/state",
        "/v1/events",
    ];

    #[tokio::test]
    async fn every_method_but_get_and_head_is_refused_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let app = router(state(dir.path()));
        for path in ENDPOINTS.iter().chain(&["/nope", "/v1/containers/none"]) {
            for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
                let request = axum::http::Request::builder()
                    .method(method)
                    .uri(*path)
                    .body(axum::body::Body::empty())
                    .unwrap();
                let resp = tower::ServiceExt::oneshot(app.clone(), request)
                    .await
                    .unwrap();
                assert_eq!(
                    resp.status(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}"
                );
                assert_eq!(
                    resp.headers()[header::ALLOW],
                    "GET, HEAD",
                    "{method} {path}"
                );
            }
            let (status, _) = call(app.clone(), "HEAD", path).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "HEAD {path}");
        }
    }

    #[tokio::test]
    async fn status_networks_and_volumes_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path());
        st.db
            .put_network(&berth_engine::state::NetworkRecord {
                name: "front".into(),
                spec_hash: "sha256:nn".into(),
                driver: "bridge".into(),
                interface: "bfront".into(),
                subnet: "10.89.0.0/24".into(),
                gateway: "10.89.0.1".into(),
                internal: false,
                macvlan_mode: String::new(),
                source_file: "/m/net.yaml".into(),
                created_at: 7,
            })
            .unwrap();
        st.db
            .insert_lease(&berth_engine::state::LeaseRecord {
                network: "front".into(),
                address: "10.89.0.2".into(),
                container_id: "web-1".into(),
                container_name: "web".into(),
                host_interface: "bvfront".into(),
                interface: "eth0".into(),
                ports_json: "[]".into(),
                created_at: 1,
            })
            .unwrap();
        let app = router(st.clone());
        let (status, body) = call(app.clone(), "GET", "/v1/networks/front").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            json!({"name": "front", "driver": "bridge", "interface": "bfront", "subnet": "10.89.0.0/24",
                   "gateway": "10.89.0.1", "internal": false, "sourceFile": "/m/net.yaml", "createdAt": 7,
                   "containers": [{"container": "web", "address": "10.89.0.2", "interface": "eth0"}]})
        );
        for (path, what) in [
            ("/v1/networks/back", "network"),
            ("/v1/volumes/data", "volume"),
        ] {
            let (status, body) = call(app.clone(), "GET", path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(body.contains(&format!("no {what} named")), "{body}");
        }
        let (status, body) = call(app.clone(), "GET", "/readyz").await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready before the first pass"
        );
        let (_, body_status) = call(app.clone(), "GET", "/v1/status").await;
        let v: serde_json::Value = serde_json::from_str(&body_status).unwrap();
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["ready"], false);
        assert_eq!(v["containers"]["running"], 1);
        assert_eq!(v["containers"]["failed"], 0);
        let _ = body;

        st.last_load.set(berth_spec::LoadResult::default(), 9);
        st.live.set_last_pass(crate::status::LastPass {
            at: 9,
            result: "ok",
            duration_ms: 3,
        });
        let (status, _) = call(app.clone(), "GET", "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        let (_, body) = call(app.clone(), "GET", "/v1/status").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ready"], true);
        assert_eq!(
            v["lastPass"],
            json!({"at": 9, "result": "ok", "durationMs": 3})
        );
        assert_eq!(v["pruneBlocked"], false);
        let (_, metrics) = call(app, "GET", "/metrics").await;
        assert!(
            metrics.contains(&format!(
                "berth_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{metrics}"
        );
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
        assert_eq!(
            v[0]["mounts"],
            json!([{"volume": "data", "path": "/data", "readOnly": true}])
        );
        assert_eq!(v[0]["resources"], json!({"memory": "64Mi", "pids": 100}));
        let (status, body) = call(app, "GET", "/v1/containers/web").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"],
            "web-1"
        );
    }

    #[tokio::test]
    async fn a_container_shows_its_addresses_and_published_ports() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path());
        for (network, address, interface, ports) in [
            (
                "front",
                "10.89.0.2",
                "eth0",
                r#"[{"containerPort":80,"hostPort":8080,"protocol":"tcp","hostIP":"0.0.0.0"},{"containerPort":9000,"protocol":"tcp","hostIP":"0.0.0.0"}]"#,
            ),
            ("back", "10.89.1.7", "eth1", "[]"),
        ] {
            st.db
                .insert_lease(&berth_engine::state::LeaseRecord {
                    network: network.into(),
                    address: address.into(),
                    container_id: "web-1".into(),
                    container_name: "web".into(),
                    host_interface: format!("bv{network}"),
                    interface: interface.into(),
                    ports_json: ports.into(),
                    created_at: 1,
                })
                .unwrap();
        }
        let (status, body) = call(router(st), "GET", "/v1/containers/web").await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut networks = v["networks"].as_array().unwrap().clone();
        networks.sort_by_key(|n| n["interface"].as_str().unwrap().to_string());
        assert_eq!(
            networks,
            vec![
                json!({"network": "front", "interface": "eth0", "address": "10.89.0.2"}),
                json!({"network": "back", "interface": "eth1", "address": "10.89.1.7"}),
            ]
        );
        // Only mapped ports are published; 9000 has no hostPort.
        assert_eq!(v["ports"], json!(["0.0.0.0:8080->80/tcp"]));
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

    /// A cgroup v2 directory for container id `web-1`, as the kernel would fill it.
    fn fake_cgroup(dir: &std::path::Path) {
        let cg = dir.join("cgroup/berth/web-1");
        std::fs::create_dir_all(&cg).unwrap();
        for (file, text) in [
            (
                "cpu.stat",
                "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n",
            ),
            ("memory.current", "8388608\n"),
            ("memory.stat", "anon 4194304\ninactive_file 1048576\n"),
            ("memory.events", "low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n"),
            ("pids.current", "3\n"),
        ] {
            std::fs::write(cg.join(file), text).unwrap();
        }
    }

    #[tokio::test]
    async fn usage_of_running_containers_from_their_cgroups() {
        let dir = tempfile::tempdir().unwrap();
        fake_cgroup(dir.path());
        let st = state(dir.path());
        let app = router(st.clone());
        let (status, body) = call(app.clone(), "GET", "/v1/containers/web/stats").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let want = json!({
            "name": "web", "id": "web-1", "cpuUsageUsec": 1500000,
            "memoryUsageBytes": 8388608, "memoryWorkingSetBytes": 7340032,
            "pids": 3, "oomKills": 1, "network": null,
        });
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            want
        );
        let (status, body) = call(app.clone(), "GET", "/v1/stats").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            json!([want])
        );

        let (status, body) = call(app.clone(), "GET", "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        // cAdvisor's names and labels.
        let labels = r#"{id="web-1",image="docker.io/library/busybox:1.36",name="web"}"#;
        for (metric, value) in [
            ("container_cpu_usage_seconds_total", "1.5"),
            ("container_memory_usage_bytes", "8388608"),
            ("container_memory_working_set_bytes", "7340032"),
            ("container_threads", "3"),
            ("container_oom_events_total", "1"),
            ("container_spec_memory_limit_bytes", "67108864"),
            ("container_spec_cpu_period", "100000"),
            ("container_start_time_seconds", "11"),
        ] {
            let line = format!("{metric}{labels} {value}\n");
            assert!(body.contains(&line), "{line} missing from:\n{body}");
        }
        assert!(
            body.contains(&format!("container_last_seen{labels} ")),
            "{body}"
        );
        assert!(
            !body.contains("container_spec_cpu_quota"),
            "no CPU limit, no quota: {body}"
        );
        assert!(
            !body.contains("berth_container_cpu"),
            "the old names are gone: {body}"
        );

        // Not running: nothing to report, and said so.
        let mut rec = st.db.get_container("web").unwrap().unwrap();
        rec.state = ContainerState::Exited;
        st.db.put_container(&rec).unwrap();
        let (status, body) = call(app.clone(), "GET", "/v1/containers/web/stats").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            body,
            r#"{"error":"container \"web\" is exited, not running: it uses nothing"}"#
        );
        let (_, body) = call(app.clone(), "GET", "/v1/stats").await;
        assert_eq!(body, "[]");
        let (_, body) = call(app.clone(), "GET", "/metrics").await;
        assert!(!body.contains("berth_container_"), "{body}");
        let (status, _) = call(app, "GET", "/v1/containers/nope/stats").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
