//! Start latency and shim memory (issue 5): manifest written → process running for berth,
//! `runc run -d` of an equivalent bundle, and `podman run -d` of the same image; then the
//! resident memory of berth's shim beside podman's conmon.
//!
//! Run: `cargo build --release -p berth && cargo bench -p berth-tests --bench start`
//! (root; uses the loopback registry, umoci, runc and podman like the tests do).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::agent::{unique_prefix, Agent};
use berth_tests::podman::Podman;
use berth_tests::{push_busybox, Registry};

const RUNS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn manifest(name: &str) -> String {
    format!(
        "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: docker.io/library/busybox:1.36\n  command: [sleep, '1000']\n  networkMode: none\n  stopTimeout: 1s\n"
    )
}

fn berth_starts(agent: &Agent) -> Vec<Duration> {
    // Warm: the image is pulled once, as it would be on a running host.
    agent
        .write_manifest("warm.yaml", &manifest("warm"))
        .unwrap();
    agent
        .wait_container("warm", "running", |c| c["state"] == "running")
        .unwrap();
    let mut times = Vec::new();
    for i in 0..RUNS {
        let name = format!("c{i}");
        let t0 = Instant::now();
        agent
            .write_manifest(&format!("{name}.yaml"), &manifest(&name))
            .unwrap();
        loop {
            if agent
                .container(&name)
                .is_some_and(|c| c["state"] == "running")
            {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{name} did not start"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        times.push(t0.elapsed());
    }
    times
}

/// (VmRSS, RssAnon, RssFile) in KiB of every process whose command line contains `needle`.
fn rss_of(needle: &str, also: &str) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !cmd.contains(needle) || !cmd.contains(also) {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |k: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        out.push((field("VmRSS:"), field("RssAnon:"), field("RssFile:")));
    }
    out
}

fn runc_starts(work: &std::path::Path, registry: &Registry) -> Vec<Duration> {
    let layout = work.join("layout");
    let st = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{}/library/busybox:1.36", registry.host()))
        .arg(format!("oci:{}:latest", layout.display()))
        .status()
        .unwrap();
    assert!(st.success(), "skopeo copy to an OCI layout");
    let bundle = work.join("bundle");
    let st = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "umoci unpack");
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["process"]["args"] = serde_json::json!(["sleep", "1000"]);
    cfg["process"]["terminal"] = serde_json::json!(false);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let root = work.join("runc-state");
    let mut times = Vec::new();
    for i in 0..RUNS {
        let id = format!("{}-runc-{i}", unique_prefix());
        let t0 = Instant::now();
        let st = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        times.push(t0.elapsed());
        assert!(st.success(), "runc run");
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["delete", "-f", &id])
            .status();
    }
    times
}

fn podman_starts(podman: &Podman, registry: &Registry) -> (Vec<Duration>, Vec<(u64, u64, u64)>) {
    let image = format!("{}/library/busybox:1.36", registry.host());
    podman.command(&["pull", "--quiet", "--tls-verify=false", &image]);
    let parent = format!("--cgroup-parent=/{}", podman.cgroup_parent);
    let mut times = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let out = podman.command(&[
            "run",
            "-d",
            "--network=none",
            &parent,
            &image,
            "sleep",
            "1000",
        ]);
        times.push(t0.elapsed());
        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let conmon = rss_of("conmon", &ids[0]);
    for id in &ids {
        podman.command(&["rm", "-f", "-t", "0", id]);
    }
    (times, conmon)
}

fn main() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let agent = Agent::start(&registry).expect("start agent");
    let berth = berth_starts(&agent);
    let state = agent.root.path().display().to_string();
    let metrics = agent.get("/metrics").unwrap();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let pass_ms = 1000.0 * metric("berth_reconcile_duration_seconds_sum ")
        / metric("berth_reconcile_duration_seconds_count ").max(1.0);
    if std::env::var_os("BERTH_BENCH_LOG").is_some() {
        eprintln!("{}", agent.log());
    }
    let shims = rss_of("berth shim", &state);
    let left = agent.finish().expect("clean up berth");
    assert!(left.is_empty(), "berth left {left:?}");

    let work = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir()
        .unwrap();
    let runc = runc_starts(work.path(), &registry);
    let podman = Podman::new(unique_prefix());
    let (podman_times, conmon) = podman_starts(&podman, &registry);

    println!("start latency, median of {RUNS} (manifest written → running; runc/podman: command returned)");
    println!("  berth   {:>8.1} ms", ms(median(berth.clone())));
    println!("  runc    {:>8.1} ms", ms(median(runc.clone())));
    println!("  podman  {:>8.1} ms", ms(median(podman_times.clone())));
    println!(
        "  berth / runc = {:.2}x (target ≤ 2), berth / podman = {:.2}x (target ≤ 0.33)",
        ms(median(berth.clone())) / ms(median(runc)),
        ms(median(berth)) / ms(median(podman_times))
    );
    let avg = |v: &[(u64, u64, u64)], f: fn(&(u64, u64, u64)) -> u64| {
        v.iter().map(f).sum::<u64>() / v.len().max(1) as u64
    };
    println!("  (berth: a reconcile pass took {pass_ms:.1} ms on average)");
    println!("monitor memory per container, KiB (RSS = anon + file-backed)");
    println!(
        "  berth shim  RSS {:>6}  anon {:>6}  file {:>6}  ({} shims)",
        avg(&shims, |r| r.0),
        avg(&shims, |r| r.1),
        avg(&shims, |r| r.2),
        shims.len()
    );
    println!(
        "  conmon      RSS {:>6}  anon {:>6}  file {:>6}  ({} conmons)",
        avg(&conmon, |r| r.0),
        avg(&conmon, |r| r.1),
        avg(&conmon, |r| r.2),
        conmon.len()
    );
}
