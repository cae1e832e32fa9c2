//! Helpers shared by the engine tests: a root check, temp state dirs, a mirror config for the
//! test registry, and the busybox test image as an OCI layout; [`lab`] for tests that run
//! real containers.

#![allow(dead_code)] // each test file uses its own subset

pub mod lab;

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_engine::images::{PullProgress, RegistryConfig};
use berth_tests::Registry;

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the image tests need root: layers keep file owners and whiteouts are device nodes"
    );
}

pub fn state_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-test-images-")
        .tempdir()
        .expect("create state dir")
}

pub fn mirror_to(registry: &Registry) -> RegistryConfig {
    RegistryConfig {
        mirrors: [(
            "docker.io".to_string(),
            vec![format!("http://{}", registry.host())],
        )]
        .into(),
        insecure: vec![],
    }
}

pub fn no_progress() -> impl Fn(PullProgress) + Send + Sync {
    |_| {}
}

/// Every entry of a directory (for "nothing left behind" checks).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Build the busybox test image into an OCI layout (no registry), tagged `latest`.
pub fn busybox_layout(work: &Path) -> PathBuf {
    berth_tests::require_tool("umoci", "umoci").unwrap();
    berth_tests::require_tool("skopeo", "skopeo").unwrap();
    let layout = work.join("out");
    let status = Command::new("sh")
        .arg(berth_tests::support_script("busybox-image.sh"))
        .arg(work.join("build"))
        .arg(format!("oci:{}:1.36", layout.display()))
        .status()
        .expect("run busybox-image.sh");
    assert!(
        status.success(),
        "busybox-image.sh into an OCI layout failed"
    );
    layout
}

pub fn layout_manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}
