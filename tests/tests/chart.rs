//! End to end: the Helm chart (`charts/berth`) and the monitoring files it ships.
//!
//! - `helm lint --strict` with the default values and each `ci/*-values.yaml`; values the
//!   schema or the templates refuse are refused.
//! - `helm template` of each: every object valid for Kubernetes 1.31 (`kubernetes-validate
//!   --strict`), the prometheus-operator kinds it has no schema for checked by content (the
//!   PrometheusRule's groups are the rule file, and promtool accepts them); the DaemonSet as
//!   the agent needs it; the agent config the chart renders loaded by berth itself.
//! - `promtool check rules` and `promtool test rules` on the rule file; the dashboard's
//!   queries parsed by promtool too.
//! - Every metric the rules and the dashboard query is exported by a live agent, with the
//!   labels and label values they match on; the `berth_source_*` ones by an agent that
//!   follows a git repository.
//!
//! helm, promtool and kubernetes-validate come from `/var/cache/berth-tests/bin`, where
//! tests/run-all.sh installs them, or from PATH; a missing one fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use berth_tests::agent::{berth_bin, Agent};
use berth_tests::{push_busybox, Registry};
use serde_json::Value;

/// Where tests/run-all.sh installs the pinned tools.
const TOOLS: &str = "/var/cache/berth-tests/bin";
/// The Kubernetes version the chart is rendered and validated for.
const KUBE_VERSION: &str = "1.31.0";
const NAMESPACE: &str = "berth-system";
const IMAGE: &str = "docker.io/library/busybox:1.36";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}

fn chart() -> PathBuf {
    repo().join("charts/berth")
}

/// A tool of the chart checks: the pinned one, else the one in PATH, else a failed test.
fn tool(name: &str) -> PathBuf {
    let pinned = Path::new(TOOLS).join(name);
    if pinned.is_file() {
        return pinned;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "test prerequisite missing: `{name}` is neither in {TOOLS} nor in PATH (hint: tests/run-all.sh installs helm, promtool and kubernetes-validate there)"
            )
        })
}

fn run<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `program args`; panics with its output unless it succeeds. Returns stdout and stderr.
fn ok<S: AsRef<OsStr> + std::fmt::Debug>(program: &Path, args: &[S]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{} {args:?}: {}\n{}",
        program.display(),
        out.status,
        text(&out)
    );
    text(&out)
}

/// The values files the chart is checked with: none (the defaults), then each `ci/*.yaml`.
fn values_files() -> Vec<Option<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .expect("charts/berth/ci")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|f| f.ends_with("full-values.yaml")),
        "{files:?}"
    );
    std::iter::once(None)
        .chain(files.into_iter().map(Some))
        .collect()
}

fn label(values: &Option<PathBuf>) -> String {
    values.as_ref().map_or("the default values".into(), |p| {
        p.file_name().unwrap().to_string_lossy().into_owned()
    })
}

fn helm_args(chart: &Path, values: &Option<PathBuf>, sets: &[&str]) -> Vec<String> {
    let mut args = vec![
        "template".to_string(),
        "rel".into(),
        chart.display().to_string(),
        "--namespace".into(),
        NAMESPACE.into(),
        "--kube-version".into(),
        KUBE_VERSION.into(),
    ];
    if let Some(v) = values {
        args.extend(["-f".into(), v.display().to_string()]);
    }
    for s in sets {
        args.extend(["--set".into(), s.to_string()]);
    }
    args
}

/// `helm template` of the chart: its objects.
fn render(values: &Option<PathBuf>, sets: &[&str]) -> Vec<Value> {
    let out = ok(&tool("helm"), &helm_args(&chart(), values, sets));
    parse_docs(&out)
}

