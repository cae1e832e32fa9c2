//! Image housekeeping in the agent: a periodic garbage collection of the image store that
//! keeps every image a container record names (by reference and by the digest it runs on),
//! and a periodic refresh of the `berth_image_store_bytes` and `berth_state_filesystem_*`
//! gauges.

use std::sync::Arc;
use std::time::Duration;

use berth_engine::images::{pinned_reference, GcReport, ImageStore, InUse};
use berth_engine::state::{ContainerRecord, StateDb};
use tokio::sync::watch;

use crate::config::ImagesConfig;
use crate::metrics::Metrics;

/// How often the store size gauge is refreshed (a walk of the store).
const USAGE_REFRESH: Duration = Duration::from_secs(60);

/// What containers use: the images their records name, the manifests they run on, and the
/// exact image each runs and each pending update would roll back to (by pinned digest, so
/// it is still there offline after its tag moved).
pub fn in_use(records: &[ContainerRecord]) -> InUse {
    let mut references = Vec::new();
    let mut digests = Vec::new();
    let revisions = records.iter().flat_map(|r| {
        let previous = r.rollout.as_ref().map(|ro| &ro.previous);
        std::iter::once((&r.image, &r.image_digest))
            .chain(previous.map(|p| (&p.image, &p.image_digest)))
    });
    for (image, digest) in revisions {
        references.push(image.clone());
        if let Some(d) = digest {
            digests.push(d.clone());
            references.extend(pinned_reference(image, d));
        }
    }
    references.sort();
    references.dedup();
    digests.sort();
    digests.dedup();
    InUse {
        references,
        digests,
    }
}

/// One collection: everything no container record uses and older than the grace period.
pub async fn collect(
    images: &ImageStore,
    db: &StateDb,
    grace: Duration,
) -> anyhow::Result<GcReport> {
    // Read the records first: a container created after this is on an image pulled just now,
    // which the grace period keeps.
    let records = db.list_containers()?;
    let report = images.gc_in_use(&in_use(&records), grace).await?;
    for e in &report.errors {
        tracing::warn!(error = %e, "image garbage collection");
    }
    Ok(report)
}

/// Measure the store and the filesystem it is on, and set the gauges.
pub async fn refresh_usage(images: &ImageStore, metrics: &Metrics) {
    match images.usage().await {
        Ok(u) => metrics.set_store_usage(u),
        Err(e) => tracing::warn!(error = %e, "measure the image store"),
    }
    if let Err(e) = metrics.set_state_filesystem(images.root()) {
        tracing::warn!(error = %e, dir = %images.root().display(), "measure the state dir's filesystem");
    }
}

