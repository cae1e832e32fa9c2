//! A killed shim: the container's whole cgroup is killed before one new copy starts, twenty
//! times, and once while the agent is down.

use std::collections::BTreeSet;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::*;

/// The `sleep` processes (not zombies) in the cgroups of this agent's containers.
fn sleeps_in_cgroups(agent: &Agent) -> BTreeSet<i32> {
    agent
        .cgroup_dirs()
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
                && alive(*p)
        })
        .collect()
}

#[test]
fn a_killed_shim_never_leaves_two_copies() {
    let (_registry, mut agent) = start("restartBackoff: {initial: 100ms, max: 200ms}\n");
    agent
        .write_manifest(
            "victim.yaml",
            &format!("apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: victim\nspec:\n  image: {IMAGE}\n  command: [sleep, '100000']\n  stopTimeout: 1s\n"),
        )
        .unwrap();
    let mut c = agent
        .wait_container("victim", "running", |c| c["state"] == "running")
        .unwrap();
    for round in 1..=20 {
        let pid = pid_of(&c);
        let shim = ppid(pid);
        assert!(
            cmdline(shim).contains(" shim "),
            "parent {shim} of {pid} is not a shim: {}",
            cmdline(shim)
        );
        assert_eq!(sleeps_in_cgroups(&agent), BTreeSet::from([pid]));
        kill(Pid::from_raw(shim), Signal::SIGKILL).unwrap();
        c = agent
            .wait_for(
                &format!("round {round}: a new copy"),
                Duration::from_secs(20),
                |a| {
                    let sleeps = sleeps_in_cgroups(a);
                    assert!(sleeps.len() <= 1, "round {round}: two copies: {sleeps:?}");
                    a.container("victim").filter(|c| {
                        c["state"] == "running" && c["restartCount"] == round && c["pid"] != pid
                    })
                },
            )
            .unwrap();
        assert!(!alive(pid), "round {round}: the old copy {pid} still runs");
        assert_eq!(sleeps_in_cgroups(&agent), BTreeSet::from([pid_of(&c)]));
    }
    assert_eq!(
        log_lines(&agent, "the container's shim is gone", "victim"),
        20,
        "{}",
        agent.log()
    );

    // The shim dies while the agent is down: the agent that comes back finds the container
    // running without it, kills it and starts one copy.
    let pid = pid_of(&c);
    agent.kill9().unwrap();
    kill(Pid::from_raw(ppid(pid)), Signal::SIGKILL).unwrap();
    agent.restart().unwrap();
    let c = agent
        .wait_for(
            "a new copy after the agent's restart",
            Duration::from_secs(20),
            |a| {
                let sleeps = sleeps_in_cgroups(a);
                assert!(sleeps.len() <= 1, "two copies: {sleeps:?}");
                a.container("victim").filter(|c| {
                    c["state"] == "running" && c["restartCount"] == 21 && c["pid"] != pid
                })
            },
        )
        .unwrap();
    assert!(!alive(pid), "the old copy {pid} still runs");
    assert_eq!(sleeps_in_cgroups(&agent), BTreeSet::from([pid_of(&c)]));
    assert_eq!(
        log_lines(&agent, "the container's shim is gone", "victim"),
        21
    );
    finish(agent);
}