/// The documents of a YAML stream (helm separates them by `---` lines).
fn parse_docs(yaml: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in yaml.lines() {
        if line == "---" {
            docs.push(String::new());
        } else {
            let doc = docs.last_mut().unwrap();
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.iter()
        .map(|d| {
            serde_yaml::from_str::<Value>(d).unwrap_or_else(|e| panic!("rendered YAML: {e}\n{d}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {objects:#?}"))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = objects
        .iter()
        .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"]))
        .collect();
    k.sort();
    k
}

/// The agent config the chart renders, parsed.
fn agent_config(objects: &[Value]) -> Value {
    let text = find(objects, "ConfigMap", "rel-berth")["data"]["agent.yaml"]
        .as_str()
        .expect("agent.yaml in the config ConfigMap");
    serde_yaml::from_str(text).unwrap()
}

fn rules_file() -> PathBuf {
    chart().join("files/berth-rules.yaml")
}

fn dashboard_file() -> PathBuf {
    chart().join("files/berth-fleet.json")
}

fn yaml_file(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dashboard_file()).unwrap()).unwrap()
}

#[test]
fn helm_lint_strict_passes_and_refuses_bad_values() {
    let helm = tool("helm");
    let version = ok(&helm, &["version", "--short"]);
    assert!(version.starts_with("v3."), "{version}");
    for values in values_files() {
        let mut args = vec![
            "lint".to_string(),
            "--strict".into(),
            chart().display().to_string(),
        ];
        if let Some(v) = &values {
            args.extend(["-f".into(), v.display().to_string()]);
        }
        let out = ok(&helm, &args);
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed")
                && !out.contains("[WARNING]")
                && !out.contains("[ERROR]"),
            "{}: {out}",
            label(&values)
        );
    }
    // The schema and the templates refuse what the agent would not run with.
    for (set, says) in [
        (
            "config.bogus=1",
            "additional properties 'bogus' not allowed",
        ),
        (
            "config.listen=0.0.0.0:1",
            "additional properties 'listen' not allowed",
        ),
        ("config.resyncInterval=30", "/config/resyncInterval"),
        (
            "manifests.from=svn",
            "value must be one of 'configMap', 'git'",
        ),
        ("port=70000", "/port"),
        (
            "manifests.from=git",
            "manifests.git.url is required when manifests.from is git",
        ),
        (
            "manifests.git.secret.tokenKey=token",
            "manifests.git.secret.name is required",
        ),
    ] {
        let out = run(&helm, &helm_args(&chart(), &None, &[set]));
        assert!(
            !out.status.success() && text(&out).contains(says),
            "--set {set}: {}\n{}",
            out.status,
            text(&out)
        );
    }
}

/// kubernetes-validate on one object: (passed, its output).
fn kubernetes_validate(dir: &Path, n: usize, object: &Value) -> (bool, String) {
    let file = dir.join(format!("{n}.yaml"));
    std::fs::write(&file, serde_yaml::to_string(object).unwrap()).unwrap();
    let out = run(
        &tool("kubernetes-validate"),
        &[
            OsStr::new("--strict"),
            OsStr::new("-k"),
            OsStr::new(KUBE_VERSION),
            file.as_os_str(),
        ],
    );
    let said = text(&out);
    (
        out.status.success() && said.contains(" passed for resource "),
        said,
    )
}

#[test]
fn every_rendered_object_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for values in values_files() {
        let objects = render(&values, &[]);
        let name = label(&values);
        let expected: &[&str] = match name.as_str() {
            "the default values" | "configmap-values.yaml" => &[
                "ConfigMap/\"rel-berth\"",
                "ConfigMap/\"rel-berth-manifests\"",
                "DaemonSet/\"rel-berth\"",
                "Secret/\"rel-berth-api-token\"",
                "Service/\"rel-berth\"",
            ],
            "full-values.yaml" => &[
                "ConfigMap/\"rel-berth\"",
                "ConfigMap/\"rel-berth-dashboard\"",
                "DaemonSet/\"rel-berth\"",
                "PrometheusRule/\"rel-berth\"",
                "Service/\"rel-berth\"",
                "ServiceMonitor/\"rel-berth\"",
            ],
            "git-https-values.yaml" => &[
                "ConfigMap/\"rel-berth\"",
                "DaemonSet/\"rel-berth\"",
                "Secret/\"rel-berth-api-token\"",
                "Service/\"rel-berth\"",
            ],
            other => panic!("a values file this test does not know: {other}"),
        };
        assert_eq!(kinds(&objects), expected, "{name}");
        for object in &objects {
            n += 1;
            let kind = object["kind"].as_str().unwrap();
            let (passed, said) = kubernetes_validate(dir.path(), n, object);
            if object["apiVersion"] == "monitoring.coreos.com/v1" {
                // Not a kind of Kubernetes itself: its content is checked below.
                assert!(
                    said.contains(&format!("Couldn't find schema for kind {kind}")),
                    "{name}: {said}"
                );
            } else {
                assert!(passed, "{name}: {kind} is not valid:\n{said}\n{object:#}");
            }
        }
    }
    // The validator does refuse what Kubernetes would: a misspelled field of the pod.
    let mut objects = render(&None, &[]);
    let ds = objects
        .iter_mut()
        .find(|o| o["kind"] == "DaemonSet")
        .unwrap();
    ds["spec"]["template"]["spec"]["hostPid"] = Value::Bool(true);
    let (passed, said) = kubernetes_validate(dir.path(), 0, ds);
    assert!(!passed && said.contains("hostPid"), "{said}");
}

fn container(objects: &[Value]) -> &Value {
    &find(objects, "DaemonSet", "rel-berth")["spec"]["template"]["spec"]["containers"][0]
}

fn pod(objects: &[Value]) -> &Value {
    &find(objects, "DaemonSet", "rel-berth")["spec"]["template"]["spec"]
}

fn mount<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    container(objects)["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no mount {name} in {:#}", container(objects)))
}

fn volume<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    pod(objects)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name} in {:#}", pod(objects)))
}

