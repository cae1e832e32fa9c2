//! End to end, the reconciler: `dependsOn` order (Started, Healthy, Completed) and removal in
//! reverse order; health checks that restart or stop an unhealthy container; rollback of a bad
//! update to the exact previous revision, an update whose image never pulls held back and
//! rejected, and a good edit applied afterwards; the prune guard of an emptied manifest
//! directory; `berth/prune: disabled` and volume reclaim policies; a shim killed twenty times
//! without ever two copies of its container; a setup failure under `restartPolicy: Never`
//! retried until it runs once; agent restarts, a finishing sibling, a deleted bridge, renamed
//! and re-saved files and a live field edit that restart nothing; stray processes under the
//! agent's cgroup parent killed and a deleted veth repaired by recreating its container.
//!
//! The containers wait for files the test creates inside them (through `/proc/PID/root`), so
//! each phase starts when the test says, not after a guessed delay. One module per topic; the
//! helpers they share are here.

mod drift;
mod health;
mod order;
mod prune;
mod setup;
mod shims;
mod surprises;
mod updates;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use berth_tests::agent::Agent;
use berth_tests::unix_ms;
use berth_tests::{push_busybox, Registry};
use serde_json::Value;

const IMAGE: &str = "docker.io/library/busybox:1.36";

/// Traps SIGTERM so a stop is quick, and keeps running.
const IDLE: &str = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";

/// Waits until the test creates /tmp/go in the container.
const WAIT_GO: &str = "while [ ! -f /tmp/go ]; do sleep 0.1; done";

fn container(name: &str, script: &str, extra: &str) -> String {
    format!(
        "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {IMAGE}\n  command: [sh, -c]\n  args: [\"{script}\"]\n  stopTimeout: 2s\n{extra}"
    )
}

fn volume(name: &str, policy: &str) -> String {
    format!("apiVersion: berth/v1\nkind: Volume\nmetadata:\n  name: {name}\nspec:\n  reclaimPolicy: {policy}\n")
}

fn start(extra_config: &str) -> (Registry, Agent) {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let agent = Agent::start_with(&registry, extra_config).expect("start agent");
    (registry, agent)
}

fn finish(agent: Agent) {
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}

fn pid_of(c: &Value) -> i32 {
    c["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("running container has a pid: {c}")) as i32
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// The parent of `pid`, from `/proc/PID/stat` (the comm may hold spaces and parentheses).
fn ppid(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').expect("stat has a comm") + 2..];
    rest.split(' ').nth(1).unwrap().parse().unwrap()
}

fn cmdline(pid: i32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .replace('\0', " ")
}

/// Creates `path` inside the container whose init is `pid`.
fn touch_in(pid: i32, path: &str) {
    let p = format!("/proc/{pid}/root{path}");
    std::fs::write(&p, "").unwrap_or_else(|e| panic!("create {p}: {e}"));
}

/// The value of one series of the agent's `/metrics`, like `berth_rollbacks_total{container="app"}`.
fn metric(agent: &Agent, series: &str) -> Option<f64> {
    let text = agent.get("/metrics").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The spec hash of container `name` as the last pass loaded it.
fn manifest_hash(agent: &Agent, name: &str) -> String {
    let v: Value = serde_json::from_str(&agent.get("/v1/manifests").unwrap()).unwrap();
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["objects"].as_array().unwrap().iter())
        .find(|o| o["kind"] == "Container" && o["name"] == name)
        .and_then(|o| o["hash"].as_str())
        .unwrap_or_else(|| panic!("no loaded container {name} in {v}"))
        .to_string()
}

fn short(hash: &str) -> &str {
    &hash.trim_start_matches("sha256:")[..12]
}

/// The container's stdout lines with the unix ms the shim logged each at.
fn stdout_lines(agent: &Agent, name: &str) -> Vec<(u64, String)> {
    agent
        .get(&format!("/v1/containers/{name}/logs"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["stream"] == "stdout")
        .map(|v| {
            (
                unix_ms(v["time"].as_str().unwrap()),
                v["log"].as_str().unwrap().trim_end().to_string(),
            )
        })
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}

fn http_get(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .ok_or(resp)
}

/// Lines of the agent's log that say `what` about container `name`, in order.
fn log_lines(agent: &Agent, what: &str, name: &str) -> usize {
    let field = format!("container={name}");
    agent
        .log()
        .lines()
        .filter(|l| l.contains(what) && l.split_whitespace().any(|w| w == field))
        .count()
}

/// The actions the agent planned on object `name`, in order, from its log (a pass logs its
/// plan before it counts itself in `berth_reconcile_total`).
fn planned(agent: &Agent, name: &str) -> Vec<String> {
    let object = format!("object={name}");
    agent
        .log()
        .lines()
        .filter(|l| l.contains(" INFO ") && l.split_whitespace().any(|w| w == object))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("action=\"")?.strip_suffix('"'))
                .map(str::to_string)
        })
        .collect()
}

fn passes(agent: &Agent) -> f64 {
    metric(agent, "berth_reconcile_total{result=\"ok\"}").unwrap_or(0.0)
}

/// Waits until a pass has ended since this agent process started.
fn first_pass(agent: &Agent) {
    agent
        .wait_for("a first pass", Duration::from_secs(10), |a| {
            Some(passes(a)).filter(|p| *p >= 1.0)
        })
        .unwrap();
}

/// Polls `check` every 100ms for `period`; it must hold every time.
fn holds_for(agent: &Agent, period: Duration, what: &str, check: impl Fn(&Agent) -> bool) {
    let end = Instant::now() + period;
    while Instant::now() < end {
        assert!(
            check(agent),
            "{what} stopped holding\ncontainers: {:#?}\nagent log:\n{}",
            agent.containers(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn find<'a>(cs: &'a [Value], name: &str) -> Option<&'a Value> {
    cs.iter().find(|c| c["name"] == name)
}
