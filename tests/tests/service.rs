//! End to end: berth as a system service. A service manager stops a service by killing every
//! process in its cgroup (systemd's default `KillMode=control-group`); the agent's shims and
//! containers must not be in that cgroup on any hierarchy, so they keep running and the next
//! agent adopts them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_tests::agent::Agent;
use berth_tests::{push_busybox, Registry};

/// The roots of the cgroup hierarchies: `/sys/fs/cgroup` itself on a pure v2 host, else each
/// mounted hierarchy under it (v1 controllers, `name=systemd`, the hybrid `unified`).
fn hierarchy_roots() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    let mut roots: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("list /sys/fs/cgroup")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect();
    roots.sort();
    roots
}

/// The test's service cgroup dirs, removed even when the test fails half way.
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for d in &self.0 {
            for pid in procs(d) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn killing_the_agents_whole_cgroup_leaves_every_container_running() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let mut agent = Agent::start(&registry).unwrap();

    // The agent's service cgroup, on every hierarchy, as systemd makes it.
    let service = format!("{}-service", agent.prefix);
    let dirs: Vec<PathBuf> = hierarchy_roots().iter().map(|r| r.join(&service)).collect();
    let agent_pid = agent.pid().expect("the agent runs");
    let _cleanup = RemoveOnDrop(dirs.clone());
    for d in &dirs {
        std::fs::create_dir(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        // A v1 cpuset cgroup takes no process before it has cpus and mems.
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(value) = std::fs::read_to_string(d.parent().unwrap().join(file)) {
                std::fs::write(d.join(file), value.trim()).unwrap();
            }
        }
        std::fs::write(d.join("cgroup.procs"), agent_pid.to_string())
            .unwrap_or_else(|e| panic!("move the agent into {}: {e}", d.display()));
    }

    for name in ["a", "b"] {
        agent
            .write_manifest(
                &format!("{name}.yaml"),
                &format!("apiVersion: berth/v1\nkind: Container\nmetadata: {{name: {name}}}\nspec:\n  image: docker.io/library/busybox:1.36\n  command: [sleep, '1000']\n  stopTimeout: 1s\n"),
            )
            .unwrap();
    }
    let mut inits = Vec::new();
    for name in ["a", "b"] {
        let c = agent
            .wait_container(name, "running", |c| c["state"] == "running")
            .unwrap();
        inits.push(c["pid"].as_i64().unwrap() as i32);
    }
    // Neither a container nor its shim is in the service's cgroup, on any hierarchy.
    for &init in &inits {
        for pid in [init, parent_of(init)] {
            let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            assert!(
                !cgroups.contains(&service),
                "process {pid} is in the agent's cgroup:\n{cgroups}"
            );
        }
    }

    // The service manager stops the service: every process of its cgroup, SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<i32> = dirs.iter().flat_map(|d| procs(d)).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes left in {service}: {left:?}"
        );
        for pid in left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    agent.kill9().unwrap(); // reaps the killed agent
    for &init in &inits {
        assert!(
            Path::new(&format!("/proc/{init}")).exists(),
            "container {init} died with the agent's cgroup"
        );
    }
    for d in &dirs {
        std::fs::remove_dir(d).unwrap_or_else(|e| panic!("remove {}: {e}", d.display()));
    }

    // The next agent adopts them: same processes, nothing restarted.
    agent.restart().unwrap();
    for (name, &init) in ["a", "b"].iter().zip(&inits) {
        let c = agent
            .wait_container(name, "adopted", |c| c["state"] == "running")
            .unwrap();
        assert_eq!(
            (c["pid"].as_i64(), c["restartCount"].as_i64()),
            (Some(i64::from(init)), Some(0))
        );
    }
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}

/// The datagrams a service manager would read from `NOTIFY_SOCKET`, one per send.
fn next_message(socket: &std::os::unix::net::UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification before the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn the_agent_speaks_systemds_notify_protocol() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let sockets = tempfile::tempdir().unwrap();
    let path = sockets.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let path_text = path.display().to_string();
    let mut agent = Agent::start_with_env(
        &registry,
        "",
        &[("NOTIFY_SOCKET", &path_text), ("WATCHDOG_USEC", "400000")],
    )
    .unwrap();

    // READY=1 after the first full pass, with the summary.
    let first = next_message(&socket);
    assert_eq!(first, "READY=1\nSTATUS=0 running, 0 exited, 0 failed\n");
    // Fed from the loop at half of WATCHDOG_USEC (400ms): never late enough to expire,
    // never a flood.
    let mut feeds = Vec::new();
    while feeds.len() < 5 {
        if next_message(&socket) == "WATCHDOG=1\n" {
            feeds.push(Instant::now());
        }
    }
    for gap in feeds.windows(2).map(|w| w[1] - w[0]) {
        assert!(
            gap >= Duration::from_millis(100) && gap < Duration::from_millis(400),
            "WATCHDOG=1 {gap:?} after the last one"
        );
    }
    // The summary follows the host.
    agent
        .write_manifest(
            "a.yaml",
            "apiVersion: berth/v1\nkind: Container\nmetadata: {name: a}\nspec:\n  image: docker.io/library/busybox:1.36\n  command: [sleep, '1000']\n  stopTimeout: 1s\n",
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = next_message(&socket);
        if m == "STATUS=1 running, 0 exited, 0 failed\n" {
            break;
        }
        assert!(Instant::now() < deadline, "no running status; last: {m:?}");
    }
    // SIGTERM: STOPPING=1, and the container keeps running.
    let pid = agent.container("a").unwrap()["pid"].as_i64().unwrap();
    agent.stop().unwrap();
    let mut stopping = String::new();
    while !stopping.starts_with("STOPPING=1") {
        stopping = next_message(&socket);
    }
    assert_eq!(
        stopping,
        "STOPPING=1\nSTATUS=stopping; containers keep running\n"
    );
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    agent.restart().unwrap();
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}

#[test]
fn the_systemd_unit_verifies() {
    // As installed, with ExecStart pointing at this build.
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/systemd/berth.service"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = berth_tests::agent::berth_bin();
    let unit = unit.replace(
        "ExecStart=/usr/bin/berth agent",
        &format!("ExecStart={} agent", bin.display()),
    );
    assert!(unit.contains(&format!("ExecStart={} agent", bin.display())));
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=always",
        "KillMode=mixed",
        "Delegate=yes",
    ] {
        assert!(unit.contains(line), "the unit says {line}");
    }
    let path = dir.path().join("berth.service");
    std::fs::write(&path, unit).unwrap();
    let systemd_analyze = berth_tests::require_tool("systemd-analyze", "systemd").unwrap();
    let out = std::process::Command::new(systemd_analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