/// Runs until `shutdown` turns true: the gauge now and every minute, a collection every
/// `gc_interval` (the first one interval after the start, when the first passes are done).
pub async fn run(
    images: Arc<ImageStore>,
    db: Arc<StateDb>,
    metrics: Arc<Metrics>,
    cfg: ImagesConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let start = tokio::time::Instant::now();
    let mut gc = tokio::time::interval_at(start + cfg.gc_interval, cfg.gc_interval);
    gc.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut usage = tokio::time::interval(USAGE_REFRESH);
    usage.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = usage.tick() => refresh_usage(&images, &metrics).await,
            _ = gc.tick() => {
                // The store logs what a collection removed.
                if let Err(e) = collect(&images, &db, cfg.gc_grace_period).await {
                    tracing::warn!(error = %e, "image garbage collection failed; will retry");
                }
                refresh_usage(&images, &metrics).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_engine::images::{PullProgress, RegistryConfig};

    fn record(name: &str, image: &str, digest: Option<&str>) -> ContainerRecord {
        ContainerRecord {
            image: image.into(),
            image_digest: digest.map(str::to_string),
            ..crate::reconcile::fake_record(name)
        }
    }

    #[test]
    fn in_use_takes_references_and_digests_of_every_record() {
        let records = [
            record("a", "busybox:1.36", Some("sha256:11")),
            record("b", "busybox:1.36", Some("sha256:11")),
            record("c", "nginx", None),
        ];
        assert_eq!(
            in_use(&records),
            InUse {
                references: vec!["busybox:1.36".into(), "nginx".into()],
                digests: vec!["sha256:11".into()],
            }
        );
        // The exact image a container runs, and the one a pending update would go back to,
        // are kept by their pinned references too.
        let (now, before) = (
            format!("sha256:{}", "1".repeat(64)),
            format!("sha256:{}", "0".repeat(64)),
        );
        let mut updating = record("d", "busybox:2", Some(&now));
        updating.rollout = Some(berth_engine::state::Rollout {
            previous: berth_engine::state::Revision {
                spec_hash: "h1".into(),
                runtime_hash: None,
                spec_json: "{}".into(),
                source_file: "/m/d.yaml".into(),
                image: "busybox:1".into(),
                image_digest: Some(before.clone()),
            },
            started_at_ms: 0,
        });
        let used = in_use(&[updating]);
        assert_eq!(
            used.references,
            [
                "busybox:1".to_string(),
                "busybox:2".to_string(),
                format!("docker.io/library/busybox@{before}"),
                format!("docker.io/library/busybox@{now}"),
            ]
        );
        assert_eq!(used.digests, [before, now]);
    }

    /// An OCI layout holding one single-layer image per tag; each differs by its layer.
    fn layout(dir: &std::path::Path, tags: &[&str]) {
        let images: Vec<_> = tags
            .iter()
            // An empty tar (two zero blocks) that differs per tag by trailing zero blocks.
            .map(|tag| {
                (
                    *tag,
                    vec![0u8; 1024 * (2 + tag.len())],
                    serde_json::json!({"Labels": {"tag": tag}}),
                )
            })
            .collect();
        crate::test_layout::write_layout(dir, &images);
    }

    #[tokio::test]
    async fn collection_keeps_what_container_records_use_and_the_gauge_follows() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("layout");
        layout(&src, &["used", "unused"]);
        let state = dir.path().join("state");
        let store = ImageStore::open(&state).unwrap();
        let pull = |tag: &str| format!("oci-layout:{}:{tag}", src.display());
        let none = |_: PullProgress| {};
        let used = store
            .pull(&pull("used"), &RegistryConfig::default(), &none)
            .await
            .unwrap();
        let unused = store
            .pull(&pull("unused"), &RegistryConfig::default(), &none)
            .await
            .unwrap();
        let db = StateDb::open(&state).unwrap();
        db.put_container(&record("web", &pull("used"), Some(&used.digest)))
            .unwrap();

        let metrics = Metrics::new();
        refresh_usage(&store, &metrics).await;
        let layers_before = metrics
            .image_store_bytes
            .with_label_values(&["layers"])
            .get();
        let content_before = metrics
            .image_store_bytes
            .with_label_values(&["content"])
            .get();
        assert!(
            content_before > 0 && layers_before > 0,
            "{content_before} {layers_before}"
        );

        // Within the grace period nothing goes.
        let report = collect(&store, &db, Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!((report.images_removed.len(), report.layers_removed), (0, 0));
        let report = collect(&store, &db, Duration::ZERO).await.unwrap();
        assert_eq!(report.images_removed, vec![pull("unused")]);
        assert_eq!(
            (report.blobs_removed, report.layers_removed),
            (3, 1),
            "{report:?}"
        );
        assert!(report.errors.is_empty(), "{report:?}");
        assert!(!unused.layers[0].exists());
        assert!(used.layers[0].is_dir());
        assert_eq!(store.lookup(&pull("used")).unwrap(), Some(used.clone()));

        refresh_usage(&store, &metrics).await;
        let content_after = metrics
            .image_store_bytes
            .with_label_values(&["content"])
            .get();
        assert!(
            content_after < content_before,
            "{content_after} < {content_before}"
        );
        let text = metrics.render_with(&[]);
        assert!(
            text.contains(&format!(
                "berth_image_store_bytes{{kind=\"content\"}} {content_after}\n"
            )),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_container_keeps_its_layers_after_its_tag_moved_on() {
        let dir = tempfile::tempdir().unwrap();
        let old_src = dir.path().join("old");
        layout(&old_src, &["v"]);
        let state = dir.path().join("state");
        let store = ImageStore::open(&state).unwrap();
        let none = |_: PullProgress| {};
        let old = store
            .pull(
                &format!("oci-layout:{}:v", old_src.display()),
                &RegistryConfig::default(),
                &none,
            )
            .await
            .unwrap();
        // The container runs on `old`, but its reference now records another image.
        let db = StateDb::open(&state).unwrap();
        db.put_container(&record("web", "docker.io/library/app:1", Some(&old.digest)))
            .unwrap();
        let report = collect(&store, &db, Duration::ZERO).await.unwrap();
        assert_eq!(
            report.images_removed,
            vec![format!("oci-layout:{}:v", old_src.display())]
        );
        assert_eq!(
            (report.blobs_removed, report.layers_removed),
            (0, 0),
            "{report:?}"
        );
        assert!(
            old.layers[0].is_dir(),
            "the running container's layer stays"
        );
    }
}