fn checksum(objects: &[Value]) -> String {
    find(objects, "DaemonSet", "rel-berth")["spec"]["template"]["metadata"]["annotations"]
        ["checksum/config"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_daemonset_runs_the_agent_the_way_it_needs() {
    let objects = render(&None, &[]);
    let spec = pod(&objects);
    assert_eq!(
        (&spec["hostPID"], &spec["hostNetwork"]),
        (&Value::Bool(true), &Value::Bool(true))
    );
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!(
        spec["tolerations"],
        serde_json::json!([{"operator": "Exists"}])
    );
    let c = container(&objects);
    assert_eq!(c["securityContext"]["privileged"], true);
    assert_eq!(c["image"], "berth:0.1.0");
    assert_eq!(c["command"], serde_json::json!(["berth"]));
    assert_eq!(
        c["args"],
        serde_json::json!(["agent", "--config", "/etc/berth/agent.yaml"])
    );
    assert_eq!(
        c["ports"],
        serde_json::json!([{"name": "metrics", "containerPort": 9470, "protocol": "TCP"}])
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "metrics");
    // Host dirs at the same path inside; the mounts berth makes under the state and run dirs
    // (network namespaces pinned in the run dir) reach the host and the next agent pod.
    for (name, path, propagation) in [
        ("cgroup", "/sys/fs/cgroup", None),
        ("state", "/var/lib/berth", Some("Bidirectional")),
        ("run", "/run/berth", Some("Bidirectional")),
        ("modules", "/lib/modules", None),
    ] {
        let m = mount(&objects, name);
        assert_eq!(m["mountPath"], path, "{m}");
        assert_eq!(m["mountPropagation"].as_str(), propagation, "{m}");
        assert_eq!(volume(&objects, name)["hostPath"]["path"], path);
    }
    assert_eq!(mount(&objects, "modules")["readOnly"], true);
    // The API token: a Secret mounted read-only, owner-read only, named by apiTokenFile.
    assert_eq!(mount(&objects, "api-token")["readOnly"], true);
    assert_eq!(mount(&objects, "api-token")["mountPath"], "/etc/berth/api");
    assert_eq!(
        volume(&objects, "api-token")["secret"],
        serde_json::json!({"secretName": "rel-berth-api-token", "defaultMode": 256, "items": [{"key": "token", "path": "token"}]})
    );
    assert_eq!(mount(&objects, "config")["subPath"], "agent.yaml");
    assert_eq!(
        mount(&objects, "manifests")["mountPath"],
        "/etc/berth/manifests.d"
    );
    assert_eq!(
        volume(&objects, "manifests")["configMap"]["name"],
        "rel-berth-manifests"
    );
    assert_eq!(
        agent_config(&objects),
        serde_json::json!({
            "apiTokenFile": "/etc/berth/api/token",
            "listen": "0.0.0.0:9470",
            "stateDir": "/var/lib/berth",
            "runDir": "/run/berth",
            "manifests": "/etc/berth/manifests.d",
        })
    );
    // One endpoint per agent: a headless Service on the pods' port.
    let svc = find(&objects, "Service", "rel-berth");
    assert_eq!(svc["spec"]["clusterIP"], "None");
    assert_eq!(
        svc["spec"]["selector"],
        find(&objects, "DaemonSet", "rel-berth")["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(svc["spec"]["ports"][0]["port"], 9470);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");

    // Another port moves the listener, the container port and the Service together.
    let moved = render(&None, &["port=9555"]);
    assert_eq!(agent_config(&moved)["listen"], "0.0.0.0:9555");
    assert_eq!(container(&moved)["ports"][0]["containerPort"], 9555);
    assert_eq!(
        find(&moved, "Service", "rel-berth")["spec"]["ports"][0]["port"],
        9555
    );
    // A config change rolls the agents; a manifest edit does not (it reaches them live).
    let base = checksum(&objects);
    assert_ne!(
        checksum(&render(&None, &["config.parallelActions=8"])),
        base
    );
    let with_manifest = render(&None, &["manifests.configMap.files.a\\.yaml=x: 1"]);
    assert_eq!(checksum(&with_manifest), base);
    assert_eq!(
        find(&with_manifest, "ConfigMap", "rel-berth-manifests")["data"]["a.yaml"],
        "x: 1\n"
    );
    // An existing ConfigMap of manifests is mounted instead of the chart's.
    let existing = render(&None, &["manifests.configMap.name=fleet"]);
    assert!(!kinds(&existing).contains(&"ConfigMap/\"rel-berth-manifests\"".to_string()));
    assert_eq!(volume(&existing, "manifests")["configMap"]["name"], "fleet");

    // From git: source.git, every auth file mounted from the Secret, no manifest directory.
    let full = render(&Some(chart().join("ci/full-values.yaml")), &[]);
    let cfg = agent_config(&full);
    assert_eq!(
        cfg["source"],
        serde_json::json!({"git": {
            "url": "ssh://git@git.example.org/fleet/manifests.git",
            "ref": "main",
            "paths": ["common", "hosts/{hostname}", "roles/{label.role}"],
            "interval": "2m",
            "timeout": "1m",
            "sshKeyFile": "/etc/berth/git/ssh-key",
            "knownHostsFile": "/etc/berth/git/known_hosts",
            "verify": {"allowedSigners": "/etc/berth/git/allowed_signers"},
        }})
    );
    assert_eq!(cfg["manifests"], Value::Null);
    assert_eq!(cfg["listen"], "0.0.0.0:9471");
    assert_eq!(
        volume(&full, "git")["secret"],
        serde_json::json!({"secretName": "berth-git", "defaultMode": 0o400, "items": [
            {"key": "allowed_signers", "path": "allowed_signers"},
            {"key": "known_hosts", "path": "known_hosts"},
            {"key": "id_ed25519", "path": "ssh-key"},
        ]})
    );
    assert_eq!(mount(&full, "git")["mountPath"], "/etc/berth/git");
    assert!(pod(&full)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["name"] != "manifests"));
    assert_eq!(pod(&full)["priorityClassName"], "system-node-critical");
    let https = render(&Some(chart().join("ci/git-https-values.yaml")), &[]);
    assert_eq!(
        agent_config(&https)["source"]["git"],
        serde_json::json!({
            "url": "https://git.example.org/fleet/manifests.git",
            "ref": "v1.2.0",
            "username": "fleet",
            "passwordFile": "/etc/berth/git/password",
            "caFile": "/etc/berth/git/ca.crt",
        })
    );
}

/// Copies `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn notes_render_for_every_values_file() {
    // helm template leaves NOTES.txt out: a copy of the chart renders it as a template of its
    // own, with the same engine and values.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("berth");
    copy_dir(&chart(), &copy);
    let notes = std::fs::read_to_string(copy.join("templates/NOTES.txt")).unwrap();
    std::fs::remove_file(copy.join("templates/NOTES.txt")).unwrap();
    std::fs::write(
        copy.join("templates/zz-notes.yaml"),
        format!("{{{{- define \"test.notes\" }}}}{notes}{{{{ end }}}}\nnotes: {{{{ include \"test.notes\" . | toJson }}}}\n"),
    )
    .unwrap();
    for values in values_files() {
        let mut args = helm_args(&copy, &values, &[]);
        args.extend(["--show-only".into(), "templates/zz-notes.yaml".into()]);
        let out = ok(&tool("helm"), &args);
        let notes = parse_docs(&out)[0]["notes"].as_str().unwrap().to_string();
        let name = label(&values);
        assert!(
            !notes.contains("<no value>") && notes.contains("DaemonSet rel-berth"),
            "{name}:\n{notes}"
        );
        let expect: &[&str] = match name.as_str() {
            "the default values" => &[
                "ConfigMap rel-berth-manifests",
                "It holds no manifest yet",
                "berth ps --addr unix:/run/berth/berth.sock",
                "with the token of Secret rel-berth-api-token",
                "curl -H \"Authorization: Bearer $TOKEN\" http://NODE_ADDRESS:9470/metrics",
            ],
            "configmap-values.yaml" => &["ConfigMap rel-berth-manifests, mounted at /etc/berth/manifests.d"],
            "full-values.yaml" => &[
                "git ssh://git@git.example.org/fleet/manifests.git at main, paths common, hosts/{hostname}, roles/{label.role}",
                "only commits signed by a key of the allowed signers file are applied",
                "ServiceMonitor rel-berth",
                "PrometheusRule rel-berth",
                "ConfigMap rel-berth-dashboard (namespace monitoring)",
                "with the token of Secret berth-api",
            ],
            "git-https-values.yaml" => &["git https://git.example.org/fleet/manifests.git at v1.2.0"],
            other => panic!("a values file this test does not know: {other}"),
        };
        for e in expect {
            assert!(notes.contains(e), "{name}: no {e:?} in\n{notes}");
        }
        if name == "configmap-values.yaml" {
            assert!(!notes.contains("It holds no manifest yet"), "{notes}");
        }
    }
}

#[test]
fn the_agent_loads_the_config_the_chart_renders() {
    // berth itself reads each agent.yaml the chart renders (every key checked, unknown keys
    // refused), and the manifests of the chart's ConfigMap.
    let mut failures = Vec::new();
    for values in values_files() {
        let objects = render(&values, &[]);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("agent.yaml");
        std::fs::write(
            &config,
            find(&objects, "ConfigMap", "rel-berth")["data"]["agent.yaml"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        let mut files = 0;
        if let Some(cm) = objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "rel-berth-manifests")
        {
            for (file, text) in cm["data"].as_object().unwrap() {
                std::fs::write(manifests.join(file), text.as_str().unwrap()).unwrap();
                files += 1;
            }
        }
        let out = run(
            &berth_bin(),
            &[
                OsStr::new("validate"),
                OsStr::new("--config"),
                config.as_os_str(),
                manifests.as_os_str(),
            ],
        );
        let want = format!("ok: {files} file(s), {files} object(s), no problems\n");
        if !out.status.success() || String::from_utf8_lossy(&out.stdout) != want {
            failures.push(format!(
                "{}: berth validate --config <the rendered agent.yaml>: {}\n{}\nagent.yaml:\n{}",
                label(&values),
                out.status,
                text(&out),
                std::fs::read_to_string(&config).unwrap()
            ));
        }
        if label(&values) == "configmap-values.yaml" {
            assert_eq!(files, 2, "the ConfigMap of configmap-values.yaml");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // The schema's `config` takes every key of agent.yaml the chart does not set itself: the
    // agent names them all when it refuses an unknown one.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.yaml");
    std::fs::write(&config, "zzz: 1\n").unwrap();
    let out = run(
        &berth_bin(),
        &[
            OsStr::new("validate"),
            OsStr::new("--config"),
            config.as_os_str(),
            dir.path().as_os_str(),
        ],
    );
    let said = text(&out);
    let known: BTreeSet<&str> = said
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("{said}"))
        .1
        .split(", ")
        .map(|k| k.split('`').nth(1).unwrap())
        .collect();
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap())
            .unwrap();
    let mut covered: BTreeSet<&str> = schema["properties"]["config"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    covered.extend([
        "listen",
        "stateDir",
        "runDir",
        "manifests",
        "source",
        "apiTokenFile",
    ]);
    assert_eq!(known, covered, "agent.yaml keys vs the chart's");
}

/// The rules of the rule file: (alert name, expression).
fn rules() -> Vec<(String, String)> {
    let file = yaml_file(&rules_file());
    file["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_string(),
                r["expr"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let promtool = tool("promtool");
    let n = rules().len();
    assert!(n >= 10, "{n} rules");
    // The plain file, through the link of monitoring/ that points at the chart's copy.
    let linked = repo().join("monitoring/prometheus/berth-rules.yaml");
    let out = ok(
        &promtool,
        &[OsStr::new("check"), OsStr::new("rules"), linked.as_os_str()],
    );
    assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{out}");
    let tests = repo().join("tests/support/berth-rules.test.yaml");
    let out = ok(
        &promtool,
        &[OsStr::new("test"), OsStr::new("rules"), tests.as_os_str()],
    );
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has a unit test in which it fires.
    let t = yaml_file(&tests);
    let tested: BTreeSet<&str> = t["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap().iter())
        .filter(|a| a["exp_alerts"].as_array().is_some_and(|e| !e.is_empty()))
        .map(|a| a["alertname"].as_str().unwrap())
        .collect();
    let alerts: BTreeSet<String> = rules().into_iter().map(|(a, _)| a).collect();
    let alerts: BTreeSet<&str> = alerts.iter().map(String::as_str).collect();
    assert_eq!(tested, alerts, "alerts without a unit test that fires them");
}

#[test]
fn the_monitoring_objects_are_the_shipped_files() {
    // monitoring/ links to the chart's files: one copy of each.
    for (link, file) in [
        ("monitoring/prometheus/berth-rules.yaml", rules_file()),
        ("monitoring/grafana/berth-fleet.json", dashboard_file()),
    ] {
        let link = repo().join(link);
        assert!(
            link.symlink_metadata().unwrap().file_type().is_symlink(),
            "{} is a link to the chart's copy",
            link.display()
        );
        assert_eq!(
            link.canonicalize().unwrap(),
            file.canonicalize().unwrap(),
            "{}",
            link.display()
        );
    }
    let objects = render(&Some(chart().join("ci/full-values.yaml")), &[]);
    // The PrometheusRule's spec is the rule file, and promtool takes it as one.
    let rule = find(&objects, "PrometheusRule", "rel-berth");
    assert_eq!(rule["spec"], yaml_file(&rules_file()));
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(&spec, serde_yaml::to_string(&rule["spec"]).unwrap()).unwrap();
    let out = ok(
        &tool("promtool"),
        &[OsStr::new("check"), OsStr::new("rules"), spec.as_os_str()],
    );
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", rules().len())),
        "{out}"
    );
    // The dashboard's ConfigMap holds the file as it is, for Grafana's sidecar.
    let cm = find(&objects, "ConfigMap", "rel-berth-dashboard");
    assert_eq!(
        cm["data"]["berth-fleet.json"].as_str().unwrap(),
        std::fs::read_to_string(dashboard_file()).unwrap()
    );
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "berth");
    // The ServiceMonitor selects the metrics Service, by its port, as job "berth".
    let sm = find(&objects, "ServiceMonitor", "rel-berth");
    let svc = find(&objects, "Service", "rel-berth");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][k], v, "Service label {k}");
    }
    assert_eq!(
        sm["spec"]["namespaceSelector"]["matchNames"],
        serde_json::json!([NAMESPACE])
    );
    let ep = &sm["spec"]["endpoints"][0];
    assert_eq!(ep["port"], svc["spec"]["ports"][0]["name"]);
    assert_eq!(
        (&ep["path"], &ep["interval"], &ep["scrapeTimeout"]),
        (
            &Value::from("/metrics"),
            &Value::from("15s"),
            &Value::from("5s")
        )
    );
    // Prometheus sends the agents' API token (the Secret of full-values.yaml).
    assert_eq!(
        ep["authorization"],
        serde_json::json!({"type": "Bearer", "credentials": {"name": "berth-api", "key": "token"}})
    );
    let relabel = ep["relabelings"].as_array().unwrap();
    assert!(
        relabel.contains(
            &serde_json::json!({"action": "replace", "targetLabel": "job", "replacement": "berth"})
        ),
        "{relabel:?}"
    );
    assert_eq!(
        relabel.last().unwrap(),
        &serde_json::json!({"action": "replace", "targetLabel": "cluster", "replacement": "edge-1"})
    );
    assert_eq!(ep["metricRelabelings"][0]["action"], "drop");
}

/// Every PromQL expression of the dashboard: the panels' queries and the variables' (the
/// selector of `label_values(SELECTOR, LABEL)`).
fn dashboard_exprs() -> Vec<String> {
    fn panels(list: &Value, out: &mut Vec<String>) {
        for p in list.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(
                    t["expr"]
                        .as_str()
                        .expect("a target with an expr")
                        .to_string(),
                );
            }
            panels(&p["panels"], out);
        }
    }
    let d = dashboard();
    let mut out = Vec::new();
    panels(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("a variable query that is not label_values(...): {q}"));
        let (selector, _label) = inner.rsplit_once(',').unwrap();
        out.push(selector.trim().to_string());
    }
    out
}

