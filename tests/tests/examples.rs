//! The examples in `examples/`, through the real binary:
//!
//! - every manifest directory validates (`berth validate -o json --config …`) against its
//!   example's agent config, and no manifest directory is left out;
//! - each host of `examples/fleet` validates with the layers its agent config's
//!   `source.git.paths` name for it, together in one directory (so references across layers
//!   resolve and an object defined in two layers fails), against the fleet's
//!   `allowedHostPaths`; and the fleet's agent config loads;
//! - `examples/iot-stack` runs end to end, offline: its manifests, with only the host paths
//!   and host ports moved into the test's own places, on stand-in images pushed under the
//!   example's image names to a loopback registry (tests/support/stand-ins/README.md). The
//!   dependents are never created before the broker is healthy, the reader waits for its
//!   device, and every container runs (the one-shot completes).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, Context};
use berth_tests::agent::{berth_bin, Agent};
use berth_tests::{push_busybox, require_tool, support_script, unix_ms, Registry};
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .canonicalize()
        .expect("examples/ exists")
}

fn berth(args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(args)
        .output()
        .expect("run the berth binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read_yaml(path: &Path) -> serde_yaml::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `*.yaml` / `*.yml` files directly in `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// Every directory under `root` that holds a manifest: a YAML file other than `agent.yaml`.
fn manifest_dirs(root: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if yaml_files(&dir)
            .iter()
            .any(|f| f.file_name().is_some_and(|n| n != "agent.yaml"))
        {
            found.insert(dir.clone());
        }
        for e in std::fs::read_dir(&dir).expect("read dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    found
}

/// `berth validate --config CONFIG DIR...` finds no problem, in JSON and in text; returns
/// the text summary (`ok: N file(s), M object(s), no problems`).
fn assert_validates(config: &Path, dirs: &[PathBuf]) -> String {
    let mut rest = vec!["--config".to_string(), config.display().to_string()];
    rest.extend(dirs.iter().map(|d| d.display().to_string()));
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let out = berth(&[&["validate", "-o", "json"], &rest[..]].concat());
    let problems: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "berth validate -o json {rest:?}: not JSON ({e}): {}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    assert_eq!(
        (out.status.code(), &problems),
        (Some(0), &Value::Array(vec![])),
        "berth validate {rest:?} found problems: {problems:#}\n{}",
        text(&out.stderr)
    );
    let out = berth(&[&["validate"], &rest[..]].concat());
    let summary = text(&out.stdout);
    assert!(
        out.status.success() && summary.starts_with("ok: ") && !summary.contains(" 0 object(s)"),
        "berth validate {rest:?}: {summary}{}",
        text(&out.stderr)
    );
    summary
}

/// Examples with a `manifests/` directory validate against their `agent.yaml` (the agent's
/// defaults, no host path allowed, when there is none); an example laid out for a git
/// source (its agent config names `source.git.paths`) is the fleet test's. Any other manifest
/// directory under `examples/` fails the test: it would go unchecked.
#[test]
fn every_example_manifest_directory_validates() {
    let root = examples();
    let scratch = tempfile::tempdir().unwrap();
    let no_config = scratch.path().join("agent.yaml");
    std::fs::write(&no_config, "").unwrap();
    let mut covered = BTreeSet::new();
    let mut examples: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    examples.sort();
    let mut validated = Vec::new();
    for example in &examples {
        let config = example.join("agent.yaml");
        let manifests = example.join("manifests");
        if config.exists() && !read_yaml(&config)["source"]["git"]["paths"].is_null() {
            // Validated per host by fleet_hosts_validate_with_their_layers.
            covered.extend(manifest_dirs(example));
            continue;
        }
        assert!(
            manifests.is_dir(),
            "{} has no manifests/ directory and no source.git.paths in an agent.yaml: this test does not know how to check it",
            example.display()
        );
        let config = if config.exists() {
            config
        } else {
            no_config.clone()
        };
        let summary = assert_validates(&config, std::slice::from_ref(&manifests));
        validated.push(format!("{}: {}", manifests.display(), summary.trim()));
        covered.insert(manifests);
    }
    let unchecked: Vec<_> = manifest_dirs(&root).difference(&covered).cloned().collect();
    assert!(
        unchecked.is_empty(),
        "manifest directories no test validates: {unchecked:?}"
    );
    // The examples this test was written for are among them.
    for name in ["quickstart", "iot-stack"] {
        assert!(
            validated
                .iter()
                .any(|v| v.contains(&format!("/examples/{name}/manifests:"))),
            "{name} not validated: {validated:?}"
        );
    }
    assert!(covered.iter().any(|d| d.ends_with("fleet/common")));
}

/// The hosts of examples/fleet and their site, as each host's `labels.site` would say.
const FLEET_HOSTS: [(&str, &str); 3] = [
    ("edge-ber-01", "berlin"),
    ("edge-ber-02", "berlin"),
    ("edge-muc-01", "munich"),
];

fn dir_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// For each host: the directories `source.git.paths` of the fleet's agent config name (with
/// `{hostname}` and `{label.site}` expanded) exist, and their manifests, copied into one
/// directory, validate against the fleet's `allowedHostPaths`. In one directory, a
/// reference from one layer to another (a host's container on the site's network) resolves,
/// and an object of the same kind and name in two layers is a problem: the example does not
/// depend on how the agent merges such objects.
#[test]
fn fleet_hosts_validate_with_their_layers() {
    let fleet = examples().join("fleet");
    let config = read_yaml(&fleet.join("agent.yaml"));
    let paths: Vec<String> = config["source"]["git"]["paths"]
        .as_sequence()
        .expect("source.git.paths is a list")
        .iter()
        .map(|p| p.as_str().expect("a path is a string").to_string())
        .collect();
    assert_eq!(
        config["labels"]["site"].as_str(),
        Some(FLEET_HOSTS[0].1),
        "the example agent.yaml is a host of the first site"
    );
    let allowed = &config["allowedHostPaths"];
    assert!(allowed.is_sequence(), "allowedHostPaths: {allowed:?}");
    let scratch = tempfile::tempdir().unwrap();
    let policy = scratch.path().join("policy.yaml");
    std::fs::write(
        &policy,
        serde_yaml::to_string(&serde_yaml::Mapping::from_iter([(
            "allowedHostPaths".into(),
            allowed.clone(),
        )]))
        .unwrap(),
    )
    .unwrap();

    // Every host and site directory is one of FLEET_HOSTS'.
    let hosts: BTreeSet<String> = FLEET_HOSTS.iter().map(|(h, _)| h.to_string()).collect();
    let sites: BTreeSet<String> = FLEET_HOSTS.iter().map(|(_, s)| s.to_string()).collect();
    assert_eq!(dir_names(&fleet.join("hosts")), hosts);
    assert_eq!(dir_names(&fleet.join("sites")), sites);

    let mut used = BTreeSet::new();
    for (host, site) in FLEET_HOSTS {
        let merged = scratch.path().join(host);
        std::fs::create_dir(&merged).unwrap();
        let mut files = 0;
        for (i, path) in paths.iter().enumerate() {
            let layer = path
                .replace("{hostname}", host)
                .replace("{label.site}", site);
            assert!(
                !layer.contains('{'),
                "{path}: a placeholder this test does not know"
            );
            let dir = fleet.join(&layer);
            assert!(dir.is_dir(), "{host}: layer {layer} does not exist");
            used.insert(dir.clone());
            for f in yaml_files(&dir) {
                // Prefixed by layer: a file name may repeat across layers.
                let name = format!(
                    "{i}-{}--{}",
                    layer.replace('/', "_"),
                    f.file_name().unwrap().to_string_lossy()
                );
                std::fs::copy(&f, merged.join(name)).unwrap();
                files += 1;
            }
        }
        assert!(files > 0, "{host}: no manifests");
        let summary = assert_validates(&policy, std::slice::from_ref(&merged));
        assert!(
            summary.starts_with(&format!("ok: {files} file(s)")),
            "{host}: {summary}"
        );
    }
    // No layer directory goes unused.
    let all: BTreeSet<PathBuf> = manifest_dirs(&fleet);
    let unused: Vec<_> = all.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "fleet directories no host uses: {unused:?}"
    );
}

/// The fleet's agent config, as written, is one the agent accepts: `berth validate
/// --config examples/fleet/agent.yaml` loads it.
#[test]
fn fleet_agent_config_loads() {
    let fleet = examples().join("fleet");
    let empty = tempfile::tempdir().unwrap();
    let config = fleet.join("agent.yaml");
    let out = berth(&[
        "validate",
        "--config",
        &config.display().to_string(),
        &empty.path().display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "berth validate --config {}: {}{}",
        config.display(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// examples/iot-stack end to end

/// The example's images and the stand-in pushed for each: (image in the manifests, overlay
/// in tests/support/stand-ins, `umoci config` arguments). `None`: the busybox test image.
type StandIn = (&'static str, Option<&'static str>, &'static [&'static str]);
const IOT_IMAGES: [StandIn; 4] = [
    (
        "docker.io/library/eclipse-mosquitto:2.0",
        Some("eclipse-mosquitto"),
        &[
            "--config.entrypoint",
            "/docker-entrypoint.sh",
            "--clear=config.cmd",
            "--config.cmd",
            "/usr/sbin/mosquitto",
            "--config.cmd",
            "-c",
            "--config.cmd",
            "/mosquitto/config/mosquitto.conf",
        ],
    ),
    (
        "docker.io/koenkk/zigbee2mqtt:2.12.1",
        Some("zigbee2mqtt"),
        &[
            "--config.entrypoint",
            "/usr/local/bin/docker-entrypoint.sh",
            "--clear=config.cmd",
            "--config.cmd",
            "/app/stand-in.sh",
            "--config.workingdir",
            "/app",
        ],
    ),
    (
        "docker.io/nodered/node-red:4.0",
        Some("node-red"),
        &[
            "--config.entrypoint",
            "/usr/src/node-red/entrypoint.sh",
            "--clear=config.cmd",
            "--config.user",
            "node-red",
            "--config.workingdir",
            "/usr/src/node-red",
        ],
    ),
    ("docker.io/library/busybox:1.36", None, &[]),
];

/// Builds a stand-in (tests/support/stand-in-image.sh) and pushes it as
/// `<registry>/<repo_tag>`.
fn push_stand_in(
    registry: &Registry,
    overlay: &str,
    repo_tag: &str,
    config: &[&str],
) -> anyhow::Result<()> {
    require_tool("umoci", "umoci")?;
    require_tool("skopeo", "skopeo")?;
    let busybox = std::env::var("BUSYBOX").unwrap_or_else(|_| "/bin/busybox".to_string());
    if !Path::new(&busybox).is_file() {
        bail!("test prerequisite missing: {busybox} does not exist (hint: apt-get install busybox-static)");
    }
    let work = tempfile::Builder::new()
        .prefix("berth-test-stand-in-")
        .tempdir()
        .context("create image work dir")?;
    let dest = format!("docker://{}/{repo_tag}", registry.host());
    let out = Command::new("sh")
        .arg(support_script("stand-in-image.sh"))
        .arg(work.path().join("build"))
        .arg(&dest)
        .arg(support_script("stand-ins").join(overlay))
        .args(config)
        .output()
        .context("run tests/support/stand-in-image.sh")?;
    if !out.status.success() {
        bail!(
            "building and pushing the {overlay} stand-in as {dest} failed ({}): {}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    Ok(())
}

/// `text` with `from` replaced by `to`, where `from` must occur exactly `count` times: a
/// change of the example that this test does not follow fails here.
fn replace_exactly(text: &str, from: &str, to: &str, count: usize, what: &str) -> String {
    let found = text.matches(from).count();
    assert_eq!(found, count, "{what}: {from:?} occurs {found} times");
    text.replace(from, to)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}

/// Every `hostPort: N` of `text` replaced by a free port (the same one for the same N);
/// `ports` gathers N → the port used.
fn move_host_ports(text: &str, ports: &mut BTreeMap<u16, u16>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("hostPort: ") {
        let (head, tail) = rest.split_at(i + "hostPort: ".len());
        out.push_str(head);
        let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
        let n: u16 = digits.parse().expect("hostPort is a number");
        let port = *ports.entry(n).or_insert_with(free_port);
        out.push_str(&port.to_string());
        rest = &tail[digits.len()..];
    }
    out.push_str(rest);
    out
}

fn find<'a>(cs: &'a [Value], name: &str) -> Option<&'a Value> {
    cs.iter().find(|c| c["name"] == name)
}

/// Creates `path` inside the container whose init is `pid`.
fn touch_in(pid: i64, path: &str) {
    let p = format!("/proc/{pid}/root{path}");
    std::fs::write(&p, "").unwrap_or_else(|e| panic!("create {p}: {e}"));
}

/// A container's log lines (stdout and stderr) with the unix ms the shim logged each at.
fn log_lines(agent: &Agent, name: &str) -> Vec<(u64, String)> {
    agent
        .get(&format!("/v1/containers/{name}/logs"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            (
                unix_ms(v["time"].as_str().unwrap()),
                v["log"].as_str().unwrap().trim_end().to_string(),
            )
        })
        .collect()
}

/// Waits for `name` to log `line`; returns when it did (unix ms).
fn logged(agent: &Agent, name: &str, line: &str) -> u64 {
    agent
        .wait_for(
            &format!("{name} to log {line:?}"),
            Duration::from_secs(20),
            |a| {
                log_lines(a, name)
                    .into_iter()
                    .find(|(_, l)| l == line)
                    .map(|(t, _)| t)
            },
        )
        .unwrap()
}

fn http_get(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    if !resp.starts_with("HTTP/1.") || !resp.contains(" 200 ") {
        return Err(resp);
    }
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .ok_or(resp)
}

/// The dependents of the broker and the one-shot, as every look at the API must find them:
/// nothing of zigbee2mqtt or the dashboard exists before the broker is healthy, nor of the
/// dashboard before dashboard-init completed.
fn assert_order(cs: &[Value]) {
    let created = |n: &str| find(cs, n).is_some_and(|c| !c["id"].is_null());
    let broker_healthy = find(cs, "broker").is_some_and(|b| b["health"]["status"] == "healthy");
    for dependent in ["zigbee2mqtt", "dashboard"] {
        assert!(
            !created(dependent) || broker_healthy,
            "{dependent} created before the broker was healthy: {cs:#?}"
        );
    }
    if created("dashboard") {
        let init = find(cs, "dashboard-init").expect("dashboard-init");
        assert_eq!(
            (init["state"].as_str(), init["exitCode"].as_i64()),
            (Some("exited"), Some(0)),
            "dashboard created before dashboard-init completed: {cs:#?}"
        );
    }
}

#[test]
fn iot_stack_runs_end_to_end_on_stand_in_images() {
    let example = examples().join("iot-stack");
    let registry = Registry::start().expect("start registry");

    // The test's host: the broker's config dir and, later, the adapter's device node.
    let host = tempfile::Builder::new()
        .prefix("berth-test-iot-host-")
        .tempdir()
        .unwrap();
    let host_dir = host.path().display().to_string();
    let conf_dir = host.path().join("etc/berth/iot-stack/mosquitto");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::copy(
        example.join("mosquitto/mosquitto.conf"),
        conf_dir.join("mosquitto.conf"),
    )
    .unwrap();
    std::fs::create_dir_all(host.path().join("dev")).unwrap();
    let device = host.path().join("dev/ttyUSB0");

    // The example's manifests, with the host paths and host ports moved into the test's.
    let mut manifests: Vec<(String, String)> = Vec::new();
    let mut ports = BTreeMap::new();
    let mut images = BTreeSet::new();
    for f in yaml_files(&example.join("manifests")) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let mut t = std::fs::read_to_string(&f).unwrap();
        for line in t.lines() {
            if let Some(image) = line.trim().strip_prefix("image: ") {
                images.insert(image.to_string());
            }
        }
        t = move_host_ports(&t, &mut ports);
        match name.as_str() {
            "broker.yaml" => {
                t = replace_exactly(
                    &t,
                    "hostPath: /etc/berth/iot-stack/mosquitto,",
                    &format!("hostPath: {host_dir}/etc/berth/iot-stack/mosquitto,"),
                    1,
                    &name,
                )
            }
            "zigbee2mqtt.yaml" => {
                // Same path inside the container: the command does not change.
                t = replace_exactly(
                    &t,
                    "{hostPath: /dev/ttyUSB0,",
                    &format!("{{hostPath: {host_dir}/dev/ttyUSB0, path: /dev/ttyUSB0,"),
                    1,
                    &name,
                )
            }
            _ => {}
        }
        let left: Vec<&str> = t
            .lines()
            .filter(|l| l.contains("hostPath: /") && !l.contains(&host_dir))
            .collect();
        assert!(
            left.is_empty(),
            "{name}: host paths this test does not stand in for: {left:?}"
        );
        manifests.push((name, t));
    }
    let stand_ins: BTreeSet<String> = IOT_IMAGES.iter().map(|(i, ..)| i.to_string()).collect();
    assert_eq!(images, stand_ins, "the example's images and the stand-ins");
    assert_eq!(
        ports.keys().copied().collect::<Vec<_>>(),
        [1880, 1883, 8080],
        "published ports"
    );
    for (image, overlay, config) in IOT_IMAGES {
        let repo_tag = image.strip_prefix("docker.io/").unwrap();
        match overlay {
            Some(o) => push_stand_in(&registry, o, repo_tag, config),
            None => push_busybox(&registry, repo_tag, &[]),
        }
        .unwrap_or_else(|e| panic!("push a stand-in for {image}: {e:#}"));
    }

    // The example's agent config, with its paths moved the same way.
    let agent_yaml = read_yaml(&example.join("agent.yaml"));
    let keys: Vec<&str> = agent_yaml
        .as_mapping()
        .expect("agent.yaml is a mapping")
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, ["allowedHostPaths"], "keys of iot-stack/agent.yaml");
    let allowed: Vec<String> = agent_yaml["allowedHostPaths"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| match p.as_str().unwrap() {
            "/etc/berth/iot-stack" => format!("{host_dir}/etc/berth/iot-stack"),
            "/dev/ttyUSB0" => device.display().to_string(),
            other => panic!("allowedHostPaths: {other}: this test does not stand in for it"),
        })
        .collect();
    let extra = format!(
        "allowedHostPaths:\n{}",
        allowed
            .iter()
            .map(|p| format!("  - {p}\n"))
            .collect::<String>()
    );
    let agent = Agent::start_with(&registry, &extra).expect("start agent");
    for (name, text) in &manifests {
        agent.write_manifest(name, text).unwrap();
    }
    let look = |a: &Agent| {
        let cs = a.containers().ok()?;
        assert_order(&cs);
        Some(cs)
    };

    // The broker runs but does not listen yet: its dependents wait, and say so; the
    // one-shot, which waits for nothing, completes.
    let cs = agent
        .wait_for(
            "the broker to run unhealthy, its dependents to wait",
            Duration::from_secs(60),
            |a| {
                look(a).filter(|cs| {
                    let c = |n: &str| find(cs, n).cloned().unwrap_or_default();
                    c("broker")["state"] == "running"
                        && c("broker")["health"]["status"] == "starting"
                        && c("zigbee2mqtt")["waitingFor"] == "broker to be healthy"
                        && c("dashboard")["waitingFor"] == "broker to be healthy"
                        && c("dashboard-init")["state"] == "exited"
                })
            },
        )
        .unwrap();
    let init = find(&cs, "dashboard-init").unwrap();
    assert_eq!(
        (init["exitCode"].as_i64(), init["reason"].as_str()),
        (Some(0), Some("Completed")),
        "{init}"
    );
    for n in ["zigbee2mqtt", "dashboard"] {
        let c = find(&cs, n).unwrap();
        assert_eq!(
            (c["state"].as_str(), &c["id"]),
            (Some("waiting"), &Value::Null)
        );
    }
    // Three more seconds of looks: still nothing of them.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        let cs = look(&agent).expect("containers");
        assert_eq!(find(&cs, "zigbee2mqtt").unwrap()["state"], "waiting");
        std::thread::sleep(Duration::from_millis(100));
    }
    let broker_pid = find(&cs, "broker").unwrap()["pid"].as_i64().expect("pid");
    // It read the config from the host path, and persists on its volume.
    logged(
        &agent,
        "broker",
        "mosquitto (stand-in) starting with /mosquitto/config/mosquitto.conf",
    );

    // The listener opens: the broker turns healthy.
    touch_in(broker_pid, "/tmp/listen");
    let cs = agent
        .wait_for("the broker to be healthy", Duration::from_secs(30), |a| {
            look(a).filter(|cs| find(cs, "broker").unwrap()["health"]["status"] == "healthy")
        })
        .unwrap();
    // The next probe is 15s (interval) away: this is the first healthy one.
    let healthy_at = find(&cs, "broker").unwrap()["health"]["checkedAtMs"]
        .as_u64()
        .expect("probe time");

    // zigbee2mqtt's adapter is not plugged in: a setup error, retried.
    let z = agent
        .wait_for(
            "zigbee2mqtt to fail for its missing device",
            Duration::from_secs(30),
            |a| {
                look(a)?
                    .into_iter()
                    .find(|c| c["name"] == "zigbee2mqtt" && c["reason"] == "SetupError")
            },
        )
        .unwrap();
    let message = z["message"].as_str().unwrap_or_default();
    assert!(
        z["state"] == "failed" && message.contains(&device.display().to_string()),
        "{z:#}"
    );
    assert!(
        log_lines(&agent, "zigbee2mqtt").is_empty(),
        "zigbee2mqtt ran without its device"
    );
    // The adapter appears (a device node of the test's own with /dev/null's numbers).
    let null = std::fs::metadata("/dev/null").unwrap();
    nix::sys::stat::mknod(
        &device,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o660),
        null.rdev(),
    )
    .unwrap();
    let cs = agent
        .wait_for(
            "every container to run healthy",
            Duration::from_secs(90),
            |a| {
                look(a).filter(|cs| {
                    ["broker", "zigbee2mqtt", "dashboard"].iter().all(|n| {
                        find(cs, n).is_some_and(|c| {
                            c["state"] == "running" && c["health"]["status"] == "healthy"
                        })
                    })
                })
            },
        )
        .unwrap();
    for n in ["broker", "dashboard", "dashboard-init"] {
        assert_eq!(find(&cs, n).unwrap()["restartCount"], 0, "{n}: {cs:#?}");
    }
    // What the reader did, in order: after the broker's first healthy probe it opened its
    // device (the node is in the container, as the host's), reached the broker by name and
    // "published"; the broker received it.
    let opened = logged(&agent, "zigbee2mqtt", "Zigbee adapter /dev/ttyUSB0 open");
    logged(
        &agent,
        "zigbee2mqtt",
        "Connected to MQTT server mqtt://broker:1883",
    );
    assert!(
        healthy_at <= opened,
        "zigbee2mqtt ran at {opened}, before the broker's first healthy probe at {healthy_at}"
    );
    logged(
        &agent,
        "broker",
        r#"received: zigbee2mqtt/bridge/state {"state":"online"}"#,
    );
    assert!(
        !log_lines(&agent, "zigbee2mqtt")
            .iter()
            .any(|(_, l)| l.contains("MQTT failed")),
        "zigbee2mqtt ran before it could reach the broker"
    );
    let z_pid = find(&cs, "zigbee2mqtt").unwrap()["pid"].as_i64().unwrap();
    let node = std::fs::metadata(format!("/proc/{z_pid}/root/dev/ttyUSB0")).unwrap();
    assert!(
        node.file_type().is_char_device() && node.rdev() == null.rdev(),
        "/dev/ttyUSB0 in zigbee2mqtt"
    );

    // The published ports, from the host: the two web UIs and the broker.
    let addr = |p: u16| -> SocketAddr { format!("127.0.0.1:{}", ports[&p]).parse().unwrap() };
    let frontend = http_get(addr(8080)).expect("zigbee2mqtt's frontend");
    assert!(frontend.contains("Zigbee2MQTT"), "{frontend}");
    let editor = http_get(addr(1880)).expect("the dashboard");
    assert!(editor.contains("Node-RED"), "{editor}");
    let mut s = TcpStream::connect_timeout(&addr(1883), Duration::from_secs(2)).unwrap();
    s.write_all(b"sensors/test 21.5\n").unwrap();
    drop(s);
    logged(&agent, "broker", "received: sensors/test 21.5");

    // The data is on the volumes: zigbee2mqtt's first-start config, the broker's persistence,
    // the dashboard's flows written as uid 1000 (the one-shot handed the volume over).
    let volumes: Vec<Value> = serde_json::from_str(&agent.get("/v1/volumes").unwrap()).unwrap();
    let volume = |n: &str| -> PathBuf {
        let v = volumes
            .iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("volume {n}: {volumes:#?}"));
        assert_eq!(v["reclaimPolicy"], "Retain", "{v}");
        PathBuf::from(v["path"].as_str().unwrap())
    };
    assert!(volume("zigbee-data").join("configuration.yaml").is_file());
    assert!(volume("mqtt-data").join("mosquitto.db").is_file());
    let flows = std::fs::metadata(volume("dashboard-data").join("flows.json")).unwrap();
    assert_eq!(flows.uid(), 1000, "flows.json owner");

    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}
