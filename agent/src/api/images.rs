//! `GET /v1/images`: the images in the store (reference, digest, size, when pulled, which
//! containers use them) and the pulls in progress, for `berth images`. Read-only.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use berth_engine::images::{normalize_reference, ImageStore, LocalSource};
use berth_engine::state::StateDb;
use serde::Serialize;

use super::ApiError;
use crate::status::{LiveStatus, PullStatus};

/// What the images endpoint reads.
pub struct ImagesApi {
    pub images: Arc<ImageStore>,
    pub db: Arc<StateDb>,
    pub live: Arc<LiveStatus>,
}

/// One image as `GET /v1/images` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStatus {
    /// Normalized reference, e.g. `docker.io/library/busybox:1.36`.
    pub reference: String,
    /// Platform manifest digest; `None` while the first pull is still running.
    pub digest: Option<String>,
    /// Compressed size of config and layers, in bytes.
    pub size: Option<u64>,
    /// Unix seconds of the pull.
    pub pulled_at: Option<u64>,
    /// Number of layers.
    pub layers: usize,
    /// Names of the containers whose manifests name this image, sorted.
    pub used_by: Vec<String>,
    /// Bytes done and total of a pull running now.
    pub pull: Option<PullStatus>,
}

/// The routes of this endpoint, to merge into the API's router.
pub fn router(state: Arc<ImagesApi>) -> Router {
    Router::new()
        .route("/v1/images", get(list_images))
        .with_state(state)
}

/// The form the store records a reference in: Docker references normalized, local sources
/// (`oci-layout:`, `oci-archive:`) as written.
fn store_form(reference: &str) -> String {
    if LocalSource::parse(reference).is_some() {
        return reference.to_string();
    }
    normalize_reference(reference).unwrap_or_else(|_| reference.to_string())
}