/// Grafana's variables replaced by values Prometheus takes.
fn without_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$instance", ".*")
}

#[test]
fn the_dashboard_is_a_fleet_overview() {
    let d = dashboard();
    assert_eq!(
        (d["uid"].as_str(), d["title"].as_str()),
        (Some("berth-fleet"), Some("berth fleet"))
    );
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "instance"]);
    let panels = d["panels"].as_array().unwrap();
    let titles: BTreeSet<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for t in [
        "Agents up",
        "Agents down",
        "Hosts",
        "Containers by state",
        "Restarts",
        "Reconcile pass duration",
        "Revision per host",
        "State filesystem used",
    ] {
        assert!(titles.contains(t), "no panel {t:?}: {titles:?}");
    }
    // Unique ids, on the 24-column grid, not on top of each other, each on the chosen
    // data source, each query with its own refId.
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "{p}");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24 && w > 0 && h > 0, "{}: {g}", p["title"]);
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "{} overlaps another panel",
                    p["title"]
                );
            }
        }
        let refs: BTreeSet<&str> = p["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(
            refs.len(),
            p["targets"].as_array().unwrap().len(),
            "{}",
            p["title"]
        );
    }
    // Every query parses: promtool checks them as recording rules.
    let exprs = dashboard_exprs();
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({"record": format!("dashboard:query:{i}"), "expr": without_variables(e)}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yaml");
    std::fs::write(
        &file,
        serde_yaml::to_string(
            &serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}),
        )
        .unwrap(),
    )
    .unwrap();
    let out = ok(
        &tool("promtool"),
        &[OsStr::new("check"), OsStr::new("rules"), file.as_os_str()],
    );
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------
// The metrics the rules and the dashboard use, against a live agent.

