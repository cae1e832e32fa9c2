//! Table tests of the planner: a desired state, an observed state and a time in; the actions,
//! waits and wake-up time out.

use std::collections::BTreeMap;

use berth_engine::network::NetworkDef;
use berth_engine::state::{
    ContainerRecord, ContainerState, LeaseRecord, NetworkRecord, Reason, Revision, Rollout,
    VolumeRecord,
};
use berth_spec::{NetworkSpec, VolumeSpec};

use super::*;
use crate::reconcile::desired::{DesiredNetwork, DesiredVolume, Origin};
use crate::reconcile::fake::record;
use crate::reconcile::health::HealthSnapshot;
use crate::reconcile::observed::{Failure, Stray};

const T: u64 = 1_000_000;

fn want(name: &str, hash: &str, yaml: &str) -> DesiredContainer {
    let spec: ContainerSpec =
        serde_yaml::from_str(&format!("image: busybox\n{yaml}")).expect("valid spec");
    DesiredContainer {
        name: name.into(),
        spec,
        hash: hash.into(),
        runtime_hash: format!("run-{hash}"),
        source_file: "/m/a.yaml".into(),
        origin: Origin::Loaded,
        rejected: None,
    }
}

/// A record of `name` running the revision `hash`, with its process alive.
fn running(name: &str, hash: &str) -> ContainerRecord {
    record(name, hash, ContainerState::Running)
}

/// A record of `name` that ended at `T - ago_ms` after running `ran_ms`, with `code`.
fn exited(name: &str, hash: &str, code: i32, ago_ms: u64, ran_ms: u64) -> ContainerRecord {
    let mut r = record(name, hash, ContainerState::Exited);
    r.exit_code = Some(code);
    r.reason = Some(if code == 0 {
        Reason::Completed
    } else {
        Reason::Error
    });
    r.finished_at_ms = Some(T - ago_ms);
    r.started_at_ms = Some(T - ago_ms - ran_ms);
    r
}

fn desired(items: &[DesiredContainer]) -> Desired {
    Desired {
        containers: items.iter().map(|d| (d.name.clone(), d.clone())).collect(),
        ..Default::default()
    }
}

fn observed(records: &[ContainerRecord]) -> Observed {
    let mut o = Observed::from_records(records.to_vec());
    for c in o.containers.values_mut() {
        if c.record.state == ContainerState::Running {
            c.shim = Shim::Alive;
        }
    }
    o
}

/// No networking, so the tables are about containers unless they say otherwise.
fn cfg() -> PlanConfig {
    PlanConfig {
        networking: false,
        ..PlanConfig::default()
    }
}

fn run(d: &Desired, o: &Observed, now: u64) -> Vec<String> {
    shown(&plan(d, o, &cfg(), now))
}

fn shown(p: &Plan) -> Vec<String> {
    p.actions.iter().map(|a| a.to_string()).collect()
}

fn waits(p: &Plan) -> Vec<String> {
    p.waiting.iter().map(|(n, w)| format!("{n}: {w}")).collect()
}

#[test]
fn create_keep_recreate_remove() {
    let d = desired(&[
        want("a", "h1", ""),
        want("b", "h2", ""),
        want("c", "h3", ""),
    ]);
    let o = observed(&[
        running("b", "h2"),
        running("c", "old"),
        running("gone", "h9"),
    ]);
    assert_eq!(
        run(&d, &o, T),
        [
            "create container a",
            "recreate container c",
            "remove container gone"
        ]
    );
}

#[test]
fn the_same_state_twice_does_nothing() {
    let d = desired(&[
        want("a", "h1", ""),
        want("job", "h2", "restartPolicy: Never"),
    ]);
    let o = observed(&[running("a", "h1"), exited("job", "h2", 0, 5, 5)]);
    for now in [T, T + 1, T + 3_600_000] {
        let p = plan(&d, &o, &cfg(), now);
        assert_eq!(p, Plan::default(), "at {now}");
    }
}

