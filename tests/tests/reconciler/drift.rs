//! Host drift repaired by the periodic resync: stray processes under the agent's cgroup
//! parent killed, a deleted veth repaired by recreating its container.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use berth_tests::agent::links_with;

use super::*;

/// A process the test put in a cgroup under the agent's parent; killed and removed on drop if
/// the agent did not.
struct Stray {
    child: Child,
    cgroup: PathBuf,
}

impl Drop for Stray {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

/// The host side of the veth of the container whose init is `pid`: the link whose index its
/// `eth0@ifN` names.
fn host_veth(pid: i32) -> String {
    let out = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "ip",
            "-o",
            "link",
            "show",
            "eth0",
        ])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let index = line
        .split_once("@if")
        .and_then(|(_, r)| r.split(':').next())
        .unwrap_or_else(|| panic!("no peer index in {line:?}"))
        .to_string();
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let (i, rest) = l.split_once(": ")?;
            (i == index).then(|| rest.split(['@', ':']).next().unwrap().to_string())
        })
        .unwrap_or_else(|| panic!("no host link with index {index}"))
}

#[test]
fn host_drift_is_repaired_by_the_resync() {
    let (_registry, agent) = start("");
    agent
        .write_manifest("keep.yaml", &container("keep", IDLE, ""))
        .unwrap();
    agent
        .write_manifest("wired.yaml", &container("wired", IDLE, ""))
        .unwrap();
    let running = |n: &str| {
        agent
            .wait_container(n, "running", |c| c["state"] == "running")
            .unwrap()
    };
    let keep = running("keep");
    let wired = running("wired");

    // A process in a cgroup of berth's parent that no record owns.
    let parent = Path::new("/sys/fs/cgroup/pids").join(&agent.prefix);
    assert!(
        parent.is_dir(),
        "no pids cgroup parent {}",
        parent.display()
    );
    let cgroup = parent.join("stray-0badf00d");
    std::fs::create_dir(&cgroup).unwrap();
    let mut stray = Stray {
        child: Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
        cgroup: cgroup.clone(),
    };
    let pid = stray.child.id();
    // From here on the agent may kill it at any moment: its next resync does.
    std::fs::write(cgroup.join("cgroup.procs"), pid.to_string()).unwrap();
    // A container's veth deleted by hand.
    let veth = host_veth(pid_of(&wired));
    assert!(veth.starts_with(agent.net_prefix()), "{veth}");
    let status = Command::new("ip")
        .args(["link", "del", &veth])
        .status()
        .unwrap();
    assert!(status.success());

    // Within a resync (30s): the stray is killed and its cgroup removed; wired is made again.
    let status = agent
        .wait_for("the stray to be killed", Duration::from_secs(45), |_| {
            stray.child.try_wait().ok().flatten()
        })
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    agent
        .wait_for("its cgroup to go", Duration::from_secs(10), |_| {
            (!cgroup.exists()).then_some(())
        })
        .unwrap();
    let log = agent.log();
    assert!(
        log.lines().any(|l| l
            .contains("killing processes berth has no record of under its cgroup parent")
            && l.contains("cgroup=stray-0badf00d")
            && l.contains(&pid.to_string())),
        "{log}"
    );
    let c = agent
        .wait_container("wired", "recreated", |c| {
            c["state"] == "running" && c["id"] != wired["id"]
        })
        .unwrap();
    assert!(!alive(pid_of(&wired)));
    assert!(log_lines(&agent, "its network link was deleted", "wired") >= 1);
    let new_veth = host_veth(pid_of(&c));
    assert!(links_with(agent.net_prefix()).contains(&new_veth));
    // keep was not touched by either repair.
    let c = agent.container("keep").unwrap();
    assert_eq!(
        (
            c["state"].as_str(),
            c["pid"].as_i64(),
            c["restartCount"].as_i64()
        ),
        (Some("running"), keep["pid"].as_i64(), Some(0))
    );
    assert_eq!(planned(&agent, "keep"), ["create"]);
    assert_eq!(planned(&agent, "wired"), ["create", "recreate"]);
    assert_eq!(planned(&agent, "stray-0badf00d"), ["kill-stray"]);
    drop(stray);
    finish(agent);
}
