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
//! each phase starts when the test says, not after a guessed delay.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::agent::{links_with, Agent};
use berth_tests::{push_busybox, Registry};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
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

/// Unix ms of an RFC 3339 UTC time like `2026-11-28T00:21:02.000000005Z`.
fn unix_ms(t: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| -> i64 { t[r].parse().unwrap() };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (hh, mm, ss) = (n(11..13), n(14..16), n(17..19));
    let frac = t[20..t.len() - 1].to_string() + "000";
    let ms: i64 = frac[..3].parse().unwrap();
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (((days * 24 + hh) * 60 + mm) * 60 + ss) as u64 * 1000 + ms as u64
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

// ---- 1. order ----

#[test]
fn dependents_start_after_their_conditions_hold_and_go_first() {
    let (_registry, agent) = start("");
    let db = container(
        "db",
        &format!("{WAIT_GO}; mkdir -p /tmp/www; echo db > /tmp/www/index.html; exec httpd -f -p 8080 -h /tmp/www"),
        // After the first success the next probe is 30s away: its time stays the first.
        "  healthcheck:\n    http: {port: 8080, path: /}\n    interval: 30s\n    timeout: 2s\n    startPeriod: 60s\n    startInterval: 200ms\n",
    );
    let init = container(
        "init",
        &format!("{WAIT_GO}; echo init done"),
        "  restartPolicy: Never\n",
    );
    let web = container(
        "web",
        &format!("echo web started; {IDLE}"),
        "  dependsOn:\n    - {name: db, condition: Healthy}\n    - {name: init, condition: Completed}\n",
    );
    // Ignores SIGTERM (pid 1 without a handler): its stop takes the whole stopTimeout, so a
    // removal of web that did not wait for it would be logged first.
    let side = container(
        "side",
        "echo side started; while :; do sleep 1; done",
        "  dependsOn:\n    - {name: web, condition: Started}\n",
    );
    for (file, m) in [
        ("web.yaml", &web),
        ("side.yaml", &side),
        ("db.yaml", &db),
        ("init.yaml", &init),
    ] {
        agent.write_manifest(file, m).unwrap();
    }

    // On every look: nothing of web exists before db is healthy and init completed, nothing
    // of side before web runs.
    let in_order = |cs: &[Value]| {
        let created = |n: &str| find(cs, n).is_some_and(|c| !c["id"].is_null());
        if created("web") {
            let db = find(cs, "db").unwrap();
            let init = find(cs, "init").unwrap();
            assert_eq!(
                db["health"]["status"], "healthy",
                "web created early: {cs:#?}"
            );
            assert_eq!(
                (init["state"].as_str(), init["exitCode"].as_i64()),
                (Some("exited"), Some(0)),
                "web created early: {cs:#?}"
            );
        }
        if created("side") {
            assert_eq!(find(cs, "web").unwrap()["state"], "running", "{cs:#?}");
        }
    };
    let waits = |a: &Agent, web_waits: &str| {
        let cs = a.containers().ok()?;
        in_order(&cs);
        let w = find(&cs, "web")?;
        (w["waitingFor"] == web_waits).then(|| cs.clone())
    };

    let cs = agent
        .wait_for("web to wait for db", Duration::from_secs(30), |a| {
            waits(a, "db to be healthy").filter(|cs| {
                ["db", "init"]
                    .iter()
                    .all(|n| find(cs, n).is_some_and(|c| c["state"] == "running"))
                    && find(cs, "db").unwrap()["health"]["status"] == "starting"
            })
        })
        .unwrap();
    let w = find(&cs, "web").unwrap();
    assert_eq!(
        (w["state"].as_str(), &w["id"], &w["pid"]),
        (Some("waiting"), &Value::Null, &Value::Null),
        "{w}"
    );
    let s = find(&cs, "side").unwrap();
    assert_eq!(
        (s["state"].as_str(), s["waitingFor"].as_str()),
        (Some("waiting"), Some("web to be started")),
        "{s}"
    );
    let db_status = find(&cs, "db").unwrap();

    // db answers: healthy; web now waits for init.
    touch_in(pid_of(db_status), "/tmp/go");
    let cs = agent
        .wait_for("web to wait for init", Duration::from_secs(30), |a| {
            waits(a, "init to be completed successfully")
        })
        .unwrap();
    let health = &find(&cs, "db").unwrap()["health"];
    assert_eq!(
        (health["status"].as_str(), health["failingStreak"].as_i64()),
        (Some("healthy"), Some(0)),
        "{health}"
    );
    let healthy_at = health["checkedAtMs"].as_u64().expect("probe time");
    assert_eq!(find(&cs, "web").unwrap()["state"], "waiting");
    // The metric follows in the pass the health change triggers.
    agent
        .wait_for("db's health metric", Duration::from_secs(10), |a| {
            let m = a.get("/metrics").ok()?;
            let lines: Vec<&str> = m
                .lines()
                .filter(|l| l.starts_with("berth_container_health{container=\"db\""))
                .collect();
            (lines == ["berth_container_health{container=\"db\",status=\"healthy\"} 1"])
                .then_some(())
        })
        .unwrap();

    // init completes: web starts, then side.
    let init_pid = pid_of(find(&cs, "init").unwrap());
    touch_in(init_pid, "/tmp/go");
    agent
        .wait_for("web and side to run", Duration::from_secs(30), |a| {
            let cs = a.containers().ok()?;
            in_order(&cs);
            ["web", "side"]
                .iter()
                .all(|n| find(&cs, n).is_some_and(|c| c["state"] == "running"))
                .then_some(())
        })
        .unwrap();
    let init = agent.container("init").unwrap();
    assert_eq!(
        (
            init["state"].as_str(),
            init["exitCode"].as_i64(),
            init["reason"].as_str()
        ),
        (Some("exited"), Some(0), Some("Completed"))
    );
    // The logs say the same, to the millisecond: web's first line comes after db's first
    // healthy probe and after init's last line; side's after web's.
    let line_at = |name: &str, text: &str| {
        agent
            .wait_for(
                &format!("{name} to log {text:?}"),
                Duration::from_secs(10),
                |a| {
                    stdout_lines(a, name)
                        .into_iter()
                        .find(|(_, l)| l == text)
                        .map(|(t, _)| t)
                },
            )
            .unwrap()
    };
    let (init_done, web_started, side_started) = (
        line_at("init", "init done"),
        line_at("web", "web started"),
        line_at("side", "side started"),
    );
    assert!(
        healthy_at <= web_started && init_done <= web_started && web_started <= side_started,
        "db healthy at {healthy_at}, init done at {init_done}, web started at {web_started}, side started at {side_started}"
    );

    // Removal in reverse order: side (slow to stop) goes before web, web before db and init.
    for f in ["web.yaml", "side.yaml", "db.yaml", "init.yaml"] {
        agent.remove_manifest(f).unwrap();
    }
    agent
        .wait_for(
            "web to wait for side's removal",
            Duration::from_secs(10),
            |a| {
                a.container("web")
                    .filter(|c| c["waitingFor"] == "side to be removed first")
            },
        )
        .unwrap();
    agent
        .wait_for("every container to go", Duration::from_secs(30), |a| {
            a.containers().ok().filter(|c| c.is_empty())
        })
        .unwrap();
    let removed: Vec<String> = agent
        .log()
        .lines()
        .filter(|l| l.contains("container removed"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("container="))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(removed.len(), 4, "{removed:?}");
    assert_eq!(&removed[..2], ["side", "web"], "{removed:?}");
    let mut last = removed[2..].to_vec();
    last.sort();
    assert_eq!(last, ["db", "init"], "{removed:?}");
    finish(agent);
}

// ---- 2. health ----

#[test]
fn unhealthy_containers_are_restarted_or_stopped() {
    // A back-off long enough to see the stopped container between its runs.
    let (_registry, agent) = start("restartBackoff: {initial: 2s, max: 2s}\n");
    // Ignores SIGTERM, so a stop takes its stopTimeout: the unhealthy status lasts that long.
    let script = "touch /tmp/ok; while :; do sleep 1; done";
    let manifest = |name: &str, then: &str| {
        container(
            name,
            script,
            &format!("  healthcheck:\n    exec: [sh, -c, 'test -f /tmp/ok']\n    interval: 300ms\n    timeout: 2s\n    retries: 2\n    onUnhealthy: {then}\n"),
        )
        .replace("stopTimeout: 2s", "stopTimeout: 3s")
    };
    agent
        .write_manifest("flaky.yaml", &manifest("flaky", "restart"))
        .unwrap();
    agent
        .write_manifest("sick.yaml", &manifest("sick", "stop"))
        .unwrap();
    let healthy = |name: &str| {
        agent
            .wait_container(name, "healthy", |c| {
                c["state"] == "running" && c["health"]["status"] == "healthy"
            })
            .unwrap()
    };
    let (flaky, sick) = (healthy("flaky"), healthy("sick"));
    let (flaky_pid, sick_pid) = (pid_of(&flaky), pid_of(&sick));
    // The metric follows in the pass the health change triggers.
    let healthy_metric = |agent: &Agent| {
        agent
            .wait_for("flaky's healthy metric", Duration::from_secs(10), |a| {
                metric(
                    a,
                    "berth_container_health{container=\"flaky\",status=\"healthy\"}",
                )
                .filter(|v| *v == 1.0)
            })
            .unwrap();
    };
    healthy_metric(&agent);

    // The probe's file goes: two failed probes make both unhealthy.
    for pid in [flaky_pid, sick_pid] {
        std::fs::remove_file(format!("/proc/{pid}/root/tmp/ok")).unwrap();
    }
    let c = agent
        .wait_container("flaky", "unhealthy", |c| {
            c["health"]["status"] == "unhealthy"
        })
        .unwrap();
    assert_eq!(
        (c["state"].as_str(), pid_of(&c)),
        (Some("running"), flaky_pid)
    );
    assert!(c["health"]["failingStreak"].as_i64().unwrap() >= 2, "{c}");
    agent
        .wait_for("the unhealthy metric", Duration::from_secs(10), |a| {
            metric(
                a,
                "berth_container_health{container=\"flaky\",status=\"unhealthy\"}",
            )
            .filter(|v| *v == 1.0)
        })
        .unwrap();

    // onUnhealthy: restart — stopped with reason Unhealthy, then started again after the
    // back-off.
    let c = agent
        .wait_container("flaky", "stopped as unhealthy", |c| {
            c["state"] == "exited" && c["reason"] == "Unhealthy"
        })
        .unwrap();
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .starts_with("unhealthy after 2 failed probes, restarting it"),
        "{c}"
    );
    assert_eq!(c["restartCount"], 0);
    assert!(
        !alive(flaky_pid),
        "the unhealthy process {flaky_pid} still runs"
    );
    let c = agent
        .wait_container("flaky", "waiting out its back-off", |c| {
            c["waitingFor"] == "restart back-off (2s)"
        })
        .unwrap();
    assert_eq!(c["backoff"], "2s");
    let next = c["nextRestartAt"].as_u64().expect("nextRestartAt");
    let now_s = now_ms() / 1000;
    assert!(now_s <= next && next <= now_s + 3, "{c}");
    let c = agent
        .wait_container("flaky", "restarted and healthy", |c| {
            c["state"] == "running" && c["health"]["status"] == "healthy"
        })
        .unwrap();
    assert_ne!(pid_of(&c), flaky_pid);
    assert_eq!(
        (c["restartCount"].as_i64(), &c["reason"], &c["message"]),
        (Some(1), &Value::Null, &Value::Null),
        "{c}"
    );
    healthy_metric(&agent);

    // onUnhealthy: stop — it stays stopped (flaky's whole back-off has passed meanwhile).
    let c = agent.container("sick").unwrap();
    assert_eq!(
        (
            c["state"].as_str(),
            c["reason"].as_str(),
            c["restartCount"].as_i64(),
            &c["waitingFor"],
            &c["health"]
        ),
        (
            Some("exited"),
            Some("Unhealthy"),
            Some(0),
            &Value::Null,
            &Value::Null
        ),
        "{c}"
    );
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .starts_with("unhealthy after 2 failed probes, stopping it"),
        "{c}"
    );
    assert!(!alive(sick_pid));
    assert_eq!(
        planned(&agent, "sick"),
        ["create", "stop", "release-networks"]
    );
    assert_eq!(
        planned(&agent, "flaky"),
        ["create", "stop", "restart"],
        "a container restarted keeps its address through the back-off"
    );
    finish(agent);
}