#[test]
fn restart_policies_decide_on_exits() {
    let cases = [
        ("Always", 0, true),
        ("Always", 1, true),
        ("OnFailure", 0, false),
        ("OnFailure", 3, true),
        ("Never", 0, false),
        ("Never", 3, false),
    ];
    for (policy, code, restarts) in cases {
        let d = desired(&[want("a", "h", &format!("restartPolicy: {policy}"))]);
        let o = observed(&[exited("a", "h", code, 60_000, 1_000)]);
        let want: &[&str] = if restarts {
            &["restart container a"]
        } else {
            &[]
        };
        assert_eq!(run(&d, &o, T), want, "{policy} exit {code}");
    }
}

#[test]
fn back_off_doubles_with_the_streak_and_waits_are_reported() {
    let d = desired(&[want("a", "h", "")]);
    let mut r = exited("a", "h", 1, 0, 500);
    r.backoff_streak = 3;
    let o = observed(&[r]);
    let p = plan(&d, &o, &cfg(), T + 7_999);
    assert_eq!(shown(&p), Vec::<String>::new());
    assert_eq!(waits(&p), ["a: restart back-off (8s)"]);
    assert_eq!(p.wake_at_ms, Some(T + 8_000));
    assert_eq!(
        p.waiting["a"],
        Waiting::Backoff {
            until_ms: T + 8_000,
            delay: Duration::from_secs(8)
        }
    );
    assert_eq!(run(&d, &o, T + 8_000), ["restart container a"]);
}

#[test]
fn a_long_run_resets_the_back_off() {
    let d = desired(&[want("a", "h", "")]);
    let mut r = exited("a", "h", 1, 0, 600_000);
    r.backoff_streak = 9;
    let p = plan(&d, &observed(&[r]), &cfg(), T);
    assert_eq!(p.wake_at_ms, Some(T + 1_000), "initial delay again");
}

#[test]
fn setup_failures_are_retried_under_every_policy_until_the_container_ran() {
    let d = desired(&[want("a", "h", "restartPolicy: Never")]);
    let mut r = exited("a", "h", 0, 10_000, 0);
    r.state = ContainerState::Failed;
    r.reason = Some(Reason::SetupError);
    r.exit_code = None;
    r.ever_ran = false;
    assert_eq!(
        run(&d, &observed(std::slice::from_ref(&r)), T),
        ["restart container a"]
    );
    r.ever_ran = true;
    assert_eq!(
        run(&d, &observed(std::slice::from_ref(&r)), T),
        Vec::<String>::new(),
        "it ran once: Never holds"
    );
    // The process itself not starting (no such command) is the workload's own failure.
    r.ever_ran = false;
    r.reason = Some(Reason::StartError);
    assert_eq!(run(&d, &observed(&[r]), T), Vec::<String>::new());
}

#[test]
fn interrupted_creates_are_redone() {
    let d = desired(&[want("a", "h", "")]);
    for state in [ContainerState::Pulling, ContainerState::Created] {
        let o = observed(&[record("a", "h", state)]);
        let p = plan(&d, &o, &cfg(), T);
        assert!(
            matches!(
                &p.actions[..],
                [Action::Recreate {
                    reason: RecreateReason::Interrupted,
                    ..
                }]
            ),
            "{state}: {:?}",
            p.actions
        );
    }
}

#[test]
fn objects_in_flight_or_waiting_for_a_retry_are_left_alone() {
    let d = desired(&[want("a", "h", ""), want("b", "h", "")]);
    let mut o = observed(&[]);
    o.in_flight.insert(Key::Container("a".into()));
    o.failures.insert(
        Key::Container("b".into()),
        Failure {
            error: "pull failed".into(),
            since_ms: T - 10,
            retry_at_ms: T + 2_000,
            streak: 1,
        },
    );
    let p = plan(&d, &o, &cfg(), T);
    assert_eq!(shown(&p), Vec::<String>::new());
    assert_eq!(waits(&p), ["b: a retry after: pull failed"]);
    assert_eq!(p.wake_at_ms, Some(T + 2_000));
    assert_eq!(
        shown(&plan(&d, &o, &cfg(), T + 2_000)),
        ["create container b"]
    );
}