async fn list_images(
    State(state): State<Arc<ImagesApi>>,
) -> Result<Json<Vec<ImageStatus>>, ApiError> {
    let store = state.images.clone();
    let unavailable = || {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "image store unavailable".into(),
        )
    };
    let stored = match tokio::task::spawn_blocking(move || store.list()).await {
        Ok(Ok(list)) => list,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "list images for the api");
            return Err(unavailable());
        }
        Err(e) => {
            tracing::error!(error = %e, "list images task");
            return Err(unavailable());
        }
    };
    let records = state.db.list_containers().map_err(super::db_unavailable)?;
    let containers = state.live.view(
        &records,
        &[],
        &crate::reconcile::health::HealthBoard::default(),
    );

    let mut out: BTreeMap<String, ImageStatus> = stored
        .into_iter()
        .map(|i| {
            let status = ImageStatus {
                reference: i.reference.clone(),
                digest: Some(i.digest),
                size: Some(i.size),
                pulled_at: Some(i.pulled_at),
                layers: i.layers.len(),
                used_by: Vec::new(),
                pull: None,
            };
            (i.reference, status)
        })
        .collect();
    for c in containers.iter().filter(|c| !c.image.is_empty()) {
        let reference = store_form(&c.image);
        let entry = out.entry(reference.clone()).or_insert_with(|| ImageStatus {
            reference,
            digest: None,
            size: None,
            pulled_at: None,
            layers: 0,
            used_by: Vec::new(),
            pull: None,
        });
        entry.used_by.push(c.name.clone());
        // Two containers pulling one image share its downloads: show the one further on.
        if let Some(p) = &c.pull {
            if entry
                .pull
                .as_ref()
                .is_none_or(|q| p.done_bytes > q.done_bytes)
            {
                entry.pull = Some(p.clone());
            }
        }
    }
    // A container whose image is neither stored nor being pulled (a failed pull) names no
    // image to list.
    Ok(Json(
        out.into_values()
            .filter(|i| i.digest.is_some() || i.pull.is_some())
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_layout::{tar_with, write_layout};
    use berth_engine::images::{PullProgress, RegistryConfig};
    use berth_engine::state::ContainerRecord;

    /// An OCI layout with one single-layer image tagged `1.0`; returns its reference.
    fn layout(dir: &std::path::Path) -> String {
        let layer = tar_with("hello.txt", b"hello from a layer\n");
        write_layout(
            dir,
            &[("1.0", layer, serde_json::json!({"Cmd": ["/hello"]}))],
        );
        format!("oci-layout:{}:1.0", dir.display())
    }

    fn container(name: &str, image: &str, digest: Option<&str>, state: &str) -> ContainerRecord {
        ContainerRecord {
            id: format!("{name}-1"),
            source_file: format!("/m/{name}.yaml"),
            image: image.into(),
            image_digest: digest.map(str::to_string),
            state: state.parse().unwrap(),
            ..crate::reconcile::fake_record(name)
        }
    }

    async fn get(app: Router, uri: &str) -> (StatusCode, String) {
        super::super::call(app, "GET", uri).await
    }

    #[tokio::test]
    async fn lists_stored_images_with_their_users_and_pulls_in_progress() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root: unpacked layers keep file owners"
        );
        let dir = tempfile::tempdir().unwrap();
        let reference = layout(&dir.path().join("layout"));
        let store = Arc::new(ImageStore::open(&dir.path().join("state")).unwrap());
        let image = store
            .pull(
                &reference,
                &RegistryConfig::default(),
                &|_: PullProgress| {},
            )
            .await
            .unwrap();

        let db = Arc::new(StateDb::open(&dir.path().join("state")).unwrap());
        db.put_container(&container(
            "web",
            &reference,
            Some(&image.digest),
            "running",
        ))
        .unwrap();
        db.put_container(&container("api", &reference, Some(&image.digest), "exited"))
            .unwrap();
        db.put_container(&container("proxy", "nginx:1.27", None, "pulling"))
            .unwrap();
        let live = Arc::new(LiveStatus::default());
        live.set_pull(
            "proxy",
            Some(PullStatus {
                done_bytes: 1_000,
                total_bytes: 4_000,
            }),
        );
        let app = router(Arc::new(ImagesApi {
            images: store.clone(),
            db,
            live,
        }));

        let (status, body) = get(app, "/v1/images").await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let stored = &store.list().unwrap()[0];
        assert_eq!(
            v,
            serde_json::json!([
                {
                    "reference": "docker.io/library/nginx:1.27",
                    "digest": null,
                    "size": null,
                    "pulledAt": null,
                    "layers": 0,
                    "usedBy": ["proxy"],
                    "pull": {"doneBytes": 1000, "totalBytes": 4000},
                },
                {
                    "reference": reference,
                    "digest": image.digest,
                    "size": stored.size,
                    "pulledAt": stored.pulled_at,
                    "layers": 1,
                    "usedBy": ["api", "web"],
                    "pull": null,
                },
            ])
        );
        assert!(stored.size > 1024, "{stored:?}");
    }

    #[tokio::test]
    async fn the_api_serves_the_image_metrics() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root: unpacked layers keep file owners"
        );
        let dir = tempfile::tempdir().unwrap();
        let reference = layout(&dir.path().join("layout"));
        let store = Arc::new(ImageStore::open(&dir.path().join("state")).unwrap());
        let db = Arc::new(StateDb::open(&dir.path().join("state")).unwrap());
        let metrics = Arc::new(crate::metrics::Metrics::new());
        // What the reconciler's pull does: time the pull, count what came over the network.
        let downloaded = std::sync::atomic::AtomicU64::new(u64::MAX);
        let progress = |p: PullProgress| {
            downloaded.store(p.downloaded_bytes, std::sync::atomic::Ordering::Relaxed)
        };
        store
            .pull(&reference, &RegistryConfig::default(), &progress)
            .await
            .unwrap();
        let downloaded = downloaded.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            downloaded, 0,
            "a local layout is read from disk, not downloaded"
        );
        metrics.observe_pull(0.3, true, downloaded);
        metrics.observe_pull(2.0, false, 1234);
        crate::image_gc::refresh_usage(&store, &metrics).await;
        let usage = store.usage().await.unwrap();

        let api = Arc::new(super::super::ApiState {
            metrics,
            ..super::super::ApiState::for_tests(db.clone(), dir.path())
        });
        let app = super::super::router(api).merge(router(Arc::new(ImagesApi {
            images: store,
            db,
            live: Arc::default(),
        })));
        let (status, body) = get(app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        for line in [
            "berth_image_pull_duration_seconds_count{result=\"ok\"} 1\n".to_string(),
            "berth_image_pull_duration_seconds_bucket{result=\"ok\",le=\"0.5\"} 1\n".to_string(),
            "berth_image_pull_duration_seconds_bucket{result=\"ok\",le=\"0.25\"} 0\n".to_string(),
            "berth_image_pull_duration_seconds_count{result=\"error\"} 1\n".to_string(),
            "berth_image_pull_bytes_total 1234\n".to_string(),
            format!(
                "berth_image_store_bytes{{kind=\"content\"}} {}\n",
                usage.content_bytes
            ),
            format!(
                "berth_image_store_bytes{{kind=\"layers\"}} {}\n",
                usage.layers_bytes
            ),
        ] {
            assert!(body.contains(&line), "missing {line:?} in:\n{body}");
        }
        assert!(
            usage.content_bytes > 0 && usage.layers_bytes > 0,
            "{usage:?}"
        );
    }

    #[tokio::test]
    async fn an_empty_store_is_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ImageStore::open(dir.path()).unwrap());
        let db = Arc::new(StateDb::open(dir.path()).unwrap());
        // A container whose image is gone and not being pulled is not an image to list.
        db.put_container(&container("web", "busybox", None, "failed"))
            .unwrap();
        let app = router(Arc::new(ImagesApi {
            images: store,
            db,
            live: Arc::default(),
        }));
        let (status, body) = get(app, "/v1/images").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"));
    }
}
