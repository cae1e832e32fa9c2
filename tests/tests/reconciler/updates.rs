//! Updates: a bad revision is rolled back to the exact previous image, an image that never
//! pulls is held back and rejected, a good edit is applied.

use super::*;

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