#[test]
fn a_dead_shim_is_recorded_and_its_leftovers_killed_before_any_restart() {
    let d = desired(&[want("a", "h", "")]);
    let mut o = observed(&[running("a", "h")]);
    o.containers.get_mut("a").unwrap().shim = Shim::Gone;
    assert_eq!(run(&d, &o, T), ["record-exit container a"]);

    let mut o = observed(&[exited("a", "h", 137, 60_000, 1)]);
    o.containers.get_mut("a").unwrap().leftovers = true;
    assert_eq!(run(&d, &o, T), ["reap container a"], "never two copies");
}

#[test]
fn an_empty_directory_prunes_nothing_unless_allowed() {
    let o = observed(&[running("a", "h")]);
    let guarded = Desired {
        freeze_all: true,
        empty_guard: true,
        ..Default::default()
    };
    let p = plan(&guarded, &o, &cfg(), T);
    assert_eq!(shown(&p), Vec::<String>::new());
    assert!(p.prune_blocked);
    assert!(
        !plan(&guarded, &observed(&[]), &cfg(), T).prune_blocked,
        "nothing to protect"
    );
    let allowed = desired(&[]);
    let p = plan(&allowed, &o, &cfg(), T);
    assert_eq!(shown(&p), ["remove container a"]);
    assert!(!p.prune_blocked);
}

#[test]
fn frozen_files_and_broken_objects_keep_their_containers() {
    let o = observed(&[running("a", "h")]);
    let mut d = desired(&[]);
    d.frozen_files.insert("/m/a.yaml".into());
    assert_eq!(run(&d, &o, T), Vec::<String>::new());
    let mut d = desired(&[]);
    d.manifest_errors
        .insert("a".into(), ("/m/z.yaml".into(), "bad".into()));
    assert_eq!(run(&d, &o, T), Vec::<String>::new());
}

#[test]
fn live_fields_refresh_the_record_and_runtime_fields_recreate() {
    let o = observed(&[running("a", "h1")]);
    let mut live = want("a", "h2", "restartPolicy: Never");
    live.runtime_hash = "run-h1".into();
    let p = plan(&desired(&[live]), &o, &cfg(), T);
    assert!(
        matches!(&p.actions[..], [Action::Refresh { target, .. }] if target.hash == "h2"),
        "{:?}",
        p.actions
    );
    assert_eq!(
        run(&desired(&[want("a", "h2", "")]), &o, T),
        ["recreate container a"]
    );
    // A file moved or re-saved: the record learns its new file; the process stays.
    let mut moved = want("a", "h1", "");
    moved.source_file = "/m/b.yaml".into();
    assert_eq!(run(&desired(&[moved]), &o, T), ["refresh container a"]);
}

#[test]
fn records_from_before_runtime_hashes_are_adopted_not_recreated() {
    let mut old = running("a", "h1");
    old.runtime_hash = None;
    let o = observed(&[old]);
    assert_eq!(
        run(&desired(&[want("a", "h1", "")]), &o, T),
        ["refresh container a"]
    );
    assert_eq!(
        run(&desired(&[want("a", "h2", "")]), &o, T),
        ["recreate container a"]
    );
}

#[test]
fn depends_on_started_healthy_and_completed() {
    let web = want(
        "web",
        "w",
        "dependsOn: [{name: db, condition: Healthy}, {name: init, condition: Completed}, {name: cache}]",
    );
    let d = desired(&[
        web,
        want("db", "d", ""),
        want("init", "i", "restartPolicy: Never"),
        want("cache", "c", ""),
    ]);
    let mut o = observed(&[running("db", "d"), running("cache", "c")]);
    let p = plan(&d, &o, &cfg(), T);
    assert_eq!(shown(&p), ["create container init"]);
    assert_eq!(waits(&p), ["web: db to be healthy"]);

    o.containers.get_mut("db").unwrap().health = Some(HealthSnapshot {
        status: HealthStatus::Healthy,
        failing_streak: 0,
        output: String::new(),
        checked_at_ms: Some(T),
    });
    o.containers.insert(
        "init".into(),
        ObservedContainer::from_record(running("init", "i")),
    );
    let p = plan(&d, &o, &cfg(), T);
    assert_eq!(waits(&p), ["web: init to be completed successfully"]);
    o.containers.insert(
        "init".into(),
        ObservedContainer::from_record(exited("init", "i", 3, 1, 1)),
    );
    assert_eq!(
        waits(&plan(&d, &o, &cfg(), T)),
        ["web: init to be completed successfully"]
    );
    o.containers.insert(
        "init".into(),
        ObservedContainer::from_record(exited("init", "i", 0, 1, 1)),
    );
    o.containers.get_mut("cache").unwrap().shim = Shim::Gone;
    let p = plan(&d, &o, &cfg(), T);
    assert_eq!(shown(&p), ["record-exit container cache"]);
    assert_eq!(waits(&p), ["web: cache to be started"]);
    o.containers.get_mut("cache").unwrap().shim = Shim::Alive;
    assert_eq!(run(&d, &o, T), ["create container web"]);
    // The order is off for `berth plan`.
    let mut unordered = cfg();
    unordered.ordering = false;
    let o = observed(&[]);
    assert_eq!(plan(&d, &o, &unordered, T).actions.len(), 4);
}

