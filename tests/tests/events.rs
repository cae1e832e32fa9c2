//! End to end: the agent's events — each action's result, kept in the state db across
//! restarts, served as server-sent events and printed by `berth events`, which follows new
//! ones with `-f`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_tests::agent::{berth_bin, Agent};
use berth_tests::{push_busybox, Registry};

fn manifest(name: &str, image: &str) -> String {
    format!("apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n  command: [sleep, '1000']\n  stopTimeout: 1s\n")
}

fn events(agent: &Agent, filters: &[&str]) -> String {
    let mut cmd = Command::new(berth_bin());
    cmd.args(["events", "--since", "1h", "--addr", &agent.cli_addr()]);
    for f in filters {
        cmd.args(["--filter", f]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn actions_are_events_kept_across_restarts_and_followed() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let mut agent = Agent::start(&registry).unwrap();
    agent
        .write_manifest(
            "web.yaml",
            &manifest("web", "docker.io/library/busybox:1.36"),
        )
        .unwrap();
    agent
        .wait_container("web", "running", |c| c["state"] == "running")
        .unwrap();
    agent
        .write_manifest(
            "bad.yaml",
            &manifest("bad", &format!("{}/library/nope:1", registry.host())),
        )
        .unwrap();
    agent
        .wait_for("the failed pull's event", Duration::from_secs(30), |a| {
            let out = events(a, &["name=bad", "reason=error"]);
            out.lines().next().map(str::to_string)
        })
        .unwrap();
    let web = events(&agent, &["name=web"]);
    let line = web
        .lines()
        .find(|l| l.contains("Container/web") && l.contains(" create ") && l.contains(" ok"))
        .unwrap_or_else(|| panic!("no create event of web:\n{web}"));
    assert!(line.ends_with("ok"), "{line}");
    assert!(!web.contains("Container/bad"), "the filter: {web}");

    // Kept across a restart.
    agent.restart().unwrap();
    assert!(
        events(&agent, &["name=web"]).contains(line),
        "lost by the restart"
    );

    // Followed: a new action arrives while `berth events -f` runs.
    let mut follow = Command::new(berth_bin())
        .args([
            "events",
            "-f",
            "--since",
            "0",
            "--filter",
            "name=api",
            "--addr",
            &agent.cli_addr(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    // A follower that never sees the event is killed, so the read below ends (and fails).
    let (done, cancelled) = std::sync::mpsc::channel::<()>();
    let pid = nix::unistd::Pid::from_raw(follow.id() as i32);
    let guard = std::thread::spawn(move || {
        if cancelled.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    });
    agent
        .write_manifest(
            "api.yaml",
            &manifest("api", "docker.io/library/busybox:1.36"),
        )
        .unwrap();
    let first = lines.next().map(Result::unwrap);
    let _ = done.send(());
    guard.join().unwrap();
    let first = first.expect("berth events -f printed nothing within 30s");
    assert!(
        first.contains("Container/api") && first.contains(" create "),
        "{first}"
    );
    let _ = follow.kill();
    follow.wait().unwrap();

    agent.remove_manifest("bad.yaml").unwrap();
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}
