//! Health probes on real containers (root): busybox containers started through `Runtime`
//! (the real shim, namespaces, cgroups), probed with `Runtime::exec_probe` (the real
//! `berth exec-probe` helper) and `health::{tcp_probe, http_probe}`, and what the kernel says
//! about the probe's process compared with the container's own init.
//!
//! Needs root, `/bin/busybox` (busybox-static) and the `berth` binary (`cargo build -p berth`).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_engine::health::{self, HealthError, NetTarget, ProbeResult};
use berth_engine::runtime::security::SecurityConfig;
use berth_engine::runtime::{ContainerRequest, NetworkNamespace};
use common::lab::{status_fields, Lab, DOCKER_CAPS};

/// The container's init: a shell waiting on a long sleep. A waiting shell also reaps
/// whatever a probe leaves to it.
const IDLE: &str = "sleep 1000 & wait";

/// A started container to probe.
struct Running {
    id: String,
    init_pid: i32,
}

async fn start(lab: &Lab, req: ContainerRequest<'_>) -> Running {
    let id = req.id.to_string();
    let started = lab
        .runtime
        .start(req)
        .await
        .unwrap_or_else(|e| panic!("start container {id}: {e}"));
    Running {
        id,
        init_pid: started.init_pid,
    }
}

/// Kills the container and removes what it left.
async fn stop(lab: &Lab, c: Running) {
    lab.runtime
        .stop(&c.id, c.init_pid, libc::SIGKILL, Duration::from_secs(5))
        .await;
    lab.remove(&c.id);
}

