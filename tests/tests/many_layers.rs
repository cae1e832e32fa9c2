//! End to end: an image of 130 layers runs — more than the one page of overlay mount options
//! would hold with full layer paths.

use std::process::Command;

use berth_tests::agent::Agent;
use berth_tests::{push_busybox, support_script, Registry};

const LAYERS: usize = 130;

#[test]
fn an_image_with_130_layers_runs() {
    let registry = Registry::start().expect("start registry");
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("out");
    // The busybox image into a local OCI layout, then one tiny layer per file, then pushed.
    let st = Command::new(support_script("busybox-image.sh"))
        .arg(work.path().join("build"))
        .arg(format!("oci:{}:latest", layout.display()))
        .status()
        .unwrap();
    assert!(st.success(), "build the base image");
    let script = format!(
        "set -e; cd {w}; for i in $(seq 1 {LAYERS}); do rm -rf l; mkdir -p l/layers; echo $i > l/layers/$i.txt; \
         tar -C l -cf layer.tar layers; umoci raw add-layer --image {layout}:latest layer.tar; done",
        w = work.path().display(),
        layout = layout.display()
    );
    let st = Command::new("sh").arg("-c").arg(&script).status().unwrap();
    assert!(st.success(), "add {LAYERS} layers");
    let st = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{}/library/layers:1", registry.host()))
        .status()
        .unwrap();
    assert!(st.success(), "push the layered image");
    // The fixture's own push keeps the registry's busybox too (unused here, but proves the
    // registry still serves after a big push).
    push_busybox(&registry, "library/busybox:1.36", &[]).unwrap();

    let agent = Agent::start(&registry).unwrap();
    agent
        .write_manifest(
            "layers.yaml",
            "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: layers\nspec:\n  image: docker.io/library/layers:1\n  command: [sh, -c, 'cat /layers/1.txt /layers/130.txt; ls /layers | wc -l']\n  restartPolicy: Never\n",
        )
        .unwrap();
    let c = agent
        .wait_container("layers", "exited", |c| {
            c["state"] == "exited" || c["state"] == "failed"
        })
        .unwrap();
    assert_eq!(
        (c["state"].as_str(), c["exitCode"].as_i64()),
        (Some("exited"), Some(0)),
        "{c}"
    );
    let logs = agent.get("/v1/containers/layers/logs").unwrap();
    let out: String = logs
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["log"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(out, format!("1\n{LAYERS}\n{LAYERS}\n"));
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}
