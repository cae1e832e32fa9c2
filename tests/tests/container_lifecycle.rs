//! End to end: a manifest becomes a running container; edits recreate it, identical saves do
//! nothing, exits restart it, an agent restart adopts it, and deleting the manifest removes
//! it and everything it left on the host.

use std::path::Path;
use std::time::Duration;

use berth_tests::agent::Agent;
use berth_tests::{push_busybox, Registry};
use serde_json::Value;

fn web(args: &str) -> String {
    format!(
        r#"apiVersion: berth/v1
kind: Container
metadata:
  name: web
spec:
  image: docker.io/library/busybox:1.36
  command: [sh, -c]
  args: ["{args}"]
  env:
    GREETING: hello
  workingDir: /tmp
  resources:
    memory: 64Mi
  restartPolicy: Always
  stopTimeout: 5s
"#
    )
}

/// Traps SIGTERM so a stop is graceful, and keeps running.
const SERVE: &str =
    "trap 'exit 0' TERM; echo started; echo ready >&2; while :; do sleep 1 & wait $!; done";

fn pid_of(c: &Value) -> i32 {
    c["pid"].as_i64().expect("running container has a pid") as i32
}

fn ns(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

fn registry_digest(registry: &Registry, repo: &str, tag: &str) -> String {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{}/{repo}:{tag}", registry.host()))
        .output()
        .expect("run skopeo inspect");
    assert!(
        out.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    use sha2_digest::hex_sha256;
    format!("sha256:{}", hex_sha256(&out.stdout))
}

mod sha2_digest {
    /// sha256 through coreutils, to check berth's digest with an independent tool.
    pub fn hex_sha256(data: &[u8]) -> String {
        use std::io::Write;
        let mut child = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run sha256sum");
        child.stdin.take().unwrap().write_all(data).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }
}

#[test]
fn manifest_to_running_container_and_back() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let mut agent = Agent::start(&registry).expect("start agent");

    // Create.
    agent.write_manifest("web.yaml", &web(SERVE)).unwrap();
    let c = agent
        .wait_container("web", "running", |c| c["state"] == "running")
        .unwrap();
    let pid = pid_of(&c);
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["image"], "docker.io/library/busybox:1.36");
    assert_eq!(
        c["imageDigest"].as_str().unwrap(),
        registry_digest(&registry, "library/busybox", "1.36")
    );
    assert!(
        c["specHash"].as_str().unwrap().starts_with("sha256:"),
        "{c}"
    );
    assert_eq!(c["restartCount"], 0);
    assert_eq!(c["exitCode"], Value::Null);

    // The process runs in its own namespaces, on the image's files, with the merged config.
    let p = pid.to_string();
    for kind in ["pid", "mnt", "uts", "ipc", "net"] {
        assert_ne!(
            ns(&p, kind),
            ns("self", kind),
            "{kind} namespace is the host's"
        );
        assert!(!ns(&p, kind).is_empty(), "{kind} namespace unreadable");
    }
    let motd = std::fs::read_to_string(format!("/proc/{pid}/root/etc/motd")).unwrap();
    assert_eq!(motd, "hello from the berth test image\n");
    let busybox = std::fs::read(format!("/proc/{pid}/root/bin/busybox")).unwrap();
    assert_eq!(busybox, std::fs::read("/bin/busybox").unwrap());
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let env: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    assert!(env.contains(&"GREETING=hello".to_string()), "{env:?}");
    assert!(
        env.contains(&"IMAGE_ENV=from-image".to_string()),
        "image env kept: {env:?}"
    );
    assert!(env.contains(&"PATH=/bin:/usr/bin".to_string()), "{env:?}");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        Path::new("/tmp")
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.trim_end().ends_with("\t1"),
        "not pid 1 in its namespace: {nspid}"
    );
    let cgroups = agent.cgroup_dirs();
    let memory_dir = cgroups
        .iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/memory") && d.ends_with(&id))
        .unwrap_or_else(|| panic!("no memory cgroup for {id} in {cgroups:?}"));
    assert_eq!(
        std::fs::read_to_string(memory_dir.join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        "67108864"
    );
    let procs = std::fs::read_to_string(memory_dir.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == p),
        "pid {pid} not in {}: {procs}",
        memory_dir.display()
    );
    // Output is logged by the shim as JSON lines, one record per line and stream.
    let logs = agent
        .wait_for("two log records", Duration::from_secs(10), |a| {
            a.get("/v1/containers/web/logs")
                .ok()
                .filter(|b| b.lines().count() == 2)
        })
        .unwrap();
    let mut records: Vec<(String, String)> = logs
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert!(v["time"].as_str().unwrap().ends_with('Z'), "{v}");
            (
                v["stream"].as_str().unwrap().to_string(),
                v["log"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    records.sort();
    assert_eq!(
        records,
        [
            ("stderr".to_string(), "ready\n".to_string()),
            ("stdout".to_string(), "started\n".to_string())
        ]
    );
    let out = std::process::Command::new(berth_tests::agent::berth_bin())
        .args(["logs", "--tail", "5", "--addr", &agent.cli_addr(), "web"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        (
            String::from_utf8_lossy(&out.stdout).as_ref(),
            String::from_utf8_lossy(&out.stderr).as_ref()
        ),
        ("started\n", "ready\n")
    );

    // Saving the same content again changes nothing.
    agent.write_manifest("web.yaml", &web(SERVE)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let c = agent.container("web").unwrap();
    assert_eq!(
        (pid_of(&c), c["id"].as_str().unwrap()),
        (pid, id.as_str()),
        "identical save restarted the container"
    );

    // An edit recreates it: new id, new process, the old one gone with its cgroup.
    let serve2 = SERVE.replace("echo started", "echo started v2");
    agent.write_manifest("web.yaml", &web(&serve2)).unwrap();
    let c = agent
        .wait_container("web", "recreated", |c| {
            c["state"] == "running" && c["id"] != id.as_str()
        })
        .unwrap();
    let (pid2, id2) = (pid_of(&c), c["id"].as_str().unwrap().to_string());
    assert!(!alive(pid), "old process {pid} still alive");
    assert!(
        agent.cgroup_dirs().iter().all(|d| !d.ends_with(&id)),
        "old cgroup left: {:?}",
        agent.cgroup_dirs()
    );
    assert!(
        !agent.state_dir.join("containers").join(&id).exists(),
        "old container dir left"
    );

    // An exit under restartPolicy Always: started again, same container.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid2),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let c = agent
        .wait_container("web", "restarted", |c| {
            c["state"] == "running" && c["restartCount"] == 1
        })
        .unwrap();
    assert_eq!(c["id"], id2.as_str());
    let pid3 = pid_of(&c);
    assert_ne!(pid3, pid2);

    // Restarting the agent does not restart the container; the new agent follows it.
    agent.stop().unwrap();
    assert!(alive(pid3), "container died with the agent");
    agent.restart().unwrap();
    let c = agent
        .wait_container("web", "adopted", |c| c["state"] == "running")
        .unwrap();
    assert_eq!((pid_of(&c), c["restartCount"].as_i64()), (pid3, Some(1)));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid3),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let c = agent
        .wait_container("web", "restarted by the new agent", |c| {
            c["state"] == "running" && c["restartCount"] == 2
        })
        .unwrap();
    let pid4 = pid_of(&c);

    // Deleting the manifest stops the container (gracefully: it traps SIGTERM) and removes it.
    agent.remove_manifest("web.yaml").unwrap();
    agent
        .wait_for("web to be removed", Duration::from_secs(30), |a| {
            a.request("GET", "/v1/containers/web")
                .ok()
                .filter(|(code, _)| *code == 404)
        })
        .unwrap();
    assert!(!alive(pid4), "process {pid4} survived its manifest");
    assert!(
        agent.cgroup_dirs().iter().all(|d| !d.ends_with(&id2)),
        "{:?}",
        agent.cgroup_dirs()
    );
    assert!(!agent.state_dir.join("containers").join(&id2).exists());
    assert!(!agent.run_dir.join("containers").join(&id2).exists());

    let metrics = agent.get("/metrics").unwrap();
    assert!(
        metrics.contains("berth_reconcile_total{result=\"ok\"}"),
        "{metrics}"
    );
    let count: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("berth_reconcile_duration_seconds_count "))
        .and_then(|v| v.parse().ok())
        .expect("histogram count");
    assert!(count >= 1.0, "{metrics}");

    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}

/// The uid the process `pid` runs as (real uid, from /proc).
fn uid_of(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Uid in /proc/{pid}/status"))
}

#[test]
fn the_process_runs_as_the_images_user_unless_the_manifest_names_one() {
    let registry = Registry::start().expect("start registry");
    berth_tests::image::push_busybox_with(
        &registry,
        "library/busybox:nobody",
        &[],
        &[("IMAGE_USER", "65534:65534")],
    )
    .expect("push an image whose User is nobody");
    let agent = Agent::start(&registry).unwrap();
    let manifest = |name: &str, user: &str| {
        format!("apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: docker.io/library/busybox:nobody\n  command: [sleep, '1000']\n  stopTimeout: 1s\n{user}")
    };
    agent
        .write_manifest("image.yaml", &manifest("image-user", ""))
        .unwrap();
    agent
        .write_manifest("own.yaml", &manifest("own-user", "  user: \"1234:1234\"\n"))
        .unwrap();
    let image_user = agent
        .wait_container("image-user", "running", |c| c["state"] == "running")
        .unwrap();
    let own_user = agent
        .wait_container("own-user", "running", |c| c["state"] == "running")
        .unwrap();
    assert_eq!(uid_of(pid_of(&image_user)), 65534, "the image's User");
    assert_eq!(uid_of(pid_of(&own_user)), 1234, "the manifest's user wins");
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}