fn healthy(output: String) -> ProbeResult {
    ProbeResult {
        healthy: true,
        output,
        exit_code: None,
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

async fn sh_probe(lab: &Lab, c: &Running, script: &str, timeout: Duration) -> ProbeResult {
    lab.runtime
        .exec_probe(&c.id, c.init_pid, &strings(&["sh", "-c", script]), timeout)
        .await
        .unwrap_or_else(|e| panic!("exec probe {script:?}: {e}"))
}

/// The container's processes (host pids), once the cgroup holds `n` of them.
async fn wait_for_pids(lab: &Lab, id: &str, n: usize) -> Vec<i32> {
    let cgroup = lab.runtime.cgroups().open(id);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = cgroup.pids().expect("read container pids");
        if pids.len() == n || Instant::now() > deadline {
            return pids;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Processes on the host whose command line mentions `dir` (the lab's): shims and helpers.
fn processes_mentioning(dir: &Path, what: &str) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .map(cmdline)
        .filter(|c| c.contains(&dir) && c.contains(what))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_probe_exit_codes_output_and_missing_commands() {
    let lab = Lab::new("health");
    let c = start(
        &lab,
        lab.request("hx-exit", IDLE, SecurityConfig::default()),
    )
    .await;
    let timeout = Duration::from_secs(5);

    assert_eq!(
        sh_probe(&lab, &c, "echo ok; exit 0", timeout).await,
        ProbeResult {
            healthy: true,
            output: "ok\n".into(),
            exit_code: Some(0)
        }
    );
    assert_eq!(
        sh_probe(&lab, &c, "exit 3", timeout).await,
        ProbeResult {
            healthy: false,
            output: String::new(),
            exit_code: Some(3)
        }
    );
    // stdout and stderr are one stream, in the order written.
    assert_eq!(
        sh_probe(
            &lab,
            &c,
            "echo out; echo err >&2; echo out2; exit 1",
            timeout
        )
        .await,
        ProbeResult {
            healthy: false,
            output: "out\nerr\nout2\n".into(),
            exit_code: Some(1)
        }
    );
    // Killed by a signal: 128 + the signal, as a shell reports it.
    assert_eq!(
        sh_probe(&lab, &c, "kill -9 $$", timeout).await,
        ProbeResult {
            healthy: false,
            output: String::new(),
            exit_code: Some(137)
        }
    );
    // Docker keeps 4096 bytes of output; the rest is read and dropped.
    let long = sh_probe(&lab, &c, "head -c 100000 /dev/zero | tr '\\0' a", timeout).await;
    assert_eq!(
        (long.healthy, long.exit_code, long.output.len()),
        (true, Some(0), 4096)
    );
    assert!(long.output.bytes().all(|b| b == b'a'));

    let missing = lab
        .runtime
        .exec_probe(&c.id, c.init_pid, &strings(&["nosuch", "arg"]), timeout)
        .await
        .expect("a missing command is an unhealthy probe, not an error");
    assert_eq!(
        missing,
        ProbeResult {
            healthy: false,
            output: "exec: \"nosuch\": executable file not found in $PATH".into(),
            exit_code: None
        }
    );
    let err = lab
        .runtime
        .exec_probe(&c.id, c.init_pid, &[], timeout)
        .await
        .expect_err("an empty command is refused");
    assert_eq!(
        err.to_string(),
        "exec probe in container hx-exit: no command given (hint: set the health check's command)"
    );
    stop(&lab, c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_probe_runs_as_the_container_in_its_namespaces_and_cgroups() {
    let lab = Lab::new("health");
    let security = SecurityConfig {
        user: Some("app".into()),
        ..SecurityConfig::default()
    };
    let mut req = lab.request("hx-inside", IDLE, security);
    req.hostname = "probe-host";
    req.process.env = strings(&["PATH=/bin", "GREETING=from-the-container"]);
    req.process.cwd = "/tmp".into();
    let c = start(&lab, req).await;

    let script = "echo host=$(hostname) cwd=$(pwd) greeting=$GREETING home=$HOME; \
                  for ns in cgroup ipc mnt net pid uts; do echo $ns=$(readlink /proc/self/ns/$ns); done; \
                  echo init=$(tr '\\0' ' ' </proc/1/cmdline); \
                  echo cgroups:; cat /proc/self/cgroup; echo status:; cat /proc/self/status";
    let r = sh_probe(&lab, &c, script, Duration::from_secs(5)).await;
    assert_eq!((r.healthy, r.exit_code), (true, Some(0)), "{}", r.output);
    let (head, status) = r.output.split_once("status:\n").expect("status section");
    let (head, cgroups) = head.split_once("cgroups:\n").expect("cgroups section");

    // The container's hostname, working dir, environment and the user's home.
    let mut lines = head.lines();
    assert_eq!(
        lines.next(),
        Some("host=probe-host cwd=/tmp greeting=from-the-container home=/home/app")
    );
    // The same namespaces as the container's init, as the host sees them.
    for ns in ["cgroup", "ipc", "mnt", "net", "pid", "uts"] {
        let init_ns = std::fs::read_link(format!("/proc/{}/ns/{ns}", c.init_pid))
            .unwrap_or_else(|e| panic!("read the init's {ns} namespace: {e}"));
        assert_eq!(
            lines.next(),
            Some(format!("{ns}={}", init_ns.display()).as_str()),
            "{ns} namespace"
        );
    }
    // pid 1 of the probe's pid namespace is the container's init.
    assert_eq!(lines.next(), Some("init=sh -c sleep 1000 & wait"));
    // The same cgroups as the init, in every hierarchy.
    let init_cgroups =
        std::fs::read_to_string(format!("/proc/{}/cgroup", c.init_pid)).expect("init's cgroups");
    assert_eq!(cgroups, init_cgroups);

    // The container's own profile, field for field as its init has it, and Docker's values.
    let probe = status_fields(status);
    let init = status_fields(
        &std::fs::read_to_string(format!("/proc/{}/status", c.init_pid)).expect("init's status"),
    );
    for field in [
        "Uid",
        "Gid",
        "Groups",
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
    ] {
        assert_eq!(probe[field], init[field], "{field}");
    }
    assert_eq!(probe["Uid"], "1000\t1000\t1000\t1000");
    assert_eq!(probe["Gid"], "1000\t1000\t1000\t1000");
    assert_eq!(probe["Groups"], "44");
    assert_eq!(probe["CapBnd"], DOCKER_CAPS);
    assert_eq!(probe["CapEff"], "0000000000000000", "a non-root user");
    assert_eq!(
        (probe["NoNewPrivs"].as_str(), probe["Seccomp"].as_str()),
        ("1", "2")
    );
    // Inside the container's pid namespace: one level of pids in the container's /proc.
    let ns_pid: i32 = probe["NSpid"].parse().expect("one NSpid field");
    assert!((2..1000).contains(&ns_pid), "pid in the container {ns_pid}");
    // No signal stays ignored from berth's own binary (Rust ignores SIGPIPE): the command,
    // exec'd directly, starts with the defaults.
    let sig = lab
        .runtime
        .exec_probe(
            &c.id,
            c.init_pid,
            &strings(&["grep", "SigIgn", "/proc/self/status"]),
            Duration::from_secs(5),
        )
        .await
        .expect("exec probe");
    assert_eq!(sig.output, "SigIgn:\t0000000000000000\n");

    // While a probe runs, the host sees its process in the container's cgroup.
    let cgroup = lab.runtime.cgroups().open(&c.id);
    let (slow, seen) = tokio::join!(
        sh_probe(&lab, &c, "exec sleep 2", Duration::from_secs(5)),
        async {
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                let pids = cgroup.pids().expect("container pids");
                if let Some(p) = pids.iter().find(|p| cmdline(**p) == "sleep 2 ") {
                    break Some(*p);
                }
                if Instant::now() > deadline {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    );
    assert_eq!(slow.exit_code, Some(0), "{}", slow.output);
    let seen = seen.expect("the probe's sleep was never in the container's cgroup");
    assert!(
        !cgroup.pids().expect("container pids").contains(&seen),
        "the probe is over, its process is gone"
    );
    stop(&lab, c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_probe_timeout_kills_the_command_and_what_it_started() {
    let lab = Lab::new("health");
    let c = start(
        &lab,
        lab.request("hx-timeout", IDLE, SecurityConfig::default()),
    )
    .await;
    let before = wait_for_pids(&lab, &c.id, 2).await;
    assert_eq!(before.len(), 2, "init and its sleep: {before:?}");

    let t0 = Instant::now();
    let r = sh_probe(
        &lab,
        &c,
        "sleep 30 & sleep 20; echo never",
        Duration::from_millis(500),
    )
    .await;
    let took = t0.elapsed();
    assert_eq!(
        r,
        ProbeResult {
            healthy: false,
            output: "probe timed out after 500ms".into(),
            exit_code: None
        }
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(2000),
        "the probe took {took:?}"
    );
    // Neither the shell nor the sleeps it started stay behind, nor the helper.
    let after = wait_for_pids(&lab, &c.id, 2).await;
    assert_eq!(after, before);
    assert_eq!(
        processes_mentioning(lab.dir.path(), "exec-probe"),
        Vec::<String>::new()
    );

    // The agent giving up on a probe (its future dropped) kills the helper, and the
    // command with it (it asked for SIGKILL when its parent dies).
    let cmd = strings(&["sleep", "30"]);
    let mut probe =
        Box::pin(
            lab.runtime
                .exec_probe(&c.id, c.init_pid, &cmd, Duration::from_secs(10)),
        );
    let cgroup = lab.runtime.cgroups().open(&c.id);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::select! {
            r = &mut probe => panic!("the probe finished: {r:?}"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        let pids = cgroup.pids().expect("container pids");
        if pids.iter().any(|p| cmdline(*p) == "sleep 30 ") {
            break;
        }
        assert!(Instant::now() < deadline, "the probe's sleep never started");
    }
    drop(probe);
    let after = wait_for_pids(&lab, &c.id, 2).await;
    assert_eq!(after, before);
    stop(&lab, c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_refuse_a_pid_that_is_not_the_containers_init() {
    let lab = Lab::new("health");
    let c = start(
        &lab,
        lab.request("hx-refuse", IDLE, SecurityConfig::default()),
    )
    .await;
    let pids = wait_for_pids(&lab, &c.id, 2).await;
    let cmd = strings(&["true"]);
    let timeout = Duration::from_secs(5);
    let hint = "(hint: the container may have restarted; probe the init pid of its latest start)";

    // A host process: not in the container's cgroup.
    let me = std::process::id() as i32;
    let err = lab
        .runtime
        .exec_probe(&c.id, me, &cmd, timeout)
        .await
        .expect_err("the test process is not the init");
    let first_dir = lab.runtime.cgroups().open(&c.id).paths()[0].clone();
    assert_eq!(
        err.to_string(),
        format!(
            "probe container hx-refuse: pid {me} is not the container's init: it is not listed in {}/cgroup.procs {hint}",
            first_dir.display()
        )
    );
    // A process of the container that is not its init.
    let sleeper = *pids
        .iter()
        .find(|p| **p != c.init_pid)
        .expect("the init's sleep");
    let err = lab
        .runtime
        .exec_probe(&c.id, sleeper, &cmd, timeout)
        .await
        .expect_err("the init's child is not the init");
    assert!(
        matches!(&err, HealthError::NotInit { pid, reason, .. }
            if *pid == sleeper && reason.starts_with("it is pid ") && reason.ends_with(" in its pid namespace, not 1")),
        "{err}"
    );
    // A process that is gone.
    let mut gone = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let gone_pid = gone.id() as i32;
    gone.wait().expect("reap true");
    let err = lab
        .runtime
        .exec_probe(&c.id, gone_pid, &cmd, timeout)
        .await
        .expect_err("a gone process is refused");
    assert_eq!(
        err.to_string(),
        format!("probe container hx-refuse: its init process {gone_pid} is gone (hint: the container has stopped or is restarting)")
    );
    // The network probes check the pid the same way.
    let target = NetTarget::Init {
        pid: me,
        cgroup: lab.runtime.cgroups().open(&c.id),
    };
    let err = health::tcp_probe(target, 80, timeout)
        .await
        .expect_err("the test process is not the init");
    assert!(
        matches!(err, HealthError::NotInit { pid, .. } if pid == me),
        "{err}"
    );
    // And the real init passes.
    let ok = lab
        .runtime
        .exec_probe(&c.id, c.init_pid, &cmd, timeout)
        .await
        .expect("the init is accepted");
    assert_eq!(ok.exit_code, Some(0));
    stop(&lab, c).await;
}

/// A free port on the host's loopback (nothing listens on it once this returns).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}

/// Polls `probe` until it is healthy or 10s have passed; the last result.
async fn until_healthy<F, Fut>(mut probe: F) -> ProbeResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = health::Result<ProbeResult>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = probe().await.expect("network probe");
        if r.healthy || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_http_probes_run_in_the_containers_network_namespace() {
    let lab = Lab::new("health");
    let second = Duration::from_secs(1);
    // The host's loopback has its own server on the web port, and nothing on the others.
    let host_web = TcpListener::bind("127.0.0.1:0").expect("host listener");
    let web = host_web.local_addr().expect("host listener address").port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = host_web.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 418 I'm a teapot\r\n\r\nthe host");
        }
    });
    let (closed, silent) = (free_port(), free_port());

    // A bridge-style container: a pinned namespace the container joins.
    let pin = lab.netns("web");
    let script = format!(
        "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && \
         (httpd -f -p {web} -h /tmp/www & nc -ll -p {silent} -e sleep 100 & wait)"
    );
    let mut req = lab.request("hn-web", &script, SecurityConfig::default());
    req.network = NetworkNamespace::Join(pin.clone());
    let c = start(&lab, req).await;
    let target = lab
        .runtime
        .net_target(&c.id, c.init_pid)
        .expect("network target");
    assert!(
        matches!(&target, NetTarget::Pinned(p) if *p == pin),
        "{target:?}"
    );

    let tcp = until_healthy(|| health::tcp_probe(target.clone(), web, second)).await;
    assert_eq!(tcp, healthy(format!("connected to 127.0.0.1:{web}")));
    assert_eq!(
        health::tcp_probe(target.clone(), closed, second)
            .await
            .expect("tcp probe"),
        ProbeResult {
            healthy: false,
            output: format!("connect 127.0.0.1:{closed}: connection refused"),
            exit_code: None
        }
    );
    let ok = until_healthy(|| health::http_probe(target.clone(), web, "/", second)).await;
    assert_eq!(ok, healthy("HTTP/1.1 200 OK\nhello".to_string()));
    let missing = health::http_probe(target.clone(), web, "/nope", second)
        .await
        .expect("http probe");
    assert!(!missing.healthy);
    assert_eq!(
        missing.output.lines().next(),
        Some("HTTP/1.1 404 Not Found")
    );

    // A listener that accepts and never answers (each connection gets a silent `sleep`): the
    // probe gives up at its timeout.
    assert_eq!(
        until_healthy(|| health::tcp_probe(target.clone(), silent, second)).await,
        healthy(format!("connected to 127.0.0.1:{silent}"))
    );
    let t0 = Instant::now();
    let slow = health::http_probe(target.clone(), silent, "/", Duration::from_millis(500))
        .await
        .expect("http probe");
    let took = t0.elapsed();
    assert_eq!(
        slow,
        ProbeResult {
            healthy: false,
            output: "probe timed out after 500ms".into(),
            exit_code: None
        }
    );
    assert!(took < Duration::from_secs(2), "the probe took {took:?}");

    // The same ports on the host's own loopback are another world.
    assert_eq!(
        health::http_probe(NetTarget::Host, web, "/", second)
            .await
            .expect("host http probe"),
        ProbeResult {
            healthy: false,
            output: "HTTP/1.0 418 I'm a teapot\nthe host".into(),
            exit_code: None
        }
    );
    assert_eq!(
        health::tcp_probe(NetTarget::Host, closed, second)
            .await
            .expect("host tcp probe")
            .output,
        format!("connect 127.0.0.1:{closed}: connection refused")
    );

    let err = health::http_probe(target.clone(), web, "health z", second)
        .await
        .expect_err("a path with a space is refused");
    assert!(matches!(err, HealthError::InvalidPath { .. }), "{err}");
    stop(&lab, c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_probes_enter_an_unpinned_namespace_through_the_init() {
    let lab = Lab::new("health");
    let web = free_port();
    let script = format!(
        "mkdir -p /tmp/www && echo alone > /tmp/www/index.html && exec httpd -f -p {web} -h /tmp/www"
    );
    // networkMode none: a namespace of its own with only lo, no pin.
    let c = start(
        &lab,
        lab.request("hn-none", &script, SecurityConfig::default()),
    )
    .await;
    let target = lab
        .runtime
        .net_target(&c.id, c.init_pid)
        .expect("network target");
    assert!(
        matches!(&target, NetTarget::Init { pid, .. } if *pid == c.init_pid),
        "{target:?}"
    );
    let second = Duration::from_secs(1);
    let ok = until_healthy(|| health::http_probe(target.clone(), web, "/", second)).await;
    assert_eq!(ok, healthy("HTTP/1.1 200 OK\nalone".to_string()));
    assert_eq!(
        health::tcp_probe(NetTarget::Host, web, second)
            .await
            .expect("host tcp probe")
            .output,
        format!("connect 127.0.0.1:{web}: connection refused")
    );
    stop(&lab, c).await;
}