/// A metric selector of a query: the name and its label matchers (label, op, value).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    name: String,
    matchers: Vec<(String, String, String)>,
}

/// Reads a quoted string starting at `chars[i]` (the quote); returns its value and the index
/// after it.
fn quoted(chars: &[char], mut i: usize) -> (String, usize) {
    let quote = chars[i];
    let mut s = String::new();
    i += 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' && i + 1 < chars.len() {
            i += 1;
        }
        s.push(chars[i]);
        i += 1;
    }
    (s, i + 1)
}

/// The index after the bracket that closes the one at `chars[i]`, skipping strings.
fn closing(chars: &[char], mut i: usize) -> usize {
    let (open, close) = (
        chars[i],
        match chars[i] {
            '(' => ')',
            '[' => ']',
            _ => '}',
        },
    );
    let mut depth = 0;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = quoted(chars, i).1;
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!(
        "unbalanced {open} in {:?}",
        chars.iter().collect::<String>()
    );
}

fn matchers(body: &[char]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        while i < body.len() && (body[i].is_whitespace() || body[i] == ',') {
            i += 1;
        }
        if i >= body.len() {
            break;
        }
        let start = i;
        while i < body.len() && (body[i].is_alphanumeric() || body[i] == '_') {
            i += 1;
        }
        let label: String = body[start..i].iter().collect();
        while body[i].is_whitespace() {
            i += 1;
        }
        let op_start = i;
        while "=!~".contains(body[i]) {
            i += 1;
        }
        let op: String = body[op_start..i].iter().collect();
        while body[i].is_whitespace() {
            i += 1;
        }
        let (value, next) = quoted(body, i);
        i = next;
        assert!(
            !label.is_empty() && ["=", "!=", "=~", "!~"].contains(&op.as_str()),
            "a matcher this parser does not read: {:?}",
            body.iter().collect::<String>()
        );
        out.push((label, op, value));
    }
    out
}

