//! Health checks: an unhealthy container is restarted (`onUnhealthy: restart`) or stopped for
//! good (`onUnhealthy: stop`), with status, back-off and metric along the way.

use super::*;

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
