//! What stays when manifests go: the prune guard of an emptied directory, `berth/prune:
//! disabled`, and volumes by their reclaim policy.

use std::collections::BTreeSet;

use berth_tests::agent::links_with;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::*;

#[test]
fn an_emptied_directory_removes_nothing_unless_allowed() {
    let (_registry, mut agent) = start("allowEmpty: false\n");
    // One file: moving it is atomic, so no pass sees half a directory.
    let stack = [
        "apiVersion: berth/v1\nkind: Network\nmetadata:\n  name: front\n".to_string(),
        container("one", IDLE, "  networks: [front]\n"),
        container("two", IDLE, "  networks: [front]\n"),
    ]
    .join("---\n");
    agent.write_manifest("stack.yaml", &stack).unwrap();
    let pids: Vec<i32> = ["one", "two"]
        .iter()
        .map(|n| {
            pid_of(
                &agent
                    .wait_container(n, "running", |c| c["state"] == "running")
                    .unwrap(),
            )
        })
        .collect();
    let links = links_with(agent.net_prefix());
    assert_eq!(links.len(), 3, "a bridge and two veths: {links:?}");
    let unchanged = |a: &Agent| {
        ["one", "two"].iter().zip(&pids).all(|(n, pid)| {
            a.container(n).is_some_and(|c| {
                c["state"] == "running" && c["pid"] == *pid && c["restartCount"] == 0
            }) && planned(a, n) == ["create"]
        })
    };

    let parked = agent.root.path().join("parked.yaml");
    std::fs::rename(agent.manifests.join("stack.yaml"), &parked).unwrap();
    agent
        .wait_for("the prune guard", Duration::from_secs(10), |a| {
            let v: Value = serde_json::from_str(&a.get("/v1/manifests").ok()?).ok()?;
            (v["pruneBlocked"] == true).then_some(())
        })
        .unwrap();
    // More passes over the empty directory (a file without objects is still empty).
    for i in 0..3 {
        let before = metric(&agent, "berth_prune_blocked_total").expect("metric");
        agent
            .write_manifest("notes.yaml", &format!("# nothing here yet ({i})\n"))
            .unwrap();
        agent
            .wait_for("another guarded pass", Duration::from_secs(10), |a| {
                metric(a, "berth_prune_blocked_total").filter(|v| *v > before)
            })
            .unwrap();
        assert!(unchanged(&agent), "{:#?}", agent.containers());
    }
    assert!(metric(&agent, "berth_prune_blocked_total").unwrap() >= 4.0);
    let guard_lines = agent
        .log()
        .lines()
        .filter(|l| l.contains("the manifest directory holds no object: nothing is removed"))
        .count();
    assert_eq!(
        guard_lines,
        1,
        "logged once, when it starts:\n{}",
        agent.log()
    );
    assert_eq!(links_with(agent.net_prefix()), links);
    assert!(pids.iter().all(|p| alive(*p)));

    // An agent that crashes and comes back to the empty directory keeps the guard.
    agent.kill9().unwrap();
    agent.restart().unwrap();
    first_pass(&agent);
    let v: Value = serde_json::from_str(&agent.get("/v1/manifests").unwrap()).unwrap();
    assert_eq!(v["pruneBlocked"], true, "{v}");
    assert!(unchanged(&agent), "{:#?}", agent.containers());

    // Back: nothing was stopped.
    agent.remove_manifest("notes.yaml").unwrap();
    std::fs::rename(&parked, agent.manifests.join("stack.yaml")).unwrap();
    agent
        .wait_for("the guard to lift", Duration::from_secs(10), |a| {
            let v: Value = serde_json::from_str(&a.get("/v1/manifests").ok()?).ok()?;
            (v["pruneBlocked"] == false && v["files"].as_array()?.len() == 1).then_some(())
        })
        .unwrap();
    assert!(agent
        .log()
        .contains("the manifest directory holds objects again: removals resume"));
    assert!(unchanged(&agent), "{:#?}", agent.containers());
    assert_eq!(links_with(agent.net_prefix()), links);

    agent
        .edit_config_and_restart("allowEmpty: false", "allowEmpty: true")
        .unwrap();
    first_pass(&agent);
    assert!(unchanged(&agent), "{:#?}", agent.containers());
    finish(agent);
}

