//! End to end: the periodic resync repairs what someone did to the host behind berth's back —
//! a container's cgroup removed (its processes moved out first, as the kernel requires) makes
//! berth kill what ran without limits and make the container again.

use std::path::{Path, PathBuf};

use berth_tests::agent::Agent;
use berth_tests::{push_busybox, Registry};

fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

#[test]
fn a_removed_cgroup_is_repaired_by_making_the_container_again() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let agent = Agent::start_with(&registry, "resyncInterval: 1s\n").unwrap();
    agent
        .write_manifest(
            "app.yaml",
            "apiVersion: berth/v1\nkind: Container\nmetadata: {name: app}\nspec:\n  image: docker.io/library/busybox:1.36\n  command: [sleep, '1000']\n  stopTimeout: 1s\n  resources: {pids: 32}\n",
        )
        .unwrap();
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
