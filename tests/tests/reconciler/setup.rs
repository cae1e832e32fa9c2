//! Setup failures (a host path, an image not there yet) are retried under `restartPolicy:
//! Never` until the container ran once; a process that cannot exec is not.

use super::*;

#[test]
fn a_setup_failure_is_retried_under_never_until_it_runs_once() {
    let host = tempfile::tempdir().unwrap();
    let (registry, agent) = start(&format!(
        "allowedHostPaths: [{}]\nrestartBackoff: {{initial: 300ms, max: 1s}}\n",
        host.path().display()
    ));
    let dir = host.path().join("data");
    agent
        .write_manifest(
            "job.yaml",
            &container(
                "job",
                "cat /data/input; echo ran",
                &format!(
                    "  restartPolicy: Never\n  mounts: [{{hostPath: {}, path: /data}}]\n",
                    dir.display()
                ),
            ),
        )
        .unwrap();
    // An image not in the registry yet.
    agent
        .write_manifest(
            "late.yaml",
            &container("late", "echo late ran", "  restartPolicy: Never\n")
                .replace(IMAGE, "docker.io/library/busybox:later"),
        )
        .unwrap();
    // A process that cannot exec is the workload's failure: under Never, not retried.
    agent
        .write_manifest(
            "noexec.yaml",
            &format!("apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: noexec\nspec:\n  image: {IMAGE}\n  command: [/no/such/binary]\n  restartPolicy: Never\n"),
        )
        .unwrap();

    let c = agent
        .wait_container("job", "failed to set up", |c| {
            c["state"] == "failed" && c["reason"] == "SetupError"
        })
        .unwrap();
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("hostPath {}", dir.display()))
            && message.contains("hint: it must exist on the host"),
        "{message}"
    );
    // Retried with back-off although its policy is Never.
    let c = agent
        .wait_container("job", "retried twice, waiting again", |c| {
            c["state"] == "failed"
                && c["restartCount"].as_i64() >= Some(2)
                && c["waitingFor"]
                    .as_str()
                    .is_some_and(|w| w.starts_with("restart back-off ("))
        })
        .unwrap();
    assert_eq!(c["reason"], "SetupError", "{c}");

    let c = agent
        .wait_container("late", "its pull retried", |c| {
            c["state"] == "failed" && c["restartCount"].as_i64() >= Some(2)
        })
        .unwrap();
    assert_eq!(c["reason"], "SetupError", "{c}");
    assert!(
        c["message"].as_str().unwrap().contains("busybox:later"),
        "{c}"
    );

    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("input"), "hello\n").unwrap();
    push_busybox(&registry, "library/busybox:later", &[]).expect("push the later tag");
    let c = agent
        .wait_container("job", "ran once", |c| c["state"] == "exited")
        .unwrap();
    assert_eq!(
        (c["exitCode"].as_i64(), c["reason"].as_str(), &c["message"]),
        (Some(0), Some("Completed"), &Value::Null),
        "{c}"
    );
    let restarts = c["restartCount"].clone();
    let lines = || -> Vec<String> {
        stdout_lines(&agent, "job")
            .into_iter()
            .map(|(_, l)| l)
            .collect()
    };
    agent
        .wait_for("the job's output", Duration::from_secs(10), |_| {
            Some(lines()).filter(|l| l.len() == 2)
        })
        .unwrap();
    assert_eq!(lines(), ["hello", "ran"]);
    let c = agent
        .wait_container("late", "pulled and ran once", |c| c["state"] == "exited")
        .unwrap();
    assert_eq!(
        (c["exitCode"].as_i64(), c["reason"].as_str()),
        (Some(0), Some("Completed")),
        "{c}"
    );
    let late_restarts = c["restartCount"].clone();

    let c = agent.container("noexec").unwrap();
    assert_eq!(
        (
            c["state"].as_str(),
            c["reason"].as_str(),
            c["restartCount"].as_i64(),
            &c["waitingFor"]
        ),
        (Some("failed"), Some("StartError"), Some(0), &Value::Null),
        "{c}"
    );
    assert!(
        c["message"].as_str().unwrap().contains("/no/such/binary"),
        "{c}"
    );
    // Run once, it stays finished.
    holds_for(&agent, Duration::from_secs(2), "the finished job", |a| {
        a.container("job")
            .is_some_and(|c| c["state"] == "exited" && c["restartCount"] == restarts)
            && a.container("noexec")
                .is_some_and(|c| c["restartCount"] == 0)
            && a.container("late")
                .is_some_and(|c| c["state"] == "exited" && c["restartCount"] == late_restarts)
    });
    assert_eq!(lines(), ["hello", "ran"]);
    finish(agent);
}
