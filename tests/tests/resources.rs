//! End to end: limits hold on this host's cgroup layout — a memory hog is OOM-killed and
//! reported so, a fork bomb stops at the pids limit, a CPU hog under `cpus: 0.5` gets about
//! half a core — and `kill -9` of the agent restarts nothing and loses no log line.

use std::time::{Duration, Instant};

use berth_tests::agent::Agent;
use berth_tests::{push_busybox, Registry};
use serde_json::Value;

fn container(name: &str, script: &str, extra: &str) -> String {
    format!(
        "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: docker.io/library/busybox:1.36\n  command: [sh, -c]\n  args: [\"{script}\"]\n  stopTimeout: 1s\n{extra}"
    )
}

fn cgroup_file(agent: &Agent, controller: &str, id: &str, file: &str) -> String {
    let dir = agent
        .cgroup_dirs()
        .into_iter()
        .find(|d| d.starts_with(format!("/sys/fs/cgroup/{controller}")) && d.ends_with(id))
        .unwrap_or_else(|| panic!("no {controller} cgroup for {id}"));
    std::fs::read_to_string(dir.join(file)).unwrap()
}

#[test]
fn memory_pids_and_cpu_limits_hold() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let agent = Agent::start(&registry).unwrap();

    // 64 MiB of shell variable in a 16 MiB container.
    agent
        .write_manifest(
            "hog.yaml",
            &container(
                "hog",
                "x=$(head -c 67108864 /dev/zero | tr '\\\\0' a); echo survived",
                "  restartPolicy: Never\n  resources:\n    memory: 16Mi\n",
            ),
        )
        .unwrap();
    let c = agent
        .wait_container("hog", "OOM-killed", |c| c["state"] == "exited")
        .unwrap();
    assert_eq!(
        (c["reason"].as_str(), c["exitCode"].as_i64()),
        (Some("OOMKilled"), Some(137)),
        "{c}"
    );

    // A fork bomb in a pids: 20 container: the limit holds and the container survives it.
    agent
        .write_manifest(
            "bomb.yaml",
            &container(
                "bomb",
                "(for i in $(seq 100); do sleep 1000 & done) 2>/dev/null; echo spawned; exec tail -f /dev/null",
                "  restartPolicy: Never\n  resources:\n    pids: 20\n",
            ),
        )
        .unwrap();
    let c = agent
        .wait_container("bomb", "running", |c| c["state"] == "running")
        .unwrap();
    let id = c["id"].as_str().unwrap().to_string();
    agent
        .wait_for(
            "the fork bomb to be refused",
            Duration::from_secs(20),
            |a| {
                let refused: u64 = cgroup_file(a, "pids", &id, "pids.events")
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                (refused > 0).then_some(())
            },
        )
        .unwrap();
    assert_eq!(cgroup_file(&agent, "pids", &id, "pids.max").trim(), "20");
    let current: u64 = cgroup_file(&agent, "pids", &id, "pids.current")
        .trim()
        .parse()
        .unwrap();
    assert!(
        (15..=20).contains(&current),
        "{current} processes: the bomb did not fill the limit, or passed it"
    );
    assert_eq!(agent.container("bomb").unwrap()["state"], "running");

    // A CPU hog under cpus: 0.5 uses about half a core.
    agent
        .write_manifest(
            "cpu.yaml",
            &container(
                "cpu",
                "while :; do :; done",
                "  restartPolicy: Never\n  resources:\n    cpus: 500m\n",
            ),
        )
        .unwrap();
    let c = agent
        .wait_container("cpu", "running", |c| c["state"] == "running")
        .unwrap();
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(
        cgroup_file(&agent, "cpu", &id, "cpu.cfs_quota_us").trim(),
        "50000"
    );
    let usage = |a: &Agent| -> u64 {
        cgroup_file(a, "cpuacct", &id, "cpuacct.usage")
            .trim()
            .parse()
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    let (u0, t0) = (usage(&agent), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let share = (usage(&agent) - u0) as f64 / t0.elapsed().as_nanos() as f64;
    assert!(
        (0.35..=0.6).contains(&share),
        "cpu share {share:.2}, expected about 0.5"
    );

    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}

fn counter_lines(agent: &Agent) -> Vec<u64> {
    agent
        .get("/v1/containers/tick/logs")
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["log"]
                .as_str()
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn kill_9_of_the_agent_restarts_nothing_and_loses_no_log() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let mut agent = Agent::start(&registry).unwrap();
    agent
        .write_manifest(
            "tick.yaml",
            &container(
                "tick",
                "i=0; while :; do echo $i; i=$((i+1)); sleep 0.1; done",
                "  restartPolicy: Always\n",
            ),
        )
        .unwrap();
    let c = agent
        .wait_container("tick", "running", |c| c["state"] == "running")
        .unwrap();
    let (pid, id) = (
        c["pid"].as_i64().unwrap(),
        c["id"].as_str().unwrap().to_string(),
    );
    agent
        .wait_for("some output", Duration::from_secs(10), |a| {
            (counter_lines(a).len() >= 5).then_some(())
        })
        .unwrap();

    agent.kill9().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the container died with the agent"
    );
    agent.restart().unwrap();
    let c = agent
        .wait_container("tick", "adopted", |c| c["state"] == "running")
        .unwrap();
    assert_eq!(
        (
            c["pid"].as_i64(),
            c["id"].as_str(),
            c["restartCount"].as_i64()
        ),
        (Some(pid), Some(id.as_str()), Some(0))
    );
    let before = counter_lines(&agent).len();
    agent
        .wait_for("more output", Duration::from_secs(10), |a| {
            (counter_lines(a).len() > before + 5).then_some(())
        })
        .unwrap();
    let lines = counter_lines(&agent);
    let expected: Vec<u64> = (0..lines.len() as u64).collect();
    assert_eq!(lines, expected, "the log has a gap or a restart");

    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}
