//! Image store against a real registry (Debian's docker-registry on loopback) and real OCI
//! layouts built by umoci/skopeo. Needs root (layers keep owners, whiteouts are device nodes).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use berth_engine::images::{
    Image, ImageError, ImageStore, PullProgress, RegistryConfig, StoreLimits,
};
use berth_tests::{push_busybox, Registry};
use sha2::{Digest as _, Sha256};

mod common;
use common::*;

const REF: &str = "docker.io/library/busybox:1.36";

/// The registry's own digest of a manifest: sha256 of the raw bytes skopeo fetches.
fn registry_digest(registry: &Registry, repo_tag: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/{}", registry.host(), repo_tag))
        .output()
        .expect("run skopeo inspect (apt-get install skopeo)");
    assert!(
        out.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("sha256:{}", hex::encode(Sha256::digest(&out.stdout)))
}

/// The layer dir holding `rel`, searched from the top of the stack down.
fn find_in_layers(image: &Image, rel: &str) -> PathBuf {
    image
        .layers
        .iter()
        .rev()
        .map(|l| l.join(rel))
        .find(|p| p.symlink_metadata().is_ok())
        .unwrap_or_else(|| panic!("{rel} is in no layer of {:?}", image.layers))
}

fn assert_is_busybox_image(image: &Image) {
    let busybox = find_in_layers(image, "bin/busybox");
    assert_eq!(
        std::fs::read(&busybox).unwrap(),
        std::fs::read("/bin/busybox").unwrap(),
        "bin/busybox in the layer is the host's /bin/busybox"
    );
    assert_eq!(image.config.cmd, vec!["sh".to_string()]);
    assert!(
        image
            .config
            .env
            .contains(&"IMAGE_ENV=from-image".to_string()),
        "{:?}",
        image.config.env
    );
    assert_eq!(image.config.working_dir.as_deref(), Some("/"));
    assert_eq!(
        std::fs::read_link(find_in_layers(image, "bin/sh")).unwrap(),
        Path::new("busybox")
    );
}

#[tokio::test]
async fn pulls_busybox_through_a_mirror_and_finds_it_again() {
    require_root();
    let registry = Registry::start().unwrap();
    push_busybox(&registry, "library/busybox:1.36", &[]).unwrap();
    let state = state_dir();
    let store = ImageStore::open(state.path()).unwrap();
    let seen = Mutex::new(Vec::<PullProgress>::new());
    let record = |p: PullProgress| seen.lock().unwrap().push(p);

    let image = store
        .pull(REF, &mirror_to(&registry), &record)
        .await
        .unwrap();

    assert_eq!(image.reference, REF);
    assert_eq!(
        image.digest,
        registry_digest(&registry, "library/busybox:1.36")
    );
    assert!(!image.layers.is_empty());
    for layer in &image.layers {
        assert!(
            layer.starts_with(state.path().join("layers")),
            "{}",
            layer.display()
        );
    }
    assert_is_busybox_image(&image);
    let last = *seen.lock().unwrap().last().expect("progress was reported");
    assert!(last.total_bytes > 0);
    assert_eq!(last.done_bytes, last.total_bytes);
    assert!(entries(&state.path().join("content/tmp")).is_empty());
    assert!(entries(&state.path().join("layers/tmp")).is_empty());

    // After a restart (a new store on the same dir) the image is known without the network.
    drop(store);
    let store = ImageStore::open(state.path()).unwrap();
    assert_eq!(store.lookup(REF).unwrap(), Some(image.clone()));
    assert_eq!(store.lookup("busybox:1.36").unwrap(), Some(image.clone()));
    assert_eq!(store.lookup("busybox:1.35").unwrap(), None);

    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].reference.as_str(), listed[0].digest.as_str()),
        (REF, image.digest.as_str())
    );
    assert_eq!(listed[0].layers.len(), image.layers.len());
    assert!(
        listed[0].size > 1_000_000,
        "busybox is over 1 MB: {}",
        listed[0].size
    );

    // A second pull reuses everything and gives the same image.
    let again = store
        .pull("busybox:1.36", &mirror_to(&registry), &no_progress())
        .await
        .unwrap();
    assert_eq!(again, image);

    // The same image by digest, straight from the loopback registry (plain HTTP allowed).
    let by_digest = format!("{}/library/busybox@{}", registry.host(), image.digest);
    let pinned = store
        .pull(&by_digest, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap();
    assert_eq!(pinned.digest, image.digest);
    assert_eq!(pinned.layers, image.layers);
}

