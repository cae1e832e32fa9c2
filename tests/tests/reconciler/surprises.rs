//! Nothing restarts an unchanged container: agent restarts, a finishing sibling, a repaired
//! bridge, a renamed or re-saved file, live field edits.

use std::process::Command;

use super::*;

/// The bridges of this agent.
fn bridges(agent: &Agent) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "type", "bridge"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .filter(|n| n.starts_with(agent.net_prefix()))
        .map(str::to_string)
        .collect()
}

fn links_of(bridge: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

#[test]
fn nothing_restarts_an_unchanged_container() {
    let (_registry, mut agent) = start("");
    let a = container(
        "a",
        "mkdir -p /tmp/www; echo a > /tmp/www/index.html; exec httpd -f -p 8080 -h /tmp/www",
        "",
    );
    let b = container("b", IDLE, "");
    agent.write_manifest("a.yaml", &a).unwrap();
    agent.write_manifest("b.yaml", &b).unwrap();
    let running = |agent: &Agent, n: &str| {
        agent
            .wait_container(n, "running", |c| c["state"] == "running")
            .unwrap()
    };
    let ca = running(&agent, "a");
    let pids = [pid_of(&ca), pid_of(&running(&agent, "b"))];
    let a_addr: SocketAddr = format!("{}:8080", ca["networks"][0]["address"].as_str().unwrap())
        .parse()
        .unwrap();
    agent
        .wait_for("a to answer", Duration::from_secs(10), |_| {
            http_get(a_addr).ok().filter(|b| b == "a\n")
        })
        .unwrap();
    // The same processes, never restarted, and no action but these ever planned on them.
    let unchanged = |agent: &Agent, after: &str, a_actions: &[&str], b_actions: &[&str]| {
        for ((n, pid), actions) in ["a", "b"].iter().zip(pids).zip([a_actions, b_actions]) {
            let c = agent.container(n).unwrap();
            assert_eq!(
                (
                    c["state"].as_str(),
                    c["pid"].as_i64(),
                    c["restartCount"].as_i64()
                ),
                (Some("running"), Some(i64::from(pid)), Some(0)),
                "{n} after {after}: {c}\nagent log:\n{}",
                agent.log()
            );
            assert_eq!(planned(agent, n), actions, "{n} after {after}");
        }
    };

    // A sibling runs and finishes.
    agent
        .write_manifest(
            "job.yaml",
            &container("job", "sleep 1; echo done", "  restartPolicy: Never\n"),
        )
        .unwrap();
    agent
        .wait_container("job", "completed", |c| {
            c["state"] == "exited" && c["exitCode"] == 0
        })
        .unwrap();
    unchanged(&agent, "a sibling finished", &["create"], &["create"]);

    // The agent crashes, and it stops; both times it comes back to the same containers.
    agent.kill9().unwrap();
    agent.restart().unwrap();
    first_pass(&agent);
    unchanged(&agent, "kill -9 of the agent", &["create"], &["create"]);
    agent.restart().unwrap();
    first_pass(&agent);
    unchanged(&agent, "an agent restart", &["create"], &["create"]);
    assert_eq!(log_lines(&agent, "adopted running container", "a"), 2);

    // The bridge deleted by hand: the periodic resync makes it again with both veths.
    let bridge = bridges(&agent);
    assert_eq!(bridge.len(), 1, "{bridge:?}");
    let bridge = bridge[0].clone();
    assert_eq!(links_of(&bridge).len(), 2, "{:?}", links_of(&bridge));
    let status = Command::new("ip")
        .args(["link", "del", &bridge])
        .status()
        .unwrap();
    assert!(status.success());
    // (Without the bridge the address routes away from this host; whatever answers there, it
    // is not a.)
    assert_ne!(
        http_get(a_addr).ok().as_deref(),
        Some("a\n"),
        "a answers without its bridge"
    );
    agent
        .wait_for("the bridge to be repaired", Duration::from_secs(45), |_| {
            (links_of(&bridge).len() == 2).then_some(())
        })
        .unwrap();
    agent
        .wait_for("a to answer again", Duration::from_secs(10), |_| {
            http_get(a_addr).ok().filter(|b| b == "a\n")
        })
        .unwrap();
    unchanged(&agent, "a bridge repair", &["create"], &["create"]);

    // a.yaml moved to another name: the same object.
    std::fs::rename(
        agent.manifests.join("a.yaml"),
        agent.manifests.join("z-a.yaml"),
    )
    .unwrap();
    agent
        .wait_container("a", "its new file", |c| {
            c["sourceFile"]
                .as_str()
                .is_some_and(|f| f.ends_with("/z-a.yaml"))
        })
        .unwrap();
    unchanged(&agent, "a rename", &["create", "refresh"], &["create"]);

    // b.yaml saved again as it is.
    let before = passes(&agent);
    agent.write_manifest("b.yaml", &b).unwrap();
    agent
        .wait_for("a pass after the save", Duration::from_secs(10), |a| {
            Some(passes(a)).filter(|p| *p > before)
        })
        .unwrap();
    unchanged(
        &agent,
        "an identical save",
        &["create", "refresh"],
        &["create"],
    );

    // Only restartPolicy changes: a live field, the process stays.
    let hash = agent.container("b").unwrap()["specHash"].clone();
    agent
        .write_manifest("b.yaml", &format!("{b}  restartPolicy: OnFailure\n"))
        .unwrap();
    agent
        .wait_container("b", "its new revision", |c| c["specHash"] != hash)
        .unwrap();
    unchanged(
        &agent,
        "a restartPolicy edit",
        &["create", "refresh"],
        &["create", "refresh"],
    );

    // Every other live field at once: still the same process, now probed.
    let hash = agent.container("b").unwrap()["specHash"].clone();
    let live = format!(
        "{}  restartPolicy: OnFailure\n  stopSignal: SIGINT\n  imagePullPolicy: Never\n  update: {{strategy: KillThenDownload, minReady: 1s}}\n  dependsOn: [{{name: a, condition: Started}}]\n  healthcheck:\n    exec: [sh, -c, 'true']\n    interval: 1s\n",
        b.replace("stopTimeout: 2s", "stopTimeout: 1s")
    );
    agent.write_manifest("b.yaml", &live).unwrap();
    agent
        .wait_container("b", "its new revision, healthy", |c| {
            c["specHash"] != hash && c["health"]["status"] == "healthy"
        })
        .unwrap();
    unchanged(
        &agent,
        "an edit of every live field",
        &["create", "refresh"],
        &["create", "refresh", "refresh"],
    );
    finish(agent);
}