/// The metric selectors of a PromQL expression (with Grafana's `$variables` in it): every
/// name that is not a function, a keyword, or a label of `by (...)`, `on (...)` and the
/// like, with its matchers.
fn selectors(expr: &str) -> Vec<Selector> {
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: [&str; 7] = ["and", "or", "unless", "offset", "bool", "inf", "nan"];
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let next_non_space = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = quoted(&chars, i).1;
        } else if c == '[' {
            i = closing(&chars, i);
        } else if c == '$' {
            // A Grafana variable: $name or ${name}.
            i += 1;
            if i < chars.len() && chars[i] == '{' {
                i = closing(&chars, i);
            } else {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration (5m, 1e6, 0.99).
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after = next_non_space(i);
            // A function or an aggregation: `rate(`, `sum(`, `sum by (le) (`.
            let rest: String = chars[after..].iter().collect();
            let paren = chars.get(after) == Some(&'(')
                || ["by", "without"].iter().any(|k| {
                    rest.strip_prefix(k)
                        .is_some_and(|r| r.trim_start().starts_with('('))
                });
            if LABEL_LISTS.contains(&word.as_str()) {
                if paren {
                    i = closing(&chars, after);
                }
            } else if KEYWORDS.contains(&word.as_str()) || paren {
                // A keyword, or a function or aggregation called here.
            } else {
                let mut m = Vec::new();
                if chars.get(after) == Some(&'{') {
                    let end = closing(&chars, after);
                    m = matchers(&chars[after + 1..end - 1]);
                    i = end;
                }
                out.push(Selector {
                    name: word,
                    matchers: m,
                });
            }
        } else if c == '{' {
            panic!("a selector without a metric name in {expr:?}: name the metric");
        } else {
            i += 1;
        }
    }
    out
}

/// One scrape: each sample name (as written, `_bucket` included) with its labels and their
/// values, and each family's type.
struct Scrape {
    samples: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    types: BTreeMap<String, String>,
}

fn parse_scrape(text: &str) -> Scrape {
    let mut samples: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap();
        let labels = samples.entry(line[..end].to_string()).or_default();
        if line[end..].starts_with('{') {
            let chars: Vec<char> = line[end..].chars().collect();
            let close = closing(&chars, 0);
            for (label, _, value) in matchers(&chars[1..close - 1]) {
                labels.entry(label).or_default().insert(value);
            }
        }
    }
    Scrape { samples, types }
}

/// Whether the scrape has `name` as a query writes it: a counter's or a gauge's name, or a
/// histogram's `_bucket`, `_sum` or `_count` (a histogram's bare name is no series).
fn exported(scrape: &Scrape, name: &str) -> bool {
    let kind = |n: &str| scrape.types.get(n).map(String::as_str);
    if let Some(k) = kind(name) {
        return !matches!(k, "histogram" | "summary") && scrape.samples.contains_key(name);
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix).is_some_and(|base| {
            matches!(
                (kind(base), *suffix),
                (Some("histogram"), _) | (Some("summary"), "_sum" | "_count")
            ) && scrape.samples.contains_key(name)
        })
    })
}

