//! End to end: an update to an image whose registry serves bad bytes is refused, and the
//! container on the old image keeps running untouched — the new image is verified before
//! the old container stops.

use std::process::Command;

use berth_tests::agent::Agent;
use berth_tests::{push_busybox, Registry};

fn web(tag: &str) -> String {
    format!(
        "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  image: docker.io/library/busybox:{tag}\n  command: [sleep, '1000']\n  stopTimeout: 1s\n"
    )
}

/// Flips one byte of the config blob of `repo:tag` in the registry's own storage.
fn corrupt_config(registry: &Registry, repo: &str, tag: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/{repo}:{tag}", registry.host()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let data = registry
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&digest[7..9])
        .join(&digest[7..])
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&data, &bytes).unwrap();
    digest
}

#[test]
fn a_bad_new_image_leaves_the_running_container_alone() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).unwrap();
    // A different Cmd makes a config blob of its own.
    push_busybox(&registry, "library/busybox:1.37", &["true"]).unwrap();
    let bad = corrupt_config(&registry, "library/busybox", "1.37");
    let agent = Agent::start(&registry).unwrap();

    agent.write_manifest("web.yaml", &web("1.36")).unwrap();
    let c = agent
        .wait_container("web", "running", |c| c["state"] == "running")
        .unwrap();
    let (pid, id) = (
        c["pid"].as_i64().unwrap(),
        c["id"].as_str().unwrap().to_string(),
    );

    agent.write_manifest("web.yaml", &web("1.37")).unwrap();
    let c = agent
        .wait_container("web", "the update refused", |c| {
            c["message"]
                .as_str()
                .is_some_and(|m| m.contains("update held back"))
        })
        .unwrap();
    let msg = c["message"].as_str().unwrap();
    assert!(
        msg.contains(&bad) && msg.contains("digest mismatch"),
        "{msg}"
    );
    assert_eq!(
        (c["state"].as_str(), c["pid"].as_i64(), c["id"].as_str()),
        (Some("running"), Some(pid), Some(id.as_str()))
    );
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    // Nothing of the bad pull is kept.
    let tmp = agent.state_dir.join("content/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "partial downloads left in {}: {left:?}",
        tmp.display()
    );
    assert!(
        !agent
            .state_dir
            .join("content/sha256")
            .join(&bad[7..])
            .exists(),
        "the bad config blob was stored"
    );

    // A good image fixes it: the container moves over.
    push_busybox(&registry, "library/busybox:1.38", &["true"]).unwrap();
    agent.write_manifest("web.yaml", &web("1.38")).unwrap();
    let c = agent
        .wait_container("web", "updated", |c| {
            c["state"] == "running" && c["id"] != id.as_str()
        })
        .unwrap();
    assert_eq!(c["image"], "docker.io/library/busybox:1.38");
    assert_eq!(c["message"], serde_json::Value::Null);

    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}