#[tokio::test]
async fn a_missing_tag_names_the_image_and_the_registry() {
    require_root();
    let registry = Registry::start().unwrap();
    push_busybox(&registry, "library/busybox:1.36", &[]).unwrap();
    let state = state_dir();
    let store = ImageStore::open(state.path()).unwrap();
    // Only the mirror: the reference's registry is the loopback one itself.
    let reference = format!("{}/library/busybox:nope", registry.host());
    let err = store
        .pull(&reference, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pull {reference}: manifest unknown (registry {})",
            registry.host()
        )
    );

    // Through the mirror, then docker.io itself (unreachable here): both causes are named.
    let err = store
        .pull(
            "docker.io/library/nope:1",
            &mirror_to(&registry),
            &no_progress(),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "pull docker.io/library/nope:1: manifest unknown (registry {}); ",
            registry.host()
        )),
        "{msg}"
    );
    assert!(msg.contains("(registry registry-1.docker.io)"), "{msg}");
    assert!(store.lookup("docker.io/library/nope:1").unwrap().is_none());
}

#[tokio::test]
async fn refuses_plain_http_to_a_non_loopback_mirror() {
    let state = state_dir();
    let store = ImageStore::open(state.path()).unwrap();
    let config = RegistryConfig {
        mirrors: [(
            "docker.io".to_string(),
            vec!["http://10.66.0.1:5000".to_string()],
        )]
        .into(),
        insecure: vec![],
    };
    let err = store
        .pull("busybox:1.36", &config, &no_progress())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::InsecureEndpoint { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "pull docker.io/library/busybox:1.36: refusing plain HTTP to 10.66.0.1:5000 (http://10.66.0.1:5000): \
         it is not a loopback address (hint: list \"10.66.0.1:5000\" under registries.insecure, or use https://)"
    );
}

#[tokio::test]
async fn refuses_a_pull_that_cannot_fit_on_disk() {
    require_root();
    let registry = Registry::start().unwrap();
    push_busybox(&registry, "library/busybox:1.36", &[]).unwrap();
    let state = state_dir();
    let store = ImageStore::open(state.path())
        .unwrap()
        .with_limits(StoreLimits {
            reserve_bytes: u64::MAX / 2,
            ..StoreLimits::default()
        });
    let err = store
        .pull(REF, &mirror_to(&registry), &no_progress())
        .await
        .unwrap_err();
    match &err {
        ImageError::DiskFull {
            needed, available, ..
        } => {
            assert!(*needed > 1_000_000, "busybox needs its size: {needed}");
            assert_eq!(*available, 0);
        }
        other => panic!("expected DiskFull, got {other}"),
    }
    assert!(err.to_string().contains("not enough disk space"), "{err}");
    assert!(entries(&state.path().join("layers"))
        .iter()
        .all(|e| e == "tmp"));
}