/// Labels Prometheus adds to every series of a target.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// What the scrape lacks of `wanted`: names it does not export, labels a matcher names that
/// no sample of the name has, and values an `=` matcher wants that no sample has.
fn missing(scrape: &Scrape, wanted: &[Selector]) -> Vec<String> {
    let mut out = Vec::new();
    for s in wanted {
        if !exported(scrape, &s.name) {
            out.push(format!("metric {}", s.name));
            continue;
        }
        let labels = &scrape.samples[&s.name];
        for (label, op, value) in &s.matchers {
            if TARGET_LABELS.contains(&label.as_str()) {
                continue;
            }
            match labels.get(label) {
                None => out.push(format!("label {label} of {}", s.name)),
                Some(values) if op == "=" && !values.contains(value) => out.push(format!(
                    "{}{{{label}=\"{value}\"}} (it has {values:?})",
                    s.name
                )),
                Some(_) => {}
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The selectors of every rule and dashboard query.
fn used_selectors() -> Vec<Selector> {
    rules()
        .into_iter()
        .map(|(_, e)| e)
        .chain(dashboard_exprs())
        .flat_map(|e| selectors(&e))
        .collect()
}

#[test]
fn selectors_are_read_from_promql() {
    let names = |e: &str| -> Vec<String> { selectors(e).into_iter().map(|s| s.name).collect() };
    assert_eq!(
        selectors(
            r#"histogram_quantile(0.99, sum by (instance, le) (rate(berth_reconcile_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))"#
        ),
        [Selector {
            name: "berth_reconcile_duration_seconds_bucket".into(),
            matchers: vec![("instance".into(), "=~".into(), "$instance".into())],
        }]
    );
    assert_eq!(
        names(r#"increase(a_total{result="x,}y", b!='q'}[15m]) > 0 or (b unless b offset 15m)"#),
        ["a_total", "b", "b"]
    );
    assert_eq!(
        selectors(r#"x{result!="ok"} unless ignoring(result) increase(y{result="ok"}[15m]) > 0"#)
            [1],
        Selector {
            name: "y".into(),
            matchers: vec![("result".into(), "=".into(), "ok".into())]
        }
    );
    assert_eq!(
        names("sum without (container) (m) / on (instance) group_left (revision) n"),
        ["m", "n"]
    );
    assert_eq!(
        names("max by (instance, revision) (info) + sum(rate(c[5m])) by (le)"),
        ["info", "c"]
    );
    assert_eq!(names(r#"count(up{job="berth"} == 0) or vector(0)"#), ["up"]);
    assert_eq!(
        names("time() - last_sync_seconds > 3600"),
        ["last_sync_seconds"]
    );
    assert_eq!(names("1 - avail / size < 0.10"), ["avail", "size"]);

    let scrape = parse_scrape(
        "# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_sum 1\nh_count 1\n# TYPE g gauge\ng{state=\"a\"} 1\n# TYPE x_count gauge\nx_count 2\n",
    );
    assert!(
        exported(&scrape, "h_bucket") && exported(&scrape, "h_sum") && exported(&scrape, "h_count")
    );
    assert!(
        !exported(&scrape, "h"),
        "a histogram's bare name is no series"
    );
    assert!(exported(&scrape, "x_count") && !exported(&scrape, "x"));
    assert!(!exported(&scrape, "g_sum") && !exported(&scrape, "g_total"));
    let sel = |name: &str, m: &[(&str, &str, &str)]| Selector {
        name: name.into(),
        matchers: m
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect(),
    };
    assert_eq!(
        missing(
            &scrape,
            &[sel("g", &[("state", "=", "a"), ("instance", "=~", ".*")])]
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        missing(
            &scrape,
            &[
                sel("g", &[("state", "=", "b")]),
                sel("g", &[("kind", "!=", "")]),
                sel("h", &[])
            ]
        ),
        [
            "g{state=\"b\"} (it has {\"a\"})",
            "label kind of g",
            "metric h"
        ]
    );
}

#[test]
fn the_queries_name_every_kind_of_metric_the_issue_asks_for() {
    // Guards the live checks below against a parser that finds nothing.
    let names: BTreeSet<String> = used_selectors().into_iter().map(|s| s.name).collect();
    for n in [
        "up",
        "berth_reconcile_total",
        "berth_reconcile_duration_seconds_bucket",
        "berth_manifest_errors",
        "berth_containers",
        "berth_container_restarts",
        "berth_container_health",
        "berth_rollbacks_total",
        "berth_prune_blocked_total",
        "berth_source_sync_total",
        "berth_source_revision_info",
        "berth_source_last_sync_timestamp_seconds",
        "berth_state_filesystem_avail_bytes",
        "berth_state_filesystem_size_bytes",
    ] {
        assert!(
            names.contains(n),
            "{n} is used by no rule or dashboard query: {names:?}"
        );
    }
    let foreign: Vec<&String> = names
        .iter()
        .filter(|n| *n != "up" && !n.starts_with("berth_"))
        .collect();
    assert!(
        foreign.is_empty(),
        "metrics berth does not export: {foreign:?}"
    );
}

fn container_manifest(name: &str, image: &str, script: &str, extra: &str) -> String {
    format!(
        "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n  command: [sh, -c]\n  args: [\"{script}\"]\n  stopTimeout: 2s\n{extra}"
    )
}

const IDLE: &str = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";

fn scrape(agent: &Agent) -> Scrape {
    parse_scrape(&agent.get("/metrics").unwrap())
}

#[test]
fn every_metric_the_rules_and_dashboard_use_is_exported() {
    let wanted: Vec<Selector> = used_selectors()
        .into_iter()
        .filter(|s| s.name != "up" && !s.name.starts_with("berth_source_"))
        .collect();
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let agent = Agent::start_with(&registry, "restartBackoff: {initial: 500ms, max: 1s}\n")
        .expect("start agent");
    // The series come with what they are about: a running container with a failing
    // healthcheck, an update rolled back, an image that does not pull, a file that does not
    // load.
    agent
        .write_manifest(
            "sick.yaml",
            &container_manifest(
                "sick",
                IMAGE,
                IDLE,
                "  healthcheck:\n    exec: [sh, -c, \"exit 1\"]\n    interval: 200ms\n    retries: 1\n",
            ),
        )
        .unwrap();
    let app = |script: &str| {
        container_manifest(
            "app",
            IMAGE,
            script,
            "  update: {minReady: 1s, rollbackAfter: 3s}\n",
        )
    };
    agent.write_manifest("app.yaml", &app(IDLE)).unwrap();
    agent
        .write_manifest(
            "missing.yaml",
            &container_manifest(
                "missing",
                &format!("{}/library/nope:1", registry.host()),
                IDLE,
                "",
            ),
        )
        .unwrap();
    agent
        .wait_container("app", "running", |c| c["state"] == "running")
        .unwrap();
    // Ready after minReady: the revision an update would roll back to.
    std::thread::sleep(Duration::from_secs(2));
    agent
        .write_manifest("app.yaml", &app("echo bad; exit 1"))
        .unwrap();
    agent
        .write_manifest(
            "broken.yaml",
            "apiVersion: berth/v1\nkind: Container\nmetadata: {name: broken}\nspec: {}\n",
        )
        .unwrap();
    agent
        .wait_for("the rollback of app", Duration::from_secs(60), |a| {
            a.container("app").filter(|c| c["reason"] == "RolledBack")
        })
        .unwrap();
    agent
        .wait_for(
            "every series the rules and the dashboard use",
            Duration::from_secs(60),
            |a| missing(&scrape(a), &wanted).is_empty().then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e}\nmissing: {:#?}", missing(&scrape(&agent), &wanted)));
    // The filesystem gauges measure the state dir's filesystem, as df does.
    let metrics = agent.get("/metrics").unwrap();
    let size = metrics
        .lines()
        .find_map(|l| l.strip_prefix("berth_state_filesystem_size_bytes "))
        .unwrap();
    let out = Command::new("df")
        .args(["-B1", "--output=size"])
        .arg(&agent.state_dir)
        .output()
        .expect("run df");
    assert_eq!(
        Some(size),
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .map(str::trim),
        "{metrics}"
    );
    // The exposition, container series included, passes promtool's lint.
    assert!(
        metrics.contains("container_cpu_usage_seconds_total{"),
        "{metrics}"
    );
    let mut lint = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    std::io::Write::write_all(&mut lint.stdin.take().unwrap(), metrics.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}",
        text(&out)
    );
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}

/// `git` with an identity, in `dir`.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=berth test",
            "-c",
            "user.email=test@berth.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git (hint: apt-get install git)");
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn source_metrics_are_exported_by_an_agent_following_git() {
    let wanted: Vec<Selector> = used_selectors()
        .into_iter()
        .filter(|s| s.name.starts_with("berth_source_"))
        .collect();
    assert!(!wanted.is_empty());
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    // A repository of one manifest, served as file://.
    let repo = tempfile::Builder::new()
        .prefix("berth-chart-git-")
        .tempdir()
        .unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(
        repo.path().join("web.yaml"),
        container_manifest("web", IMAGE, IDLE, ""),
    )
    .unwrap();
    git(repo.path(), &["add", "web.yaml"]);
    git(repo.path(), &["commit", "-q", "-m", "web"]);
    let head = git(repo.path(), &["rev-parse", "HEAD"]);
    let agent = Agent::start_with(
        &registry,
        &format!(
            "source:\n  git:\n    url: file://{}\n    ref: main\n    interval: 1s\n",
            repo.path().display()
        ),
    )
    .expect("start an agent with a git source");
    agent
        .wait_container("web", "running from the repository", |c| {
            c["state"] == "running"
        })
        .unwrap();
    let s = agent
        .wait_for("the source metrics", Duration::from_secs(60), |a| {
            let s = scrape(a);
            missing(&s, &wanted).is_empty().then_some(s)
        })
        .unwrap_or_else(|e| panic!("{e}\nmissing: {:#?}", missing(&scrape(&agent), &wanted)));
    let revisions = &s.samples["berth_source_revision_info"]["revision"];
    assert!(
        revisions
            .iter()
            .any(|r| r.len() >= 7 && head.starts_with(r.as_str())),
        "berth_source_revision_info{{revision}} {revisions:?}, HEAD {head}"
    );
    // The manifest removed from the repository: berth removes the container.
    git(repo.path(), &["rm", "-q", "web.yaml"]);
    git(repo.path(), &["commit", "-q", "-m", "no web"]);
    let left = agent.finish().unwrap();
    assert!(left.is_empty(), "left on the host: {left:#?}");
}