#[test]
fn dependents_are_removed_before_what_they_depend_on() {
    let mut web = running("web", "w");
    web.spec_json = r#"{"image":"busybox","dependsOn":[{"name":"db"}]}"#.into();
    let o = observed(&[web, running("db", "d")]);
    let p = plan(&desired(&[]), &o, &cfg(), T);
    assert_eq!(shown(&p), ["remove container web"]);
    assert_eq!(waits(&p), ["db: web to be removed first"]);
    let o = observed(&[running("db", "d")]);
    assert_eq!(run(&desired(&[]), &o, T), ["remove container db"]);
}

fn net(name: &str, hash: &str) -> DesiredNetwork {
    DesiredNetwork {
        name: name.into(),
        spec: NetworkSpec::default(),
        hash: hash.into(),
        source_file: "/m/n.yaml".into(),
        origin: Origin::Loaded,
    }
}

fn net_record(name: &str, hash: &str) -> NetworkRecord {
    NetworkRecord {
        name: name.into(),
        spec_hash: hash.into(),
        driver: "bridge".into(),
        interface: format!("br-{name}"),
        subnet: "10.89.0.0/24".into(),
        gateway: "10.89.0.1".into(),
        internal: false,
        macvlan_mode: String::new(),
        source_file: "/m/n.yaml".into(),
        created_at: 0,
    }
}

fn lease(network: &str, r: &ContainerRecord) -> LeaseRecord {
    LeaseRecord {
        network: network.into(),
        address: "10.89.0.2".into(),
        container_id: r.id.clone(),
        container_name: r.name.clone(),
        host_interface: format!("veth-{}", r.name),
        interface: "eth0".into(),
        ports_json: "[]".into(),
        created_at: 0,
    }
}

#[test]
fn networks_come_before_their_containers_and_go_after_them() {
    let mut d = desired(&[want("web", "w", "networks: [front]")]);
    d.networks.insert("front".into(), net("front", "n1"));
    let p = plan(&d, &observed(&[]), &PlanConfig::default(), T);
    assert_eq!(shown(&p), ["ensure-network network front"]);
    assert_eq!(waits(&p), ["web: network front to be ready"]);

    let mut o = observed(&[]);
    o.networks.insert("front".into(), net_record("front", "n1"));
    assert_eq!(
        shown(&plan(&d, &o, &PlanConfig::default(), T)),
        ["create container web"]
    );

    // Gone from the manifests: the container first; the network once no lease holds it.
    let web = running("web", "w");
    o.leases.push(lease("front", &web));
    o.containers
        .insert("web".into(), ObservedContainer::from_record(web));
    let p = plan(&desired(&[]), &o, &PlanConfig::default(), T);
    assert_eq!(shown(&p), ["remove container web"]);
    o.leases.clear();
    o.containers.clear();
    assert_eq!(
        shown(&plan(&desired(&[]), &o, &PlanConfig::default(), T)),
        ["remove-network network front"]
    );
}