// ---- 3. updates ----

#[test]
fn bad_updates_roll_back_and_good_ones_apply() {
    let (registry, mut agent) = start("restartBackoff: {initial: 500ms, max: 1s}\n");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let serve = |text: &str| {
        format!("mkdir -p /tmp/www; echo {text} > /tmp/www/index.html; exec httpd -f -p 8080 -h /tmp/www")
    };
    let app = |script: &str| {
        container(
            "app",
            script,
            &format!("  ports: [{{containerPort: 8080, hostPort: {port}}}]\n  update: {{minReady: 2s, rollbackAfter: 8s}}\n"),
        )
    };
    let answers = |agent: &Agent, text: &str| {
        let want = format!("{text}\n");
        agent
            .wait_for(
                &format!("the published port to answer {text}"),
                Duration::from_secs(15),
                |_| http_get(addr).ok().filter(|b| *b == want),
            )
            .unwrap();
    };

    agent
        .write_manifest("app.yaml", &app(&serve("v1")))
        .unwrap();
    let c = agent
        .wait_container("app", "running", |c| c["state"] == "running")
        .unwrap();
    answers(&agent, "v1");
    let v1 = manifest_hash(&agent, "app");
    assert_eq!(c["specHash"], v1.as_str());
    let digest = c["imageDigest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{c}");

    // (a) A command that exits at once, on the image its tag names now (the tag moved):
    // restarted until rollbackAfter, then the previous revision runs again on exactly its
    // image.
    push_busybox(&registry, "library/busybox:1.36", &["true"]).expect("move the tag");
    agent
        .write_manifest(
            "app.yaml",
            &app("echo bad; exit 1").replace(
                "  stopTimeout: 2s\n",
                "  stopTimeout: 2s\n  imagePullPolicy: Always\n",
            ),
        )
        .unwrap();
    let bad = agent
        .wait_for("the bad revision to load", Duration::from_secs(10), |a| {
            Some(manifest_hash(a, "app")).filter(|h| *h != v1)
        })
        .unwrap();
    let c = agent
        .wait_container("app", "the bad revision to run", |c| {
            c["specHash"] == bad.as_str() && c["restartCount"].as_i64() >= Some(1)
        })
        .unwrap();
    assert_eq!(c["rollbackTo"], v1.as_str(), "{c}");
    let moved = c["imageDigest"].as_str().unwrap().to_string();
    assert_ne!(moved, digest, "the bad revision runs on the moved tag");
    let c = agent
        .wait_for("the rollback", Duration::from_secs(30), |a| {
            a.container("app")
                .filter(|c| c["reason"] == "RolledBack" && c["state"] == "running")
        })
        .unwrap();
    let message = c["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("update to revision {} (", short(&bad)))
            // Judged at the deadline, in a run or between two.
            && (message.contains("exited with code 1 within 8s")
                || message.contains("did not keep running for 2s within 8s"))
            && message.ends_with(&format!("rolled back to revision {}", short(&v1))),
        "{message}"
    );
    assert_eq!(
        (
            c["specHash"].as_str(),
            c["rejectedRevision"].as_str(),
            c["image"].as_str(),
            c["imageDigest"].as_str(),
            &c["rollbackTo"]
        ),
        (
            Some(v1.as_str()),
            Some(bad.as_str()),
            Some(IMAGE),
            Some(digest.as_str()),
            &Value::Null
        ),
        "{c}"
    );
    answers(&agent, "v1");
    assert_eq!(
        metric(&agent, "berth_rollbacks_total{container=\"app\"}"),
        Some(1.0)
    );
    // The rejected revision is not tried again while the manifest stays.
    let (id, pid, restarts) = (
        c["id"].as_str().unwrap().to_string(),
        pid_of(&c),
        c["restartCount"].clone(),
    );
    let actions = planned(&agent, "app");
    assert_eq!(
        actions.last().map(String::as_str),
        Some("rollback"),
        "{actions:?}"
    );
    holds_for(
        &agent,
        Duration::from_secs(5),
        "the rolled-back container",
        |a| {
            a.container("app").is_some_and(|c| {
                c["id"] == id.as_str()
                    && c["pid"] == pid
                    && c["restartCount"] == restarts
                    && c["specHash"] == v1.as_str()
            }) && planned(a, "app") == actions
        },
    );
    // Nor after an agent restart: the verdict is in the record.
    agent.restart().unwrap();
    first_pass(&agent);
    let c = agent.container("app").unwrap();
    assert_eq!(
        (
            c["id"].as_str(),
            c["pid"].as_i64(),
            c["reason"].as_str(),
            c["rejectedRevision"].as_str()
        ),
        (
            Some(id.as_str()),
            Some(i64::from(pid)),
            Some("RolledBack"),
            Some(bad.as_str())
        )
    );
    assert_eq!(planned(&agent, "app"), actions);

    // (b) An image that never pulls: the running container is kept all along, and the update
    // is rejected after rollbackAfter.
    agent
        .write_manifest(
            "app.yaml",
            &app(&serve("v1")).replace(IMAGE, "docker.io/library/busybox:missing"),
        )
        .unwrap();
    let same_process = |a: &Agent| {
        let c = a.container("app").unwrap();
        assert_eq!(
            (c["state"].as_str(), c["pid"].as_i64(), c["id"].as_str()),
            (Some("running"), Some(i64::from(pid)), Some(id.as_str())),
            "the running container was touched: {c}"
        );
        c
    };
    let c = agent
        .wait_for("the update to be held back", Duration::from_secs(20), |a| {
            Some(same_process(a)).filter(|c| {
                c["message"].as_str().is_some_and(|m| {
                    m.starts_with("update held back, the running container is kept")
                })
            })
        })
        .unwrap();
    assert!(
        c["message"].as_str().unwrap().contains("busybox:missing"),
        "{c}"
    );
    let missing = manifest_hash(&agent, "app");
    let c = agent
        .wait_for("the update to be rejected", Duration::from_secs(30), |a| {
            Some(same_process(a)).filter(|c| c["rejectedRevision"] == missing.as_str())
        })
        .unwrap();
    let message = c["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("update to revision {} (", short(&missing)))
            && message.contains("could not be applied within 8s")
            && message.ends_with(&format!("kept revision {}", short(&v1))),
        "{message}"
    );
    assert_eq!(
        (c["reason"].as_str(), c["specHash"].as_str()),
        (Some("RolledBack"), Some(v1.as_str()))
    );
    assert!(alive(pid));
    answers(&agent, "v1");
    // Counted since the agent's restart.
    assert_eq!(
        metric(&agent, "berth_rollbacks_total{container=\"app\"}"),
        Some(1.0)
    );

    // (c) A good edit is applied, and proves itself within minReady.
    agent
        .write_manifest("app.yaml", &app(&serve("v2")))
        .unwrap();
    answers(&agent, "v2");
    let v2 = manifest_hash(&agent, "app");
    let c = agent
        .wait_container("app", "the good revision promoted", |c| {
            c["specHash"] == v2.as_str() && c["state"] == "running" && c["rollbackTo"].is_null()
        })
        .unwrap();
    assert_ne!(c["id"], id.as_str());
    assert_eq!(
        (
            &c["reason"],
            &c["message"],
            &c["rejectedRevision"],
            c["restartCount"].as_i64()
        ),
        (&Value::Null, &Value::Null, &Value::Null, Some(0)),
        "{c}"
    );
    assert!(!alive(pid));
    answers(&agent, "v2");
    finish(agent);
}

// ---- 4. prune guard ----

#[test]
fn an_emptied_directory_removes_nothing_unless_allowed() {
    let (_registry, mut agent) = start("allowEmpty: false\n");
    // One file: moving it is atomic, so no pass sees half a directory.
    let stack = [
        "apiVersion: berth/v1\nkind: Network\nmetadata:\n  name: front\n".to_string(),
        container("one", IDLE, "  networks: [front]\n"),
        container("two", IDLE, "  networks: [front]\n"),
    ]
    .join("---\n");
    agent.write_manifest("stack.yaml", &stack).unwrap();
    let pids: Vec<i32> = ["one", "two"]
        .iter()
        .map(|n| {
            pid_of(
                &agent
                    .wait_container(n, "running", |c| c["state"] == "running")
                    .unwrap(),
            )
        })
        .collect();
    let links = links_with(agent.net_prefix());
    assert_eq!(links.len(), 3, "a bridge and two veths: {links:?}");
    let unchanged = |a: &Agent| {
        ["one", "two"].iter().zip(&pids).all(|(n, pid)| {
            a.container(n).is_some_and(|c| {
                c["state"] == "running" && c["pid"] == *pid && c["restartCount"] == 0
            }) && planned(a, n) == ["create"]
        })
    };

    let parked = agent.root.path().join("parked.yaml");
    std::fs::rename(agent.manifests.join("stack.yaml"), &parked).unwrap();
    agent
        .wait_for("the prune guard", Duration::from_secs(10), |a| {
            let v: Value = serde_json::from_str(&a.get("/v1/manifests").ok()?).ok()?;
            (v["pruneBlocked"] == true).then_some(())
        })
        .unwrap();
    // More passes over the empty directory (a file without objects is still empty).
    for i in 0..3 {
        let before = metric(&agent, "berth_prune_blocked_total").expect("metric");
        agent
            .write_manifest("notes.yaml", &format!("# nothing here yet ({i})\n"))
            .unwrap();
        agent
            .wait_for("another guarded pass", Duration::from_secs(10), |a| {
                metric(a, "berth_prune_blocked_total").filter(|v| *v > before)
            })
            .unwrap();
        assert!(unchanged(&agent), "{:#?}", agent.containers());
    }
    assert!(metric(&agent, "berth_prune_blocked_total").unwrap() >= 4.0);
    let guard_lines = agent
        .log()
        .lines()
        .filter(|l| l.contains("the manifest directory holds no object: nothing is removed"))
        .count();
    assert_eq!(
        guard_lines,
        1,
        "logged once, when it starts:\n{}",
        agent.log()
    );
    assert_eq!(links_with(agent.net_prefix()), links);
    assert!(pids.iter().all(|p| alive(*p)));

    // An agent that crashes and comes back to the empty directory keeps the guard.
    agent.kill9().unwrap();
    agent.restart().unwrap();
    first_pass(&agent);
    let v: Value = serde_json::from_str(&agent.get("/v1/manifests").unwrap()).unwrap();
    assert_eq!(v["pruneBlocked"], true, "{v}");
    assert!(unchanged(&agent), "{:#?}", agent.containers());

    // Back: nothing was stopped.
    agent.remove_manifest("notes.yaml").unwrap();
    std::fs::rename(&parked, agent.manifests.join("stack.yaml")).unwrap();
    agent
        .wait_for("the guard to lift", Duration::from_secs(10), |a| {
            let v: Value = serde_json::from_str(&a.get("/v1/manifests").ok()?).ok()?;
            (v["pruneBlocked"] == false && v["files"].as_array()?.len() == 1).then_some(())
        })
        .unwrap();
    assert!(agent
        .log()
        .contains("the manifest directory holds objects again: removals resume"));
    assert!(unchanged(&agent), "{:#?}", agent.containers());
    assert_eq!(links_with(agent.net_prefix()), links);

    agent
        .edit_config_and_restart("allowEmpty: false", "allowEmpty: true")
        .unwrap();
    first_pass(&agent);
    assert!(unchanged(&agent), "{:#?}", agent.containers());
    finish(agent);
}

// ---- 5. kept objects and volumes ----

#[test]
fn kept_containers_and_volume_reclaim_policies() {
    let (_registry, agent) = start("");
    let keeper = container("keeper", IDLE, "").replace(
        "  name: keeper\n",
        "  name: keeper\n  annotations:\n    berth/prune: \"disabled\"\n",
    );
    let writer = |generation: u32| {
        format!(
            "{}---\n{}",
            volume("data", "Delete"),
            container(
                "writer",
                &format!("echo $GEN >> /data/log; {IDLE}"),
                &format!(
                    "  env: {{GEN: '{generation}'}}\n  mounts: [{{volume: data, path: /data}}]\n"
                ),
            )
        )
    };
    let holder = format!(
        "{}---\n{}",
        volume("keep", "Retain"),
        container(
            "holder",
            &format!("echo kept > /keep/f; {IDLE}"),
            "  mounts: [{volume: keep, path: /keep}]\n",
        )
    );
    agent.write_manifest("keeper.yaml", &keeper).unwrap();
    agent.write_manifest("data.yaml", &writer(1)).unwrap();
    agent.write_manifest("keep.yaml", &holder).unwrap();
    let running = |name: &str| {
        agent
            .wait_container(name, "running", |c| c["state"] == "running")
            .unwrap()
    };
    let keeper_pid = pid_of(&running("keeper"));
    let w = running("writer");
    running("holder");
    let volumes = agent.state_dir.join("volumes");
    let data_log = volumes.join("data/_data/log");
    agent
        .wait_for("the first write", Duration::from_secs(10), |_| {
            std::fs::read_to_string(&data_log)
                .ok()
                .filter(|s| s == "1\n")
        })
        .unwrap();

    // Recreated (env changed): the volume's data is still there.
    agent.write_manifest("data.yaml", &writer(2)).unwrap();
    let w2 = agent
        .wait_container("writer", "recreated", |c| {
            c["state"] == "running" && c["id"] != w["id"]
        })
        .unwrap();
    let inside = format!("/proc/{}/root/data/log", pid_of(&w2));
    agent
        .wait_for("the second write", Duration::from_secs(10), |_| {
            std::fs::read_to_string(&inside)
                .ok()
                .filter(|s| s == "1\n2\n")
        })
        .unwrap();

    // Both manifests gone: the container goes, then its volume and the data.
    agent.remove_manifest("keeper.yaml").unwrap();
    agent.remove_manifest("data.yaml").unwrap();
    agent
        .wait_for(
            "writer and its volume to go",
            Duration::from_secs(30),
            |a| {
                (a.container("writer").is_none()
                    && !volumes.join("data").exists()
                    && a.log().contains("volume deleted (reclaimPolicy: Delete)"))
                .then_some(())
            },
        )
        .unwrap();
    // keeper's manifest went in the same passes: it stays, the same process.
    let c = agent.container("keeper").expect("kept container");
    assert_eq!(
        (c["state"].as_str(), pid_of(&c), c["restartCount"].as_i64()),
        (Some("running"), keeper_pid, Some(0))
    );
    let state: Value = serde_json::from_str(&agent.get("/v1/state").unwrap()).unwrap();
    let last_good: BTreeSet<(String, String)> = state["lastGood"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("Container", "holder"),
        ("Container", "keeper"),
        ("Volume", "keep"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(last_good, expected);

    // Kept, it is still restarted under its policy.
    kill(Pid::from_raw(keeper_pid), Signal::SIGKILL).unwrap();
    let c = agent
        .wait_container("keeper", "restarted", |c| {
            c["state"] == "running" && c["restartCount"] == 1
        })
        .unwrap();
    let keeper_pid = pid_of(&c);

    // Retain: the container goes, the data stays.
    agent.remove_manifest("keep.yaml").unwrap();
    agent
        .wait_for(
            "holder to go and keep to be retained",
            Duration::from_secs(30),
            |a| {
                (a.container("holder").is_none()
                    && a.log()
                        .contains("manifest gone, volume retained (reclaimPolicy: Retain)"))
                .then_some(())
            },
        )
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(volumes.join("keep/_data/f")).unwrap(),
        "kept\n"
    );

    // keeper's manifest back without the annotation (not part of its hash): the same
    // process, and now removed with the rest.
    agent
        .write_manifest("keeper.yaml", &container("keeper", IDLE, ""))
        .unwrap();
    agent
        .wait_for("keeper.yaml to load", Duration::from_secs(10), |a| {
            a.get("/v1/manifests")
                .ok()
                .filter(|m| m.contains("keeper.yaml"))
        })
        .unwrap();
    holds_for(&agent, Duration::from_secs(1), "keeper unchanged", |a| {
        a.container("keeper").is_some_and(|c| {
            c["state"] == "running" && c["pid"] == keeper_pid && c["restartCount"] == 1
        })
    });
    assert_eq!(
        planned(&agent, "keeper"),
        ["create", "record-exit", "restart"]
    );
    std::fs::remove_dir_all(volumes.join("keep")).unwrap();
    finish(agent);
}

// ---- 6. dead shims ----

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

// ---- 7. setup failures ----

#[test]
fn a_setup_failure_is_retried_under_never_until_it_runs_once() {
    let host = tempfile::tempdir().unwrap();
    let (registry, agent) = start(&format!(
        "allowedHostPaths: [{}]\nrestartBackoff: {{initial: 300ms, max: 1s}}\n",
        host.path().display()
    ));
    let dir = host.path().join("data");
    agent
        .write_manifest(
            "job.yaml",
            &container(
                "job",
                "cat /data/input; echo ran",
                &format!(
                    "  restartPolicy: Never\n  mounts: [{{hostPath: {}, path: /data}}]\n",
                    dir.display()
                ),
            ),
        )
        .unwrap();
    // An image not in the registry yet.
    agent
        .write_manifest(
            "late.yaml",
            &container("late", "echo late ran", "  restartPolicy: Never\n")
                .replace(IMAGE, "docker.io/library/busybox:later"),
        )
        .unwrap();
    // A process that cannot exec is the workload's failure: under Never, not retried.
    agent
        .write_manifest(
            "noexec.yaml",
            &format!("apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: noexec\nspec:\n  image: {IMAGE}\n  command: [/no/such/binary]\n  restartPolicy: Never\n"),
        )
        .unwrap();

    let c = agent
        .wait_container("job", "failed to set up", |c| {
            c["state"] == "failed" && c["reason"] == "SetupError"
        })
        .unwrap();
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("hostPath {}", dir.display()))
            && message.contains("hint: it must exist on the host"),
        "{message}"
    );
    // Retried with back-off although its policy is Never.
    let c = agent
        .wait_container("job", "retried twice, waiting again", |c| {
            c["state"] == "failed"
                && c["restartCount"].as_i64() >= Some(2)
                && c["waitingFor"]
                    .as_str()
                    .is_some_and(|w| w.starts_with("restart back-off ("))
        })
        .unwrap();
    assert_eq!(c["reason"], "SetupError", "{c}");

    let c = agent
        .wait_container("late", "its pull retried", |c| {
            c["state"] == "failed" && c["restartCount"].as_i64() >= Some(2)
        })
        .unwrap();
    assert_eq!(c["reason"], "SetupError", "{c}");
    assert!(
        c["message"].as_str().unwrap().contains("busybox:later"),
        "{c}"
    );

    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("input"), "hello\n").unwrap();
    push_busybox(&registry, "library/busybox:later", &[]).expect("push the later tag");
    let c = agent
        .wait_container("job", "ran once", |c| c["state"] == "exited")
        .unwrap();
    assert_eq!(
        (c["exitCode"].as_i64(), c["reason"].as_str(), &c["message"]),
        (Some(0), Some("Completed"), &Value::Null),
        "{c}"
    );
    let restarts = c["restartCount"].clone();
    let lines = || -> Vec<String> {
        stdout_lines(&agent, "job")
            .into_iter()
            .map(|(_, l)| l)
            .collect()
    };
    agent
        .wait_for("the job's output", Duration::from_secs(10), |_| {
            Some(lines()).filter(|l| l.len() == 2)
        })
        .unwrap();
    assert_eq!(lines(), ["hello", "ran"]);
    let c = agent
        .wait_container("late", "pulled and ran once", |c| c["state"] == "exited")
        .unwrap();
    assert_eq!(
        (c["exitCode"].as_i64(), c["reason"].as_str()),
        (Some(0), Some("Completed")),
        "{c}"
    );
    let late_restarts = c["restartCount"].clone();

    let c = agent.container("noexec").unwrap();
    assert_eq!(
        (
            c["state"].as_str(),
            c["reason"].as_str(),
            c["restartCount"].as_i64(),
            &c["waitingFor"]
        ),
        (Some("failed"), Some("StartError"), Some(0), &Value::Null),
        "{c}"
    );
    assert!(
        c["message"].as_str().unwrap().contains("/no/such/binary"),
        "{c}"
    );
    // Run once, it stays finished.
    holds_for(&agent, Duration::from_secs(2), "the finished job", |a| {
        a.container("job")
            .is_some_and(|c| c["state"] == "exited" && c["restartCount"] == restarts)
            && a.container("noexec")
                .is_some_and(|c| c["restartCount"] == 0)
            && a.container("late")
                .is_some_and(|c| c["state"] == "exited" && c["restartCount"] == late_restarts)
    });
    assert_eq!(lines(), ["hello", "ran"]);
    finish(agent);
}

