//! End to end: the periodic resync repairs what someone did to the host behind berth's back —
//! a container's cgroup removed (its processes moved out first, as the kernel requires) makes
//! berth kill what ran without limits and make the container again; a container's veth
//! deleted makes it be made again, with its network back.

use std::path::{Path, PathBuf};

use berth_tests::agent::{links_with, Agent};
use berth_tests::{push_busybox, Registry};

fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// An agent that checks the host every second, with a container `app` (`sleep`) and `extra`
/// lines of spec.
fn agent_running_app(extra: &str) -> (Registry, Agent) {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let agent = Agent::start_with(&registry, "resyncInterval: 1s\n").unwrap();
    agent
        .write_manifest(
            "app.yaml",
            &format!("apiVersion: berth/v1\nkind: Container\nmetadata: {{name: app}}\nspec:\n  image: docker.io/library/busybox:1.36\n  command: [sleep, '1000']\n  stopTimeout: 1s\n{extra}"),
        )
        .unwrap();
    (registry, agent)
}

#[test]
fn a_removed_cgroup_is_repaired_by_making_the_container_again() {
    let (_registry, agent) = agent_running_app("  resources: {pids: 32}\n");
    let before = agent
        .wait_container("app", "running", |c| c["state"] == "running")
        .unwrap();
    let id = before["id"].as_str().unwrap().to_string();
    let pid = before["pid"].as_i64().unwrap() as i32;
    let pids_dir: PathBuf = agent
        .cgroup_dirs()
        .into_iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/pids/") && d.ends_with(&id))
        .expect("the container's pids cgroup");
    assert_eq!(procs(&pids_dir), [pid]);

    // Out of its pids cgroup (its limit gone), and the cgroup removed.
    std::fs::write("/sys/fs/cgroup/pids/cgroup.procs", pid.to_string()).unwrap();
    std::fs::remove_dir(&pids_dir).unwrap();

    let after = agent
        .wait_container("app", "made again", |c| {
            c["state"] == "running" && c["id"] != id.as_str()
        })
        .unwrap();
    let new_pid = after["pid"].as_i64().unwrap() as i32;
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the process that ran without its limits is gone"
    );
    let new_dir = agent
        .cgroup_dirs()
        .into_iter()
        .find(|d| {
            d.starts_with("/sys/fs/cgroup/pids/") && d.ends_with(after["id"].as_str().unwrap())
        })
        .expect("a pids cgroup again");
    assert_eq!(procs(&new_dir), [new_pid]);
    assert_eq!(
        std::fs::read_to_string(new_dir.join("pids.max"))
            .unwrap()
            .trim(),
        "32"
    );
    assert!(
        agent.log().contains("its cgroup was removed"),
        "the log says why"
    );
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}

#[test]
fn a_deleted_veth_is_repaired_by_making_the_container_again() {
    let (_registry, agent) = agent_running_app("");
    let before = agent
        .wait_container("app", "running with an address", |c| {
            c["state"] == "running" && c["networks"].as_array().is_some_and(|n| !n.is_empty())
        })
        .unwrap();
    let id = before["id"].as_str().unwrap().to_string();
    // The veth's host end: `<prefix>v<hash>` (bridges have no `v` after the prefix).
    let prefix = bridge_prefix(&agent);
    let veths: Vec<String> = links_with(&format!("{prefix}v"));
    let [veth] = &veths[..] else {
        panic!("one veth expected: {veths:?}");
    };
    let status = std::process::Command::new("ip")
        .args(["link", "del", veth])
        .status()
        .unwrap();
    assert!(status.success());
    let after = agent
        .wait_container("app", "made again", |c| {
            c["state"] == "running"
                && c["id"] != id.as_str()
                && c["networks"].as_array().is_some_and(|n| !n.is_empty())
        })
        .unwrap();
    let new_pid = after["pid"].as_i64().unwrap();
    // Its network works again: eth0 is up with its address.
    let addr = after["networks"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            &new_pid.to_string(),
            "-n",
            "ip",
            "-o",
            "-4",
            "addr",
            "show",
            "eth0",
        ])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(&format!("inet {addr}/")), "{shown}");
    assert!(agent.log().contains("its network link was deleted"));
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}

/// The bridge prefix the fixture gave this agent.
fn bridge_prefix(agent: &Agent) -> String {
    let config = std::fs::read_to_string(agent.root.path().join("agent.yaml")).unwrap();
    config
        .lines()
        .find_map(|l| l.trim().strip_prefix("bridgePrefix:"))
        .map(|p| p.trim().to_string())
        .expect("a bridge prefix")
}