#[test]
fn a_changed_network_is_rebuilt_with_its_containers_and_they_are_made_again() {
    let mut d = desired(&[want("web", "w", "networks: [front]")]);
    d.networks.insert("front".into(), net("front", "n2"));
    let web = running("web", "w");
    let mut o = observed(std::slice::from_ref(&web));
    o.networks.insert("front".into(), net_record("front", "n1"));
    o.leases.push(lease("front", &web));
    let p = plan(&d, &o, &PlanConfig::default(), T);
    match &p.actions[..] {
        [Action::RebuildNetwork { def, holders }] => {
            assert_eq!(def.hash, "n2");
            assert_eq!(holders, std::slice::from_ref(&web));
        }
        other => panic!("{other:?}"),
    }
    // After the rebuild: the holder, stopped for it, is made again on the new network.
    let mut after = exited("web", "w", 137, 1, 1);
    after.reason = Some(Reason::NetworkChanged);
    let mut o = observed(&[after]);
    o.networks.insert("front".into(), net_record("front", "n2"));
    let p = plan(&d, &o, &PlanConfig::default(), T);
    assert!(
        matches!(
            &p.actions[..],
            [Action::Recreate {
                reason: RecreateReason::NetworkChanged,
                ..
            }]
        ),
        "{:?}",
        p.actions
    );
}

#[test]
fn the_default_network_exists_while_needed_and_drift_is_repaired_on_resync() {
    let d = desired(&[want("web", "w", "networks: [default]")]);
    let p = plan(&d, &observed(&[]), &PlanConfig::default(), T);
    assert_eq!(shown(&p), ["ensure-network network default"]);
    let mut o = observed(&[running("web", "w")]);
    o.networks.insert(
        "default".into(),
        net_record("default", "builtin:default:v1"),
    );
    assert_eq!(
        shown(&plan(&d, &o, &PlanConfig::default(), T)),
        Vec::<String>::new()
    );
    o.drift_check = true;
    let p = plan(&d, &o, &PlanConfig::default(), T);
    match &p.actions[..] {
        [Action::RepairNetworks(defs)] => {
            assert_eq!(
                defs.iter()
                    .map(|d: &NetworkDef| d.name.as_str())
                    .collect::<Vec<_>>(),
                ["default"]
            )
        }
        other => panic!("{other:?}"),
    }
}

fn vol(name: &str, policy: &str) -> DesiredVolume {
    DesiredVolume {
        name: name.into(),
        spec: serde_yaml::from_str::<VolumeSpec>(&format!("reclaimPolicy: {policy}")).unwrap(),
        hash: format!("v-{policy}"),
        source_file: "/m/v.yaml".into(),
        origin: Origin::Loaded,
    }
}

fn vol_record(name: &str, policy: &str, retained: bool) -> VolumeRecord {
    VolumeRecord {
        name: name.into(),
        spec_hash: format!("v-{policy}"),
        reclaim_policy: policy.into(),
        source_file: "/m/v.yaml".into(),
        retained,
        created_at_ms: 0,
    }
}

#[test]
fn volumes_are_objects_deleted_only_by_their_policy_once_unused() {
    let mut d = desired(&[want("db", "d", "mounts: [{volume: data, path: /data}]")]);
    d.volumes.insert("data".into(), vol("data", "Delete"));
    let p = plan(&d, &observed(&[]), &cfg(), T);
    assert_eq!(shown(&p), ["ensure-volume volume data"]);
    assert_eq!(waits(&p), ["db: volume data to be ready"]);

    let mut db = running("db", "d");
    db.spec_json = r#"{"image":"busybox","mounts":[{"volume":"data","path":"/data"}]}"#.into();
    let mut o = observed(std::slice::from_ref(&db));
    o.volumes
        .insert("data".into(), vol_record("data", "Delete", false));
    assert_eq!(run(&d, &o, T), Vec::<String>::new());
    // The manifests go: the container first, then the volume (Delete).
    assert_eq!(run(&desired(&[]), &o, T), ["remove container db"]);
    o.containers.clear();
    assert_eq!(run(&desired(&[]), &o, T), ["remove-volume volume data"]);
    // Retain keeps the data and says so once.
    o.volumes
        .insert("data".into(), vol_record("data", "Retain", false));
    assert_eq!(run(&desired(&[]), &o, T), ["retain-volume volume data"]);
    o.volumes
        .insert("data".into(), vol_record("data", "Retain", true));
    assert_eq!(run(&desired(&[]), &o, T), Vec::<String>::new());
    // Defined again: taken back.
    let mut again = desired(&[]);
    again.volumes.insert("data".into(), vol("data", "Retain"));
    assert_eq!(run(&again, &o, T), ["ensure-volume volume data"]);
}