// ---- 8. no surprises ----

/// The bridges of this agent.
fn bridges(agent: &Agent) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "type", "bridge"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .filter(|n| n.starts_with(agent.net_prefix()))
        .map(str::to_string)
        .collect()
}

fn links_of(bridge: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

#[test]
fn nothing_restarts_an_unchanged_container() {
    let (_registry, mut agent) = start("");
    let a = container(
        "a",
        "mkdir -p /tmp/www; echo a > /tmp/www/index.html; exec httpd -f -p 8080 -h /tmp/www",
        "",
    );
    let b = container("b", IDLE, "");
    agent.write_manifest("a.yaml", &a).unwrap();
    agent.write_manifest("b.yaml", &b).unwrap();
    let running = |agent: &Agent, n: &str| {
        agent
            .wait_container(n, "running", |c| c["state"] == "running")
            .unwrap()
    };
    let ca = running(&agent, "a");
    let pids = [pid_of(&ca), pid_of(&running(&agent, "b"))];
    let a_addr: SocketAddr = format!("{}:8080", ca["networks"][0]["address"].as_str().unwrap())
        .parse()
        .unwrap();
    agent
        .wait_for("a to answer", Duration::from_secs(10), |_| {
            http_get(a_addr).ok().filter(|b| b == "a\n")
        })
        .unwrap();
    // The same processes, never restarted, and no action but these ever planned on them.
    let unchanged = |agent: &Agent, after: &str, a_actions: &[&str], b_actions: &[&str]| {
        for ((n, pid), actions) in ["a", "b"].iter().zip(pids).zip([a_actions, b_actions]) {
            let c = agent.container(n).unwrap();
            assert_eq!(
                (
                    c["state"].as_str(),
                    c["pid"].as_i64(),
                    c["restartCount"].as_i64()
                ),
                (Some("running"), Some(i64::from(pid)), Some(0)),
                "{n} after {after}: {c}\nagent log:\n{}",
                agent.log()
            );
            assert_eq!(planned(agent, n), actions, "{n} after {after}");
        }
    };

    // A sibling runs and finishes.
    agent
        .write_manifest(
            "job.yaml",
            &container("job", "sleep 1; echo done", "  restartPolicy: Never\n"),
        )
        .unwrap();
    agent
        .wait_container("job", "completed", |c| {
            c["state"] == "exited" && c["exitCode"] == 0
        })
        .unwrap();
    unchanged(&agent, "a sibling finished", &["create"], &["create"]);

    // The agent crashes, and it stops; both times it comes back to the same containers.
    agent.kill9().unwrap();
    agent.restart().unwrap();
    first_pass(&agent);
    unchanged(&agent, "kill -9 of the agent", &["create"], &["create"]);
    agent.restart().unwrap();
    first_pass(&agent);
    unchanged(&agent, "an agent restart", &["create"], &["create"]);
    assert_eq!(log_lines(&agent, "adopted running container", "a"), 2);

    // The bridge deleted by hand: the periodic resync makes it again with both veths.
    let bridge = bridges(&agent);
    assert_eq!(bridge.len(), 1, "{bridge:?}");
    let bridge = bridge[0].clone();
    assert_eq!(links_of(&bridge).len(), 2, "{:?}", links_of(&bridge));
    let status = Command::new("ip")
        .args(["link", "del", &bridge])
        .status()
        .unwrap();
    assert!(status.success());
    // (Without the bridge the address routes away from this host; whatever answers there, it
    // is not a.)
    assert_ne!(
        http_get(a_addr).ok().as_deref(),
        Some("a\n"),
        "a answers without its bridge"
    );
    agent
        .wait_for("the bridge to be repaired", Duration::from_secs(45), |_| {
            (links_of(&bridge).len() == 2).then_some(())
        })
        .unwrap();
    agent
        .wait_for("a to answer again", Duration::from_secs(10), |_| {
            http_get(a_addr).ok().filter(|b| b == "a\n")
        })
        .unwrap();
    unchanged(&agent, "a bridge repair", &["create"], &["create"]);

    // a.yaml moved to another name: the same object.
    std::fs::rename(
        agent.manifests.join("a.yaml"),
        agent.manifests.join("z-a.yaml"),
    )
    .unwrap();
    agent
        .wait_container("a", "its new file", |c| {
            c["sourceFile"]
                .as_str()
                .is_some_and(|f| f.ends_with("/z-a.yaml"))
        })
        .unwrap();
    unchanged(&agent, "a rename", &["create", "refresh"], &["create"]);

    // b.yaml saved again as it is.
    let before = passes(&agent);
    agent.write_manifest("b.yaml", &b).unwrap();
    agent
        .wait_for("a pass after the save", Duration::from_secs(10), |a| {
            Some(passes(a)).filter(|p| *p > before)
        })
        .unwrap();
    unchanged(
        &agent,
        "an identical save",
        &["create", "refresh"],
        &["create"],
    );

    // Only restartPolicy changes: a live field, the process stays.
    let hash = agent.container("b").unwrap()["specHash"].clone();
    agent
        .write_manifest("b.yaml", &format!("{b}  restartPolicy: OnFailure\n"))
        .unwrap();
    agent
        .wait_container("b", "its new revision", |c| c["specHash"] != hash)
        .unwrap();
    unchanged(
        &agent,
        "a restartPolicy edit",
        &["create", "refresh"],
        &["create", "refresh"],
    );

    // Every other live field at once: still the same process, now probed.
    let hash = agent.container("b").unwrap()["specHash"].clone();
    let live = format!(
        "{}  restartPolicy: OnFailure\n  stopSignal: SIGINT\n  imagePullPolicy: Never\n  update: {{strategy: KillThenDownload, minReady: 1s}}\n  dependsOn: [{{name: a, condition: Started}}]\n  healthcheck:\n    exec: [sh, -c, 'true']\n    interval: 1s\n",
        b.replace("stopTimeout: 2s", "stopTimeout: 1s")
    );
    agent.write_manifest("b.yaml", &live).unwrap();
    agent
        .wait_container("b", "its new revision, healthy", |c| {
            c["specHash"] != hash && c["health"]["status"] == "healthy"
        })
        .unwrap();
    unchanged(
        &agent,
        "an edit of every live field",
        &["create", "refresh"],
        &["create", "refresh", "refresh"],
    );
    finish(agent);
}

// ---- 9. host drift ----

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
    std::fs::write(cgroup.join("cgroup.procs"), pid.to_string()).unwrap();
    assert_eq!(
        std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap(),
        format!("{pid}\n")
    );
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
