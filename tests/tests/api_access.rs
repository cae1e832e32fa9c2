//! End to end: who may read what from the agent's API. A TCP listener that is not loopback
//! needs a token or the agent refuses to start; with a token every request but the health
//! endpoints needs it; without one, container logs are not served over TCP at all, only on the
//! unix socket (mode 0660), which a user outside root and the berth group cannot open.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use berth_tests::agent::{berth_bin, Agent};
use berth_tests::{push_busybox, Registry};

const TOKEN: &str = "0123456789abcdef-test-token";

fn echo_container(agent: &Agent) {
    agent
        .write_manifest(
            "web.yaml",
            "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  image: docker.io/library/busybox:1.36\n  command: [sh, -c, 'echo the-log-line; exec sleep 1000']\n  stopTimeout: 1s\n",
        )
        .unwrap();
    agent
        .wait_container("web", "running", |c| c["state"] == "running")
        .unwrap();
    agent
        .wait_for("the log line", std::time::Duration::from_secs(10), |a| {
            a.get("/v1/containers/web/logs")
                .ok()
                .filter(|l| l.contains("the-log-line"))
        })
        .unwrap();
}

#[test]
fn a_listener_that_is_not_loopback_needs_a_token_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "manifests: {0}/m\nstateDir: {0}/state\nrunDir: {0}/run\nlisten: 0.0.0.0:1\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(berth_bin())
        .args(["agent", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listen 0.0.0.0:1 is not a loopback address: set apiTokenFile"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "it refused before touching anything"
    );
}

#[test]
fn with_a_token_every_request_but_health_needs_it() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let agent = Agent::start_with(
        &registry,
        &format!("apiTokenFile: {}\n", token_file.display()),
    )
    .unwrap();
    echo_container(&agent);
    for path in ["/healthz", "/readyz"] {
        let (code, _) = agent.tcp_request("GET", path, None).unwrap();
        assert_eq!(code, 200, "{path} needs no token");
    }
    for path in [
        "/v1/containers",
        "/metrics",
        "/v1/state",
        "/v1/containers/web/logs",
        "/nope",
    ] {
        let (code, body) = agent.tcp_request("GET", path, None).unwrap();
        assert_eq!(code, 401, "{path} without a token: {body}");
        let (code, _) = agent
            .tcp_request("GET", path, Some("wrong-token-0123456789"))
            .unwrap();
        assert_eq!(code, 401, "{path} with a wrong token");
    }
    let (code, body) = agent
        .tcp_request("GET", "/v1/containers/web/logs", Some(TOKEN))
        .unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("the-log-line"), "{body}");
    let (code, body) = agent.tcp_request("GET", "/metrics", Some(TOKEN)).unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("berth_containers"), "{body}");
    // The CLI sends the token from --token-file.
    let out = Command::new(berth_bin())
        .args(["ps", "--addr", &agent.addr.to_string(), "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("web"));
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}

#[test]
fn without_a_token_logs_are_only_on_the_socket() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let agent = Agent::start(&registry).unwrap();
    echo_container(&agent);
    let (code, body) = agent
        .tcp_request("GET", "/v1/containers/web/logs", None)
        .unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("served on the unix socket"), "{body}");
    let (code, _) = agent.tcp_request("GET", "/v1/containers", None).unwrap();
    assert_eq!(code, 200, "the status stays on loopback");

    let mode = std::fs::metadata(agent.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    let logs = |addr: &str, as_nobody: bool| {
        let mut cmd = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(berth_bin());
            c
        } else {
            Command::new(berth_bin())
        };
        cmd.args(["logs", "--addr", addr, "web"]).output().unwrap()
    };
    let root = logs(&agent.cli_addr(), false);
    assert!(
        root.status.success(),
        "{}",
        String::from_utf8_lossy(&root.stderr)
    );
    assert!(String::from_utf8_lossy(&root.stdout).contains("the-log-line"));
    // A user that is not root nor in the berth group: no logs, by either way in.
    berth_tests::require_tool("setpriv", "util-linux").unwrap();
    for (addr, refused) in [
        (agent.cli_addr(), "connect to the berth agent at unix:"),
        (agent.addr.to_string(), "HTTP 403"),
    ] {
        let nobody = logs(&addr, true);
        let stderr = String::from_utf8_lossy(&nobody.stderr);
        assert!(!nobody.status.success(), "nobody read logs at {addr}");
        assert!(stderr.contains(refused), "nobody at {addr}: {stderr}");
        assert!(!String::from_utf8_lossy(&nobody.stdout).contains("the-log-line"));
    }
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}