fn health(status: HealthStatus) -> Option<HealthSnapshot> {
    Some(HealthSnapshot {
        status,
        failing_streak: 3,
        output: "connection refused".into(),
        checked_at_ms: Some(T),
    })
}

#[test]
fn unhealthy_containers_are_restarted_or_stopped_as_on_unhealthy_says() {
    for (on, restarts) in [("restart", true), ("stop", false), ("none", false)] {
        let d = desired(&[want(
            "a",
            "h",
            &format!("healthcheck: {{tcp: {{port: 80}}, onUnhealthy: {on}}}"),
        )]);
        let mut o = observed(&[running("a", "h")]);
        o.containers.get_mut("a").unwrap().health = health(HealthStatus::Unhealthy);
        let p = plan(&d, &o, &cfg(), T);
        if on == "none" {
            assert_eq!(shown(&p), Vec::<String>::new());
            continue;
        }
        match &p.actions[..] {
            [Action::Stop {
                reason: Reason::Unhealthy,
                message,
                ..
            }] => assert!(message.contains("connection refused"), "{message}"),
            other => panic!("{on}: {other:?}"),
        }
        // Stopped for it: restarted after the back-off, or left stopped.
        let mut stopped = exited("a", "h", 137, 0, 60_000);
        stopped.reason = Some(Reason::Unhealthy);
        let p = plan(
            &d,
            &observed(std::slice::from_ref(&stopped)),
            &cfg(),
            T + 1_000,
        );
        let want: &[&str] = if restarts {
            &["restart container a"]
        } else {
            &[]
        };
        assert_eq!(shown(&p), want, "{on}");
        if !restarts {
            // A new revision starts it again.
            let d2 = desired(&[want_stop_changed()]);
            assert_eq!(run(&d2, &observed(&[stopped]), T), ["restart container a"]);
        }
    }
}

fn want_stop_changed() -> DesiredContainer {
    let mut d = want(
        "a",
        "h-new",
        "healthcheck: {tcp: {port: 80}, onUnhealthy: stop}",
    );
    d.runtime_hash = "run-h".into();
    d
}

fn rollout(prev_hash: &str, started: u64) -> Option<Rollout> {
    Some(Rollout {
        previous: Revision {
            spec_hash: prev_hash.into(),
            runtime_hash: Some(format!("run-{prev_hash}")),
            spec_json: r#"{"image":"busybox"}"#.into(),
            source_file: "/m/a.yaml".into(),
            image: "busybox".into(),
            image_digest: Some("sha256:0".into()),
        },
        started_at_ms: started,
    })
}

#[test]
fn an_update_carries_its_previous_revision_only_from_a_running_container() {
    let d = desired(&[want("a", "h2", "")]);
    let p = plan(&d, &observed(&[running("a", "h1")]), &cfg(), T);
    match &p.actions[..] {
        [Action::Recreate {
            previous: Some(prev),
            reason: RecreateReason::SpecChanged,
            ..
        }] => assert_eq!(prev.spec_hash, "h1"),
        other => panic!("{other:?}"),
    }
    let crashed = exited("a", "h1", 1, 1, 1);
    let p = plan(&d, &observed(&[crashed]), &cfg(), T);
    assert!(
        matches!(&p.actions[..], [Action::Recreate { previous: None, .. }]),
        "{:?}",
        p.actions
    );
    // An update of an update that never became ready keeps the last good revision.
    let mut pending = running("a", "h1");
    pending.rollout = rollout("h0", T - 1);
    let p = plan(&d, &observed(&[pending]), &cfg(), T);
    assert!(
        matches!(&p.actions[..], [Action::Recreate { previous: Some(prev), .. }] if prev.spec_hash == "h0"),
        "{:?}",
        p.actions
    );
}

