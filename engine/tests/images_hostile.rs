//! Hostile and broken images: each is refused with a message naming the image (and the layer
//! and entry where there is one), nothing is written outside the store, and no partial layer,
//! blob or record is left. Needs root, like the other image tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_engine::images::{ImageError, ImageStore, RegistryConfig, StoreLimits};
use berth_tests::{push_busybox, Registry};
use sha2::{Digest as _, Sha256};

mod common;
use common::*;

const REF: &str = "docker.io/library/busybox:1.36";

#[tokio::test]
async fn a_corrupt_layer_blob_is_refused_and_leaves_nothing() {
    require_root();
    let work = state_dir();
    let layout = busybox_layout(work.path());
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(&layout_manifest_digest(&layout)[7..]),
        )
        .unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob_path = layout.join("blobs/sha256").join(&layer[7..]);
    let mut bytes = std::fs::read(&blob_path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob_path, &bytes).unwrap();

    let state = state_dir();
    let store = ImageStore::open(state.path()).unwrap();
    let reference = format!("oci-layout:{}:1.36", layout.display());
    let err = store
        .pull(&reference, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap_err();
    match &err {
        ImageError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &layer);
            assert_ne!(actual, &layer);
        }
        other => panic!("expected a digest mismatch, got {other}"),
    }
    assert!(
        err.to_string()
            .contains(&format!("blob {layer}: digest mismatch")),
        "{err}"
    );
    assert!(!state
        .path()
        .join("content/sha256")
        .join(&layer[7..])
        .exists());
    assert_eq!(entries(&state.path().join("layers")), vec!["tmp"]);
    assert!(entries(&state.path().join("layers/tmp")).is_empty());
    assert!(entries(&state.path().join("content/tmp")).is_empty());
    assert!(entries(&state.path().join("images")).is_empty());
}

/// Write an OCI layout by hand: one image (tag `t`) whose layers are `layers` (gzipped tars).
fn hand_layout(dir: &Path, tars: &[Vec<u8>]) -> (PathBuf, Vec<String>) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in tars {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        let (digest, size) = put(&gz.finish().unwrap());
        diff_ids.push(format!("sha256:{}", hex::encode(Sha256::digest(tar))));
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size}));
    }
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["true"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": layers});
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest).unwrap());
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": manifest_size, "annotations": {"org.opencontainers.image.ref.name": "t"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let layer_digests = layers
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    (dir.to_path_buf(), layer_digests)
}

/// A tar with one regular file under a raw (possibly hostile) name.
fn tar_with(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&header, data).unwrap();
    b.into_inner().unwrap()
}

fn assert_no_partial_state(state: &Path) {
    assert_eq!(
        entries(&state.join("layers")),
        vec!["tmp"],
        "no layer committed"
    );
    assert!(
        entries(&state.join("layers/tmp")).is_empty(),
        "no partial layer left"
    );
    assert!(
        entries(&state.join("images")).is_empty(),
        "no image recorded"
    );
}

#[tokio::test]
async fn a_hostile_layer_is_refused_naming_image_layer_and_entry() {
    require_root();
    let work = state_dir();
    let victim_dir = work.path().join("victim");
    std::fs::create_dir(&victim_dir).unwrap();
    let (layout, layers) = hand_layout(
        &work.path().join("layout"),
        &[
            tar_with("ok", b"fine"),
            tar_with("../../victim/evil", b"pwned"),
        ],
    );
    let state = state_dir();
    let store = ImageStore::open(state.path()).unwrap();
    let reference = format!("oci-layout:{}:t", layout.display());
    let err = store
        .pull(&reference, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Unpack { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "pull {reference}: unpack layer {}: entry \"../../victim/evil\" refused: path contains \"..\"",
            layers[1]
        )
    );
    assert!(
        entries(&victim_dir).is_empty(),
        "nothing written outside the store"
    );
    // The good first layer may be committed; the hostile one never is, nor the image.
    assert!(!state.path().join("layers").join(&layers[1][7..]).exists());
    assert!(entries(&state.path().join("layers/tmp")).is_empty());
    assert!(entries(&state.path().join("images")).is_empty());
}

#[tokio::test]
async fn a_gzip_bomb_is_stopped() {
    require_root();
    let work = state_dir();
    let (layout, layers) = hand_layout(
        &work.path().join("layout"),
        &[tar_with("zeros", &vec![0u8; 16 << 20])],
    );
    let compressed = std::fs::metadata(layout.join("blobs/sha256").join(&layers[0][7..]))
        .unwrap()
        .len();
    assert!(compressed < 200_000, "the bomb is small: {compressed}");
    let state = state_dir();
    let store = ImageStore::open(state.path())
        .unwrap()
        .with_limits(StoreLimits {
            max_expansion_ratio: 10,
            expansion_floor: 1 << 20,
            ..StoreLimits::default()
        });
    let reference = format!("oci-layout:{}:t", layout.display());
    let err = store
        .pull(&reference, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "pull {reference}: unpack layer {}: the layer expands to more than 1048576 bytes",
            layers[0]
        )),
        "{err}"
    );
    assert_no_partial_state(state.path());
}

#[tokio::test]
async fn a_truncated_blob_is_refused() {
    require_root();
    let work = state_dir();
    let (layout, layers) = hand_layout(
        &work.path().join("layout"),
        &[tar_with("f", &[1u8; 100_000])],
    );
    let blob = layout.join("blobs/sha256").join(&layers[0][7..]);
    let full = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, &full[..full.len() - 10]).unwrap();
    let state = state_dir();
    let store = ImageStore::open(state.path()).unwrap();
    let reference = format!("oci-layout:{}:t", layout.display());
    let err = store
        .pull(&reference, &RegistryConfig::default(), &no_progress())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "blob {}: is {} bytes, the manifest declares {}",
            layers[0],
            full.len() - 10,
            full.len()
        )),
        "{err}"
    );
    assert!(!state
        .path()
        .join("content/sha256")
        .join(&layers[0][7..])
        .exists());
    assert!(entries(&state.path().join("content/tmp")).is_empty());
    assert_no_partial_state(state.path());
}

#[tokio::test]
async fn a_registry_blob_with_the_wrong_digest_is_refused() {
    require_root();
    let registry = Registry::start().unwrap();
    push_busybox(&registry, "library/busybox:1.36", &[]).unwrap();
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/library/busybox:1.36", registry.host()))
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let data = registry
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&layer[7..9])
        .join(&layer[7..])
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&data, &bytes).unwrap();

    let state = state_dir();
    let store = ImageStore::open(state.path()).unwrap();
    let err = store
        .pull(REF, &mirror_to(&registry), &no_progress())
        .await
        .unwrap_err();
    let expected_start =
        format!("pull {REF}: blob {layer}: digest mismatch: expected {layer}, got sha256:");
    assert!(err.to_string().starts_with(&expected_start), "{err}");
    assert!(!state
        .path()
        .join("content/sha256")
        .join(&layer[7..])
        .exists());
    assert!(
        entries(&state.path().join("content/tmp")).is_empty(),
        "the bad download is not kept"
    );
    assert_no_partial_state(state.path());
}
