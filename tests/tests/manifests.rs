//! End to end: `berth plan` against a running agent (create / recreate with the changed
//! fields / remove / frozen, the same as `GET /v1/plan`), last-known-good objects that keep a
//! broken file's container running and restarted across an agent restart, `GET /v1/manifests`,
//! `berth validate -o json` and `berth schema`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use berth_tests::agent::{berth_bin, leaks, Agent};
use berth_tests::{push_busybox, Registry};
use serde_json::Value;

fn container(name: &str, seconds: &str) -> String {
    format!(
        "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: docker.io/library/busybox:1.36\n  command: [sleep]\n  args: [\"{seconds}\"]\n  restartPolicy: Always\n  stopTimeout: 1s\n"
    )
}

fn berth(args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(args)
        .output()
        .expect("run the berth binary")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

fn plan(agent: &Agent, dir: Option<&Path>, extra: &[&str]) -> Output {
    let addr = agent.cli_addr();
    let mut args = vec!["plan", "--addr", addr.as_str()];
    let dir_s = dir.map(|d| d.display().to_string());
    if let Some(d) = &dir_s {
        args.push(d);
    }
    args.extend_from_slice(extra);
    berth(&args)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not json ({e}): {text}"))
}

/// `berth plan -o json` of the live directory and `GET /v1/plan` say the same.
fn assert_plan_agrees(agent: &Agent) -> Value {
    let out = plan(agent, None, &["-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli = json(&stdout(&out));
    let api = json(&agent.get("/v1/plan").unwrap());
    assert_eq!(cli, api, "berth plan and GET /v1/plan disagree");
    cli
}

fn pid_of(c: &Value) -> i32 {
    c["pid"].as_i64().expect("running container has a pid") as i32
}

#[test]
fn plan_last_good_and_manifests_view() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let mut agent = Agent::start(&registry).expect("start agent");

    agent
        .write_manifest("web.yaml", &container("web", "1000"))
        .unwrap();
    agent
        .write_manifest("db.yaml", &container("db", "1000"))
        .unwrap();
    let web = agent
        .wait_container("web", "running", |c| c["state"] == "running")
        .unwrap();
    agent
        .wait_container("db", "running", |c| c["state"] == "running")
        .unwrap();
    let web_pid = pid_of(&web);

    // Converged: nothing to do, and the API's plan is the CLI's.
    let out = plan(&agent, None, &["--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out),
        "No changes: the agent's containers match the manifests.\n\nPlan: 0 to create, 0 to recreate, 0 to remove, 2 unchanged.\n"
    );
    let p = assert_plan_agrees(&agent);
    assert_eq!(p["dir"], agent.manifests.display().to_string().as_str());
    assert_eq!(p["summary"]["unchanged"], 2);

    let view = json(&agent.get("/v1/manifests").unwrap());
    assert_eq!(view["dir"], agent.manifests.display().to_string().as_str());
    let files: Vec<&str> = view["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    let web_file = agent.manifests.join("web.yaml").display().to_string();
    assert_eq!(
        files,
        [
            agent.manifests.join("db.yaml").display().to_string(),
            web_file.clone()
        ]
    );
    let web_view = &view["files"][1];
    assert_eq!(web_view["error"], Value::Null);
    assert_eq!(web_view["runningLastGood"], true);
    assert_eq!(web_view["objects"][0]["kind"], "Container");
    assert_eq!(web_view["objects"][0]["name"], "web");
    assert_eq!(web_view["objects"][0]["hash"], web["specHash"]);

    // A copy of the directory with web edited, db gone and api new.
    let copy = tempfile::Builder::new()
        .prefix("berth-e2e-plan-")
        .tempdir()
        .unwrap();
    std::fs::write(copy.path().join("web.yaml"), container("web", "2000")).unwrap();
    std::fs::write(copy.path().join("api.yaml"), container("api", "1000")).unwrap();
    let out = plan(&agent, Some(copy.path()), &["--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "changes exit 2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out),
        "  + Container/api  (api.yaml)\n\
         \x20 - Container/db  (db.yaml: no manifest defines it any more)\n\
         \x20 ~ Container/web  (web.yaml)\n\
         \x20     spec.args: [\"1000\"] → [\"2000\"]\n\
         \n\
         Plan: 1 to create, 1 to recreate, 1 to remove, 0 unchanged.\n"
    );
    let out = plan(&agent, Some(copy.path()), &["-o", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let p = json(&stdout(&out));
    let actions: Vec<(String, String)> = p["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("api".into(), "create".into()),
            ("db".into(), "remove".into()),
            ("web".into(), "recreate".into())
        ]
    );
    assert_eq!(
        p["entries"][2]["changes"],
        serde_json::json!([{"path": "spec.args", "old": ["1000"], "new": ["2000"]}])
    );
    assert_eq!(p["entries"][2]["oldHash"], web["specHash"]);
    // Planning changes nothing.
    std::thread::sleep(Duration::from_secs(1));
    let still = agent.container("web").unwrap();
    assert_eq!(
        (pid_of(&still), still["restartCount"].as_i64()),
        (web_pid, Some(0))
    );
    assert!(agent.container("api").is_none(), "plan created a container");

    // web.yaml stops parsing: its container stays, the views say why.
    agent
        .write_manifest(
            "web.yaml",
            "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: web\nspec: [\n",
        )
        .unwrap();
    let view = agent
        .wait_for(
            "web.yaml's error in /v1/manifests",
            Duration::from_secs(20),
            |a| {
                let v = json(&a.get("/v1/manifests").ok()?);
                (!v["files"][1]["error"].is_null()).then_some(v)
            },
        )
        .unwrap();
    let web_view = &view["files"][1];
    assert!(
        web_view["error"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{web_file}:")),
        "{web_view}"
    );
    assert_eq!(web_view["objects"][0]["hash"], Value::Null);
    assert_eq!(web_view["objects"][0]["lastGoodHash"], web["specHash"]);
    assert_eq!(web_view["runningLastGood"], true);
    let p = assert_plan_agrees(&agent);
    assert_eq!(p["entries"][1]["action"], "frozen");
    assert_eq!(p["summary"]["frozen"], 1);
    let out = plan(&agent, None, &[]);
    assert!(
        stdout(&out).contains(
            "  * Container/web  (web.yaml does not load: kept at its last good version)\n"
        ),
        "{}",
        stdout(&out)
    );

    // validate -o json: the problems as a JSON array, exit 1.
    let out = berth(&[
        "validate",
        "-o",
        "json",
        &agent.manifests.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let problems = json(&stdout(&out));
    let problems = problems.as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["file"], web_file.as_str());
    assert!(
        problems[0]["line"].as_u64().unwrap() > 0,
        "{:?}",
        problems[0]
    );
    assert!(problems[0]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));

    // The agent restarts while the file is broken: the last good version comes from the db,
    // so the container is adopted, and restarted under its policy when it dies.
    agent.restart().unwrap();
    let c = agent
        .wait_container("web", "adopted", |c| c["state"] == "running")
        .unwrap();
    assert_eq!(pid_of(&c), web_pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(web_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let c = agent
        .wait_container("web", "restarted at its last good version", |c| {
            c["state"] == "running" && c["restartCount"] == 1
        })
        .unwrap();
    let restarted_pid = pid_of(&c);
    assert_ne!(restarted_pid, web_pid);
    assert_eq!(c["specHash"], web["specHash"]);
    let view = json(&agent.get("/v1/manifests").unwrap());
    assert!(view["files"][1]["error"].is_string(), "{view}");
    assert_eq!(view["files"][1]["objects"][0]["runningLastGood"], true);

    // Fixed with the same content: the error clears and the container is left alone.
    agent
        .write_manifest("web.yaml", &container("web", "1000"))
        .unwrap();
    agent
        .wait_for("web.yaml to load again", Duration::from_secs(20), |a| {
            let v = json(&a.get("/v1/manifests").ok()?);
            v["files"][1]["error"].is_null().then_some(())
        })
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let c = agent.container("web").unwrap();
    assert_eq!(
        (pid_of(&c), c["restartCount"].as_i64()),
        (restarted_pid, Some(1))
    );
    assert_plan_agrees(&agent);

    let (prefix, dir) = (agent.prefix.clone(), agent.root.path().to_path_buf());
    drop(agent);
    let left = leaks(&prefix, &dir);
    assert!(left.is_empty(), "left on the host: {left:#?}");
}

#[test]
fn validate_json_and_schema_need_no_agent() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), container("ok", "1")).unwrap();
    let out = berth(&["validate", "-o", "json", &dir.path().display().to_string()]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "[]\n")
    );

    std::fs::write(
        dir.path().join("b.yaml"),
        "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: bad\nspec:\n  image: busybox\n  restartPolicy: Sometimes\n",
    )
    .unwrap();
    let out = berth(&["validate", "-o", "json", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let problems = json(&stdout(&out));
    assert_eq!(problems.as_array().map(Vec::len), Some(1), "{problems}");
    let p = &problems[0];
    assert_eq!(
        p["file"],
        dir.path().join("b.yaml").display().to_string().as_str()
    );
    assert_eq!(
        (p["line"].as_u64(), p["column"].as_u64()),
        (Some(7), Some(18))
    );
    assert_eq!(
        p["object"],
        serde_json::json!({"kind": "Container", "name": "bad"})
    );
    assert!(p["message"].as_str().unwrap().contains("Sometimes"), "{p}");

    let out = berth(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema = json(&stdout(&out));
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let kinds: Vec<&str> = schema["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["properties"]["kind"]["const"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Container", "Network", "Volume"]);
}