#[test]
fn an_update_is_promoted_when_ready_and_rolled_back_when_late() {
    let d = desired(&[want(
        "a",
        "h2",
        "update: {minReady: 10s, rollbackAfter: 1m}",
    )]);
    let mut r = running("a", "h2");
    r.started_at_ms = Some(T);
    r.rollout = rollout("h1", T);
    let o = observed(std::slice::from_ref(&r));
    let p = plan(&d, &o, &cfg(), T + 5_000);
    assert_eq!(shown(&p), Vec::<String>::new());
    assert_eq!(p.wake_at_ms, Some(T + 10_000), "judged when minReady is up");
    assert_eq!(run(&d, &o, T + 10_000), ["promote container a"]);

    // Crash-looping: never runs for 10s; rolled back at the deadline.
    let mut looping = exited("a", "h2", 1, 0, 2_000);
    looping.finished_at_ms = Some(T + 59_000);
    looping.rollout = rollout("h1", T);
    looping.backoff_streak = 4;
    let o = observed(std::slice::from_ref(&looping));
    let p = plan(&d, &o, &cfg(), T + 60_000);
    match &p.actions[..] {
        [Action::Rollback {
            to, rejected, why, ..
        }] => {
            assert_eq!((to.spec_hash.as_str(), rejected.as_str()), ("h1", "h2"));
            assert_eq!(
                why,
                "update to revision h2 (/m/a.yaml) exited with code 1 within 1m, after 4 restarts; rolled back to revision h1"
            );
        }
        other => panic!("{other:?}"),
    }
    // Finished for good (Never): rolled back at once.
    let d = desired(&[want("a", "h2", "restartPolicy: Never")]);
    let p = plan(&d, &o, &cfg(), T + 1);
    assert!(
        matches!(&p.actions[..], [Action::Rollback { .. }]),
        "{:?}",
        p.actions
    );
    // A job that completes is ready.
    let mut done = exited("a", "h2", 0, 0, 1);
    done.rollout = rollout("h1", T);
    assert_eq!(run(&d, &observed(&[done]), T + 1), ["promote container a"]);
}