#[tokio::test]
async fn resumes_an_interrupted_blob_download() {
    require_root();
    let registry = Registry::start().unwrap();
    push_busybox(&registry, "library/busybox:1.36", &[]).unwrap();
    let first = state_dir();
    let image = ImageStore::open(first.path())
        .unwrap()
        .pull(REF, &mirror_to(&registry), &no_progress())
        .await
        .unwrap();
    let layer_hex = image.layers[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let blob = std::fs::read(first.path().join("content/sha256").join(&layer_hex)).unwrap();

    for (case, prefix) in [
        ("good half", blob[..blob.len() / 2].to_vec()),
        // What a crash may leave: garbage where data should be. Detected, restarted once.
        ("garbage", vec![0xAA; blob.len() / 3]),
    ] {
        let state = state_dir();
        let store = ImageStore::open(state.path()).unwrap();
        let partial = state
            .path()
            .join("content/tmp")
            .join(format!("{layer_hex}.partial"));
        std::fs::write(&partial, &prefix).unwrap();
        let seen = Mutex::new(Vec::<PullProgress>::new());
        let record = |p: PullProgress| seen.lock().unwrap().push(p);
        let again = store
            .pull(REF, &mirror_to(&registry), &record)
            .await
            .unwrap();
        assert_eq!(again.digest, image.digest, "{case}");
        assert_eq!(
            std::fs::read(state.path().join("content/sha256").join(&layer_hex)).unwrap(),
            blob,
            "{case}: the committed blob is whole"
        );
        assert!(
            !partial.exists(),
            "{case}: the partial file was committed or removed"
        );
        assert_is_busybox_image(&again);
        let last = *seen.lock().unwrap().last().unwrap();
        assert_eq!(last.done_bytes, last.total_bytes, "{case}");
    }
}

#[tokio::test]
async fn pulls_from_oci_layout_and_archive_offline() {
    require_root();
    let work = state_dir();
    let layout = busybox_layout(work.path());
    let manifest_digest = layout_manifest_digest(&layout);
    let state = state_dir();
    let store = ImageStore::open(state.path()).unwrap();

    let reference = format!("oci-layout:{}:1.36", layout.display());
    let image = store
        .pull(&reference, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap();
    assert_eq!(image.reference, reference);
    assert_eq!(image.digest, manifest_digest);
    assert_is_busybox_image(&image);
    assert_eq!(store.lookup(&reference).unwrap(), Some(image.clone()));

    let by_digest = format!("oci-layout:{}@{manifest_digest}", layout.display());
    assert_eq!(
        store
            .pull(&by_digest, &RegistryConfig::default(), &no_progress())
            .await
            .unwrap()
            .layers,
        image.layers
    );

    let err = store
        .pull(
            &format!("oci-layout:{}:2.0", layout.display()),
            &RegistryConfig::default(),
            &no_progress(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("has no image tagged \"2.0\"; it has 1.36"),
        "{err}"
    );

    // The same image recompressed with zstd by skopeo.
    let zstd_layout = work.path().join("zstd");
    let status = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--dest-compress",
            "--dest-compress-format",
            "zstd",
        ])
        .arg(format!("oci:{}:1.36", layout.display()))
        .arg(format!("oci:{}:1.36", zstd_layout.display()))
        .status()
        .unwrap();
    assert!(status.success(), "skopeo copy with zstd compression");
    let zstd_manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            zstd_layout
                .join("blobs/sha256")
                .join(&layout_manifest_digest(&zstd_layout)[7..]),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        zstd_manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let zstd_ref = format!("oci-layout:{}:1.36", zstd_layout.display());
    let zstd_image = store
        .pull(&zstd_ref, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap();
    assert_ne!(
        zstd_image.layers, image.layers,
        "a zstd layer is a different blob"
    );
    assert_is_busybox_image(&zstd_image);

    // The same image as an oci-archive tar.
    let archive = work.path().join("busybox.tar");
    let status = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:1.36", layout.display()))
        .arg(format!("oci-archive:{}:1.36", archive.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let fresh = state_dir();
    let store2 = ImageStore::open(fresh.path()).unwrap();
    let reference = format!("oci-archive:{}:1.36", archive.display());
    let from_archive = store2
        .pull(&reference, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap();
    assert_eq!(from_archive.digest, manifest_digest);
    assert_is_busybox_image(&from_archive);
    assert!(
        entries(&fresh.path().join("content/tmp")).is_empty(),
        "the extracted archive is removed"
    );
}

#[tokio::test]
async fn resolves_this_hosts_platform_from_an_index() {
    require_root();
    let work = state_dir();
    let layout = busybox_layout(work.path());
    let manifest_digest = layout_manifest_digest(&layout);
    let size = std::fs::metadata(layout.join("blobs/sha256").join(&manifest_digest[7..]))
        .unwrap()
        .len();
    let host = berth_engine::images::Platform::host();
    let other_arch = if host.architecture == "amd64" {
        "arm64"
    } else {
        "amd64"
    };
    // An index whose first entry is another architecture, a v6/v7 pair that must not match
    // this host, then this host's platform.
    let fake = format!("sha256:{}", "ab".repeat(32));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": fake, "size": 10,
             "platform": {"os": "linux", "architecture": other_arch}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": fake, "size": 10,
             "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": size,
             "platform": {"os": host.os, "architecture": host.architecture, "variant": host.variant}},
        ]
    });
    let write_index = |index: &serde_json::Value| {
        let bytes = serde_json::to_vec(index).unwrap();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        std::fs::write(layout.join("blobs/sha256").join(&digest[7..]), &bytes).unwrap();
        let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"}}]});
        std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    };
    write_index(&index);
    let state = state_dir();
    let store = ImageStore::open(state.path()).unwrap();
    let reference = format!("oci-layout:{}:multi", layout.display());
    let image = store
        .pull(&reference, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap();
    assert_eq!(image.digest, manifest_digest);
    assert_is_busybox_image(&image);

    let mut only_others = index.clone();
    only_others["manifests"].as_array_mut().unwrap().truncate(2);
    write_index(&only_others);
    let err = store
        .pull(&reference, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("pull {reference}: no image for this host's platform {host}; the index offers linux/{other_arch}, linux/arm/v6")
    );
}

#[tokio::test]
async fn garbage_collection_keeps_what_is_in_use() {
    require_root();
    let work = state_dir();
    let layout = busybox_layout(work.path());
    let state = state_dir();
    let store = ImageStore::open(state.path()).unwrap();
    let reference = format!("oci-layout:{}:1.36", layout.display());
    let image = store
        .pull(&reference, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap();

    // In use: nothing goes.
    let report = store
        .gc(std::slice::from_ref(&reference), std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.images_removed, Vec::<String>::new());
    assert_eq!((report.blobs_removed, report.layers_removed), (0, 0));
    assert_eq!(store.lookup(&reference).unwrap(), Some(image.clone()));

    // Within the grace period: nothing goes either.
    let report = store
        .gc(&[], std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(report.images_removed, Vec::<String>::new());

    // Unused and old enough: record, manifest, config and layer blobs, layer dirs all go.
    let report = store.gc(&[], std::time::Duration::ZERO).await.unwrap();
    assert_eq!(report.images_removed, vec![reference.clone()]);
    assert_eq!(report.blobs_removed, 2 + image.layers.len());
    assert_eq!(report.layers_removed, image.layers.len());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.bytes_freed > 1_000_000);
    assert_eq!(store.lookup(&reference).unwrap(), None);
    assert!(entries(&state.path().join("content/sha256")).is_empty());
    assert_eq!(entries(&state.path().join("layers")), vec!["tmp"]);
}

#[tokio::test]
async fn a_pull_can_be_spawned() {
    // The agent spawns pulls: the future must be Send for any lifetime (a lazy iterator
    // adapter held across an await breaks that, and only a real spawn shows it).
    let state = state_dir();
    let store = std::sync::Arc::new(ImageStore::open(state.path()).unwrap());
    let config = RegistryConfig {
        mirrors: [(
            "docker.io".to_string(),
            vec!["http://10.66.0.1:5000".to_string()],
        )]
        .into(),
        insecure: vec![],
    };
    let task = tokio::spawn({
        let store = store.clone();
        async move {
            let progress = |_: PullProgress| {};
            store
                .pull("busybox", &config, &progress)
                .await
                .map(|i| i.digest)
        }
    });
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, ImageError::InsecureEndpoint { .. }), "{err}");
}