#[test]
fn kept_containers_and_volume_reclaim_policies() {
    let (_registry, agent) = start("");
    let keeper = container("keeper", IDLE, "").replace(
        "  name: keeper\n",
        "  name: keeper\n  annotations:\n    berth/prune: \"disabled\"\n",
    );
    let writer = |generation: u32| {
        format!(
            "{}---\n{}",
            volume("data", "Delete"),
            container(
                "writer",
                &format!("echo $GEN >> /data/log; {IDLE}"),
                &format!(
                    "  env: {{GEN: '{generation}'}}\n  mounts: [{{volume: data, path: /data}}]\n"
                ),
            )
        )
    };
    let holder = format!(
        "{}---\n{}",
        volume("keep", "Retain"),
        container(
            "holder",
            &format!("echo kept > /keep/f; {IDLE}"),
            "  mounts: [{volume: keep, path: /keep}]\n",
        )
    );
    agent.write_manifest("keeper.yaml", &keeper).unwrap();
    agent.write_manifest("data.yaml", &writer(1)).unwrap();
    agent.write_manifest("keep.yaml", &holder).unwrap();
    let running = |name: &str| {
        agent
            .wait_container(name, "running", |c| c["state"] == "running")
            .unwrap()
    };
    let keeper_pid = pid_of(&running("keeper"));
    let w = running("writer");
    running("holder");
    let volumes = agent.state_dir.join("volumes");
    let data_log = volumes.join("data/_data/log");
    agent
        .wait_for("the first write", Duration::from_secs(10), |_| {
            std::fs::read_to_string(&data_log)
                .ok()
                .filter(|s| s == "1\n")
        })
        .unwrap();

    // Recreated (env changed): the volume's data is still there.
    agent.write_manifest("data.yaml", &writer(2)).unwrap();
    let w2 = agent
        .wait_container("writer", "recreated", |c| {
            c["state"] == "running" && c["id"] != w["id"]
        })
        .unwrap();
    let inside = format!("/proc/{}/root/data/log", pid_of(&w2));
    agent
        .wait_for("the second write", Duration::from_secs(10), |_| {
            std::fs::read_to_string(&inside)
                .ok()
                .filter(|s| s == "1\n2\n")
        })
        .unwrap();

    // Both manifests gone: the container goes, then its volume and the data.
    agent.remove_manifest("keeper.yaml").unwrap();
    agent.remove_manifest("data.yaml").unwrap();
    agent
        .wait_for(
            "writer and its volume to go",
            Duration::from_secs(30),
            |a| {
                (a.container("writer").is_none()
                    && !volumes.join("data").exists()
                    && a.log().contains("volume deleted (reclaimPolicy: Delete)"))
                .then_some(())
            },
        )
        .unwrap();
    // keeper's manifest went in the same passes: it stays, the same process.
    let c = agent.container("keeper").expect("kept container");
    assert_eq!(
        (c["state"].as_str(), pid_of(&c), c["restartCount"].as_i64()),
        (Some("running"), keeper_pid, Some(0))
    );
    let state: Value = serde_json::from_str(&agent.get("/v1/state").unwrap()).unwrap();
    let last_good: BTreeSet<(String, String)> = state["lastGood"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("Container", "holder"),
        ("Container", "keeper"),
        ("Volume", "keep"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(last_good, expected);

    // Kept, it is still restarted under its policy.
    kill(Pid::from_raw(keeper_pid), Signal::SIGKILL).unwrap();
    let c = agent
        .wait_container("keeper", "restarted", |c| {
            c["state"] == "running" && c["restartCount"] == 1
        })
        .unwrap();
    let keeper_pid = pid_of(&c);

    // Retain: the container goes, the data stays.
    agent.remove_manifest("keep.yaml").unwrap();
    agent
        .wait_for(
            "holder to go and keep to be retained",
            Duration::from_secs(30),
            |a| {
                (a.container("holder").is_none()
                    && a.log()
                        .contains("manifest gone, volume retained (reclaimPolicy: Retain)"))
                .then_some(())
            },
        )
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(volumes.join("keep/_data/f")).unwrap(),
        "kept\n"
    );

    // keeper's manifest back without the annotation (not part of its hash): the same
    // process, and now removed with the rest.
    agent
        .write_manifest("keeper.yaml", &container("keeper", IDLE, ""))
        .unwrap();
    agent
        .wait_for("keeper.yaml to load", Duration::from_secs(10), |a| {
            a.get("/v1/manifests")
                .ok()
                .filter(|m| m.contains("keeper.yaml"))
        })
        .unwrap();
    holds_for(&agent, Duration::from_secs(1), "keeper unchanged", |a| {
        a.container("keeper").is_some_and(|c| {
            c["state"] == "running" && c["pid"] == keeper_pid && c["restartCount"] == 1
        })
    });
    assert_eq!(
        planned(&agent, "keeper"),
        ["create", "record-exit", "restart"]
    );
    std::fs::remove_dir_all(volumes.join("keep")).unwrap();
    finish(agent);
}
