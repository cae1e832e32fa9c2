//! Agents that follow a git repository.

use std::time::{Duration, Instant};

use berth_tests::agent::Agent;
use berth_tests::git::Server;
use berth_tests::{push_busybox, Registry};
use nix::sys::signal::Signal;
use serde_json::Value;

use super::World;

fn web(command: &str) -> String {
    format!("apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  image: docker.io/library/busybox:1.36\n  command: [sh, -c, '{command}']\n  stopTimeout: 1s\n")
}

fn source_status(agent: &Agent) -> Value {
    serde_json::from_str(&agent.get("/v1/source").unwrap()).unwrap()
}

/// The value of one metric series (`name{labels}`) in the agent's /metrics.
fn metric(agent: &Agent, series: &str) -> Option<f64> {
    let text = agent.get("/metrics").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until the agent's source status satisfies `ok`.
fn wait_source(agent: &Agent, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    agent
        .wait_for(what, Duration::from_secs(30), |a| {
            let s = source_status(a);
            ok(&s).then_some(s)
        })
        .unwrap()
}

fn start(w: &World, url: &str, extra: &str) -> (Registry, Agent) {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let config = format!(
        "source:\n  git:\n    url: {url}\n    paths: [apps]\n    verify:\n      allowedSigners: {}\n{extra}",
        w.allowed_signers.display()
    );
    let agent = Agent::start_with(&registry, &config).expect("start agent");
    (registry, agent)
}

fn finish(w: &World, agent: Agent) {
    w.publish(&[("apps/web.yaml", None)], "remove everything");
    agent.signal(Signal::SIGHUP).unwrap();
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}

#[test]
fn only_signed_revisions_that_load_are_applied_and_sighup_syncs_now() {
    let w = World::new();
    let daemon = Server::git_daemon(&w.path().join("srv"), w.path()).unwrap();
    let url = format!("git://127.0.0.1:{}/fleet.git", daemon.port);
    let first = w.publish(
        &[
            ("apps/.keep", Some("")),
            ("apps/web.yaml", Some(&web("sleep 1000"))),
        ],
        "web",
    );
    // An hour between syncs: every later sync in this test is the SIGHUP's.
    let (_registry, agent) = start(&w, &url, "    interval: 1h\n");
    let running = agent
        .wait_container("web", "running", |c| c["state"] == "running")
        .unwrap();
    let s = source_status(&agent);
    assert_eq!(
        (
            &s["kind"],
            &s["url"],
            &s["ref"],
            &s["revision"],
            &s["error"]
        ),
        (
            &"git".into(),
            &url.clone().into(),
            &"main".into(),
            &first.clone().into(),
            &Value::Null
        ),
        "{s}"
    );
    assert_eq!(s["paths"], serde_json::json!(["apps"]));
    assert!(
        s["signer"]
            .as_str()
            .unwrap()
            .starts_with("admin@example.org (SHA256:"),
        "{s}"
    );
    assert_eq!(
        metric(
            &agent,
            &format!("berth_source_revision_info{{revision=\"{first}\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&agent, "berth_source_sync_total{result=\"ok\"}"),
        Some(1.0)
    );
    assert!(metric(&agent, "berth_source_last_sync_timestamp_seconds").unwrap() > 1.7e9);

    // Signed by a key the fleet does not trust: refused, shown, nothing changes.
    let foreign = w
        .repo
        .commit(
            &[("apps/web.yaml", Some(&web("sleep 2000")))],
            Some(&w.stranger),
            "foreign",
        )
        .unwrap();
    w.repo.push(&w.bare, "main:main").unwrap();
    agent.signal(Signal::SIGHUP).unwrap();
    let s = wait_source(&agent, "the foreign commit to be refused", |s| {
        !s["error"].is_null()
    });
    let error = s["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "revision {foreign} refused: the commit is signed by SHA256:"
        )),
        "{s}"
    );
    assert!(
        error.ends_with("which is not in the allowed signers"),
        "{s}"
    );
    assert_eq!(s["revision"], first.as_str());
    assert_eq!(
        metric(&agent, "berth_source_sync_total{result=\"unverified\"}"),
        Some(1.0)
    );

    // Signed, but a manifest that does not load: the whole revision is refused, with file:line.
    let broken = w.publish(
        &[("apps/web.yaml", Some("apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  image: [not, a, string]\n"))],
        "broken",
    );
    agent.signal(Signal::SIGHUP).unwrap();
    let s = wait_source(&agent, "the broken revision to be refused", |s| {
        s["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not load"))
    });
    let error = s["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "revision {broken} does not load, not applied: apps/web.yaml:6:"
        )),
        "{s}"
    );
    assert_eq!(s["revision"], first.as_str());
    assert_eq!(
        metric(&agent, "berth_source_sync_total{result=\"invalid\"}"),
        Some(1.0)
    );
    let web_now = agent.container("web").unwrap();
    assert_eq!(
        (&web_now["id"], &web_now["pid"], &web_now["state"]),
        (&running["id"], &running["pid"], &"running".into()),
        "a refused revision changed the container"
    );

    // History rewritten: a signed commit force-pushed over main is applied.
    w.repo
        .git(&["checkout", "-q", "--orphan", "rewritten"])
        .unwrap();
    let rewritten = w
        .repo
        .commit(
            &[("apps/web.yaml", Some(&web("sleep 3000")))],
            Some(&w.admin),
            "rewritten",
        )
        .unwrap();
    w.repo.push(&w.bare, "rewritten:main").unwrap();
    agent.signal(Signal::SIGHUP).unwrap();
    let s = wait_source(&agent, "the force-pushed revision", |s| {
        s["revision"] == rewritten.as_str()
    });
    assert_eq!(s["error"], Value::Null, "{s}");
    let recreated = agent
        .wait_container("web", "recreated", |c| {
            c["state"] == "running" && c["pid"] != running["pid"]
        })
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", recreated["pid"])).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline)
            .replace('\0', " ")
            .contains("sleep 3000"),
        "{recreated}: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    assert_eq!(
        metric(
            &agent,
            &format!("berth_source_revision_info{{revision=\"{rewritten}\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &agent,
            &format!("berth_source_revision_info{{revision=\"{first}\"}}")
        ),
        None
    );
    w.repo.git(&["branch", "-q", "-M", "main"]).unwrap();
    finish(&w, agent);
}

