//! End to end: bad input gets a clear error in the status and loses nothing — exits under
//! `Never`, setup failures verbatim, images that do not exist, manifests that do not parse —
//! and the read-only API refuses everything but GET/HEAD.

use std::process::Command;
use std::time::Duration;

use berth_tests::agent::{berth_bin, Agent};
use berth_tests::{push_busybox, Registry};

fn container(name: &str, image: &str, command: &str, policy: &str) -> String {
    format!(
        "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n  command: {command}\n  restartPolicy: {policy}\n  stopTimeout: 1s\n"
    )
}

const BUSYBOX: &str = "docker.io/library/busybox:1.36";

#[test]
fn failures_are_reported_and_contained() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let agent = Agent::start(&registry).expect("start agent");

    agent
        .write_manifest(
            "keep.yaml",
            &container("keep", BUSYBOX, "[sleep, '1000']", "Always"),
        )
        .unwrap();
    agent
        .write_manifest(
            "once.yaml",
            &container("once", BUSYBOX, "[sh, -c, 'exit 3']", "Never"),
        )
        .unwrap();
    agent
        .write_manifest(
            "nope.yaml",
            &container("nope", BUSYBOX, "[/bin/nope]", "Never"),
        )
        .unwrap();
    agent
        .write_manifest(
            "nocwd.yaml",
            &format!(
                "{}  workingDir: /does/not/exist\n",
                container("nocwd", BUSYBOX, "[sh]", "Never")
            ),
        )
        .unwrap();
    agent
        .write_manifest(
            "notinpath.yaml",
            &container("notinpath", BUSYBOX, "[nosuchtool]", "Never"),
        )
        .unwrap();
    agent
        .write_manifest(
            "ghost.yaml",
            &container("ghost", "docker.io/library/ghost:1", "[sh]", "Always"),
        )
        .unwrap();

    let once = agent
        .wait_container("once", "exited", |c| c["state"] == "exited")
        .unwrap();
    assert_eq!(once["exitCode"], 3);
    assert_eq!(once["pid"], serde_json::Value::Null);

    let nope = agent
        .wait_container("nope", "failed", |c| c["state"] == "failed")
        .unwrap();
    assert_eq!(nope["message"], "exec /bin/nope: no such file or directory");
    let nocwd = agent
        .wait_container("nocwd", "failed", |c| c["state"] == "failed")
        .unwrap();
    assert_eq!(
        nocwd["message"],
        "chdir to /does/not/exist: no such file or directory"
    );
    let nip = agent
        .wait_container("notinpath", "failed", |c| c["state"] == "failed")
        .unwrap();
    assert_eq!(
        nip["message"],
        "exec: \"nosuchtool\": executable file not found in $PATH"
    );

    let ghost = agent
        .wait_container("ghost", "failed", |c| c["state"] == "failed")
        .unwrap();
    let msg = ghost["message"].as_str().unwrap();
    assert!(
        msg.contains("docker.io/library/ghost:1"),
        "message does not name the image: {msg}"
    );

    let keep = agent
        .wait_container("keep", "running", |c| c["state"] == "running")
        .unwrap();
    let keep_pid = keep["pid"].as_i64().unwrap();

    // Never means never: still exited, not restarted, a few seconds later.
    std::thread::sleep(Duration::from_secs(3));
    let once = agent.container("once").unwrap();
    assert_eq!(
        (once["state"].as_str(), once["restartCount"].as_i64()),
        (Some("exited"), Some(0))
    );
    let nope = agent.container("nope").unwrap();
    assert_eq!(nope["restartCount"], 0);

    // A manifest that stops parsing leaves its running container alone and says why.
    let good = container("keep", BUSYBOX, "[sleep, '1000']", "Always");
    agent
        .write_manifest(
            "keep.yaml",
            &good.replace("  restartPolicy", "    restartPolicy"),
        )
        .unwrap();
    let broken = agent
        .wait_container("keep", "manifest error", |c| {
            c["message"]
                .as_str()
                .is_some_and(|m| m.contains("keep.yaml"))
        })
        .unwrap();
    assert_eq!(broken["state"], "running");
    assert_eq!(broken["pid"].as_i64(), Some(keep_pid));
    let metrics = agent.get("/metrics").unwrap();
    assert!(
        metrics.contains("berth_manifest_errors{file=") && metrics.contains("keep.yaml\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_reconcile_total{result=\"error\"}"),
        "{metrics}"
    );

    let out = Command::new(berth_bin())
        .arg("validate")
        .arg(&agent.manifests)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let keep_file = agent.manifests.join("keep.yaml").display().to_string();
    assert!(
        stdout.starts_with(&format!("{keep_file}:")),
        "validate output: {stdout}"
    );
    let place: Vec<&str> = stdout.lines().next().unwrap()[keep_file.len() + 1..]
        .splitn(3, ':')
        .collect();
    assert!(
        place[0].parse::<u32>().is_ok() && place[1].parse::<u32>().is_ok(),
        "no line:col in {stdout}"
    );

    std::thread::sleep(Duration::from_secs(2));
    let still = agent.container("keep").unwrap();
    assert_eq!(
        (still["state"].as_str(), still["pid"].as_i64()),
        (Some("running"), Some(keep_pid))
    );

    // Fixed again: the error clears and the container was never touched.
    agent.write_manifest("keep.yaml", &good).unwrap();
    let fixed = agent
        .wait_container("keep", "error cleared", |c| c["message"].is_null())
        .unwrap();
    assert_eq!(
        (fixed["pid"].as_i64(), fixed["restartCount"].as_i64()),
        (Some(keep_pid), Some(0))
    );

    // The API is read-only and answers unknown names with a JSON 404.
    let (code, body) = agent.request("GET", "/v1/containers/missing").unwrap();
    assert_eq!(
        (code, body.as_str()),
        (404, r#"{"error":"no container named \"missing\""}"#)
    );
    for method in ["POST", "PUT", "DELETE"] {
        let (code, _) = agent.request(method, "/v1/containers/keep").unwrap();
        assert_eq!(code, 405, "{method}");
    }

    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}

#[test]
fn validate_reports_every_problem_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        container("ok", BUSYBOX, "[sh]", "Always"),
    )
    .unwrap();
    let out = Command::new(berth_bin())
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "ok: 1 file(s), 1 object(s), no problems\n"
    );

    std::fs::write(
        dir.path().join("b.yaml"),
        "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: bad\nspec:\n  image: busybox\n  restartPolicy: Sometimes\n",
    )
    .unwrap();
    let out = Command::new(berth_bin())
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let expected = format!("{}:7:", dir.path().join("b.yaml").display());
    assert!(
        stdout.starts_with(&expected),
        "expected {expected}… got {stdout}"
    );
    assert!(stdout.contains("Sometimes"), "{stdout}");

    // Files too, alone; a tab in the indentation is named.
    let tabbed = dir.path().join("tabbed.yml");
    std::fs::write(
        &tabbed,
        "apiVersion: berth/v1\nkind: Container\nmetadata:\n\tname: tabbed\n",
    )
    .unwrap();
    let out = Command::new(berth_bin())
        .arg("validate")
        .arg(dir.path().join("a.yaml"))
        .arg(&tabbed)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with(&format!("{}:4:", tabbed.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("a tab indents line 4 (column 1): YAML indents with spaces only"),
        "{stdout}"
    );
    let out = Command::new(berth_bin())
        .arg("validate")
        .arg(dir.path().join("a.yaml"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "ok: 1 file(s), 1 object(s), no problems\n"
    );
}
