//! `dependsOn`: a dependent is created only once its conditions hold (Healthy, Completed,
//! Started) and says what it waits for meanwhile; removals go in reverse order.

use super::*;

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