#[test]
fn with_a_healthcheck_an_update_is_ready_when_healthy() {
    let d = desired(&[want(
        "a",
        "h2",
        "healthcheck: {tcp: {port: 80}}\nupdate: {rollbackAfter: 1m}",
    )]);
    let mut r = running("a", "h2");
    r.started_at_ms = Some(T);
    r.rollout = rollout("h1", T);
    let mut o = observed(&[r]);
    o.containers.get_mut("a").unwrap().health = health(HealthStatus::Starting);
    let p = plan(&d, &o, &cfg(), T + 30_000);
    assert_eq!(shown(&p), Vec::<String>::new());
    assert_eq!(p.wake_at_ms, Some(T + 60_000));
    let late = plan(&d, &o, &cfg(), T + 60_000);
    match &late.actions[..] {
        [Action::Rollback { why, .. }] => assert!(
            why.contains("was not healthy (last probe: connection refused) within 1m"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    o.containers.get_mut("a").unwrap().health = health(HealthStatus::Healthy);
    assert_eq!(run(&d, &o, T + 30_000), ["promote container a"]);
}

#[test]
fn a_rolled_back_revision_is_not_tried_again_until_the_manifest_changes() {
    let bad = want("a", "h2", "");
    let mut r = running("a", "h1");
    r.rejected_hash = Some("h2".into());
    let o = observed(std::slice::from_ref(&r));
    assert_eq!(
        run(&desired(std::slice::from_ref(&bad)), &o, T),
        Vec::<String>::new()
    );
    // It crashes: restarted on the revision that runs, not the rejected one.
    let mut crashed = exited("a", "h1", 1, 60_000, 1);
    crashed.rejected_hash = Some("h2".into());
    let p = plan(&desired(&[bad]), &observed(&[crashed]), &cfg(), T);
    match &p.actions[..] {
        [Action::Restart { target, .. }] => {
            assert_eq!(target.hash, "h1");
            assert_eq!(target.rejected.as_deref(), Some("h2"));
        }
        other => panic!("{other:?}"),
    }
    // A new revision is tried.
    assert_eq!(
        run(&desired(&[want("a", "h3", "")]), &o, T),
        ["recreate container a"]
    );
}

#[test]
fn an_update_whose_image_never_pulls_is_rejected_and_the_old_container_kept() {
    let d = desired(&[want("a", "h2", "update: {rollbackAfter: 1m}")]);
    let mut o = observed(&[running("a", "h1")]);
    o.failures.insert(
        Key::Container("a".into()),
        Failure {
            error: "pull busybox:9: manifest unknown".into(),
            since_ms: T,
            retry_at_ms: T + 30_000,
            streak: 5,
        },
    );
    assert_eq!(run(&d, &o, T + 30_000), ["recreate container a"]);
    o.failures
        .get_mut(&Key::Container("a".into()))
        .unwrap()
        .retry_at_ms = T + 60_000;
    let p = plan(&d, &o, &cfg(), T + 60_000);
    match &p.actions[..] {
        [Action::Rollback {
            to, rejected, why, ..
        }] => {
            assert_eq!((to.spec_hash.as_str(), rejected.as_str()), ("h1", "h2"));
            assert!(
                why.contains("could not be applied within 1m: pull busybox:9"),
                "{why}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn strays_and_orphans_are_cleaned_and_finished_containers_release_networks() {
    let mut o = observed(&[exited("job", "j", 0, 1, 1)]);
    o.strays.push(Stray {
        cgroup: "ghost-0badf00d".into(),
        pids: vec![42],
    });
    o.orphan_wiring.insert("old-12345678".into());
    let job = o.containers["job"].record.clone();
    o.leases.push(lease("default", &job));
    let d = desired(&[want("job", "j", "restartPolicy: Never")]);
    assert_eq!(
        run(&d, &o, T),
        [
            "release-networks container job",
            "kill-stray cgroup ghost-0badf00d",
            "release-orphan wiring of old-12345678"
        ]
    );
    o.in_flight.insert(Key::Cgroup("ghost-0badf00d".into()));
    o.in_flight.insert(Key::Container("job".into()));
    assert_eq!(run(&d, &o, T), ["release-orphan wiring of old-12345678"]);
}

#[test]
fn a_deleted_link_or_cgroup_makes_its_container_again() {
    let d = desired(&[want("a", "h", "")]);
    let mut o = observed(&[running("a", "h")]);
    o.containers.get_mut("a").unwrap().link_lost = true;
    let p = plan(&d, &o, &cfg(), T);
    assert!(
        matches!(
            &p.actions[..],
            [Action::Recreate {
                reason: RecreateReason::LinkLost,
                ..
            }]
        ),
        "{:?}",
        p.actions
    );
    let mut o = observed(&[running("a", "h")]);
    o.containers.get_mut("a").unwrap().cgroup_lost = true;
    let p = plan(&d, &o, &cfg(), T);
    assert!(
        matches!(
            &p.actions[..],
            [Action::Recreate {
                reason: RecreateReason::CgroupLost,
                ..
            }]
        ),
        "{:?}",
        p.actions
    );
}

#[test]
fn a_sibling_finishing_changes_nothing_for_the_others() {
    // The race of issue #10: a pass that sees `keep` running and `once` just exited.
    let d = desired(&[
        want("keep", "k", ""),
        want("once", "o", "restartPolicy: Never"),
    ]);
    let keep = running("keep", "k");
    let once = exited("once", "o", 3, 1, 1);
    let mut o = observed(&[keep.clone(), once.clone()]);
    o.leases.push(lease("default", &once));
    o.leases.push(lease("default", &keep));
    assert_eq!(run(&d, &o, T), ["release-networks container once"]);
    o.leases.retain(|l| l.container_id == keep.id);
    assert_eq!(run(&d, &o, T), Vec::<String>::new());
}

#[test]
fn kept_objects_stay_when_their_manifest_goes() {
    let mut kept = want("db", "d", "");
    kept.origin = Origin::Kept;
    let mut d = desired(&[kept]);
    d.volumes.insert("data".into(), {
        let mut v = vol("data", "Delete");
        v.origin = Origin::Kept;
        v
    });
    let mut o = observed(&[running("db", "d")]);
    o.volumes
        .insert("data".into(), vol_record("data", "Delete", false));
    assert_eq!(run(&d, &o, T), Vec::<String>::new());
}

#[test]
fn short_hashes_for_messages() {
    assert_eq!(short("sha256:0123456789abcdef0123"), "0123456789ab");
    assert_eq!(short("h1"), "h1");
    let _ = BTreeMap::<u8, u8>::new();
}