#[test]
fn with_the_server_gone_even_across_a_restart_no_container_changes() {
    let w = World::new();
    let daemon = Server::git_daemon(&w.path().join("srv"), w.path()).unwrap();
    let url = format!("git://127.0.0.1:{}/fleet.git", daemon.port);
    let first = w.publish(
        &[
            ("apps/.keep", Some("")),
            ("apps/web.yaml", Some(&web("sleep 1000"))),
        ],
        "web",
    );
    let (_registry, mut agent) = start(&w, &url, "    interval: 1s\n");
    let running = agent
        .wait_container("web", "running", |c| c["state"] == "running")
        .unwrap();

    drop(daemon);
    agent.restart().unwrap();
    let restarted = Instant::now();
    // Several failed syncs after the restart.
    agent
        .wait_for("three failed syncs", Duration::from_secs(30), |a| {
            metric(a, "berth_source_sync_total{result=\"fetch_failed\"}").filter(|n| *n >= 3.0)
        })
        .unwrap();
    let s = source_status(&agent);
    assert_eq!(s["revision"], first.as_str(), "{s}");
    assert!(
        s["error"].as_str().unwrap().contains("Connection refused"),
        "{s}"
    );
    assert!(
        s["syncedAt"].as_u64().unwrap() < s["attemptedAt"].as_u64().unwrap(),
        "{s}"
    );
    assert_eq!(
        metric(
            &agent,
            &format!("berth_source_revision_info{{revision=\"{first}\"}}")
        ),
        Some(1.0)
    );
    let web_now = agent.container("web").unwrap();
    assert_eq!(
        (&web_now["id"], &web_now["pid"], &web_now["state"]),
        (&running["id"], &running["pid"], &"running".into()),
        "the container changed while offline ({:?} after the restart)",
        restarted.elapsed()
    );

    // Back online through another URL (the config changes); the removal is applied.
    let file_url = format!("file://{}", w.bare.display());
    agent.edit_config_and_restart(&url, &file_url).unwrap();
    finish(&w, agent);
}

#[test]
fn a_server_that_hangs_is_cut_off_at_the_timeout() {
    let w = World::new();
    let silent = Server::silent(w.path()).unwrap();
    let url = format!("git://127.0.0.1:{}/fleet.git", silent.port);
    let (_registry, agent) = start(&w, &url, "    interval: 1h\n    timeout: 2s\n");
    let s = wait_source(&agent, "the fetch to time out", |s| !s["error"].is_null());
    assert_eq!(
        s["error"],
        format!("{url} did not answer within 2s: the fetch was stopped (hint: a slow link needs a larger source.git.timeout)").as_str()
    );
    assert_eq!(s["revision"], Value::Null);
    // The fetch process and everything it started are gone.
    let agent_pid = agent.pid().unwrap();
    let children: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid: i32 = stat[stat.rfind(')')? + 2..]
                .split(' ')
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == agent_pid)
                .then(|| std::fs::read_to_string(e.path().join("cmdline")).unwrap_or_default())
        })
        .filter(|cmd| cmd.contains("source-fetch"))
        .collect();
    assert!(children.is_empty(), "fetch processes left: {children:?}");
    // No revision yet is not an empty revision: the agent runs and removes nothing.
    assert_eq!(agent.containers().unwrap(), Vec::<Value>::new());
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}
