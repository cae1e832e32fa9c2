//! The decision: what to do to converge, as a pure function of desired state, the records of
//! what berth created, and the time. No I/O, so it is tested with tables.

use std::collections::{BTreeMap, BTreeSet};

use berth_engine::state::ContainerRecord;
use berth_spec::RestartPolicy;

use super::desired::{Desired, DesiredContainer};

#[derive(Clone, Debug)]
pub enum Action {
    /// Pull the image, create and start a container that does not exist yet.
    Create(DesiredContainer),
    /// The spec changed: pull the new image, then stop and remove the old container, then
    /// create the new one. Also used to finish a create that was interrupted.
    Recreate {
        desired: DesiredContainer,
        old: ContainerRecord,
    },
    /// Start an exited or failed container again, with its writable layer.
    Restart {
        desired: DesiredContainer,
        old: ContainerRecord,
    },
    /// The manifest is gone: stop the container and remove what it left.
    Remove(ContainerRecord),
}

impl Action {
    pub fn name(&self) -> &str {
        match self {
            Action::Create(d)
            | Action::Recreate { desired: d, .. }
            | Action::Restart { desired: d, .. } => &d.name,
            Action::Remove(r) => &r.name,
        }
    }

    pub fn verb(&self) -> &'static str {
        match self {
            Action::Create(_) => "create",
            Action::Recreate { .. } => "recreate",
            Action::Restart { .. } => "restart",
            Action::Remove(_) => "remove",
        }
    }
}

/// Seconds to wait before restarting a container that exited: 1s after a run of at least
/// 10s (Docker's rule), otherwise doubling with each restart up to 30s.
pub fn restart_delay(r: &ContainerRecord) -> u64 {
    let ran = match (r.started_at, r.finished_at) {
        (Some(s), Some(f)) => f.saturating_sub(s),
        _ => 0,
    };
    if ran >= 10 {
        1
    } else {
        (1u64 << r.restart_count.min(5)).min(30)
    }
}

/// Whether the policy starts container `r` again after it ended.
pub(super) fn wants_restart(policy: RestartPolicy, r: &ContainerRecord) -> bool {
    match r.state.as_str() {
        "exited" => match policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => r.exit_code != Some(0),
            RestartPolicy::Never => false,
        },
        // Pull failures are always retried; a container that could not start follows its policy.
        "failed" => r.image_digest.is_none() || policy != RestartPolicy::Never,
        _ => false,
    }
}

/// `busy`: containers an action is already working on. `not_before`: unix seconds before
/// which a container must not be retried (set after a failed action).
pub fn plan(
    desired: &Desired,
    records: &[ContainerRecord],
    busy: &BTreeSet<String>,
    not_before: &BTreeMap<String, u64>,
    now: u64,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let by_name: BTreeMap<&str, &ContainerRecord> =
        records.iter().map(|r| (r.name.as_str(), r)).collect();
    let waiting = |name: &str| not_before.get(name).is_some_and(|&t| now < t);

    for (name, d) in &desired.containers {
        if busy.contains(name) || waiting(name) {
            continue;
        }
        match by_name.get(name.as_str()) {
            None => actions.push(Action::Create(d.clone())),
            Some(r) if r.spec_hash != d.hash => actions.push(Action::Recreate {
                desired: d.clone(),
                old: (*r).clone(),
            }),
            Some(r) => match r.state.as_str() {
                // Not busy, yet mid-create: the agent stopped during a pull or a start.
                "pulling" | "created" => actions.push(Action::Recreate {
                    desired: d.clone(),
                    old: (*r).clone(),
                }),
                "exited" | "failed" if wants_restart(d.spec.restart_policy, r) => {
                    let due = r.finished_at.unwrap_or(0) + restart_delay(r);
                    if now >= due {
                        actions.push(Action::Restart {
                            desired: d.clone(),
                            old: (*r).clone(),
                        });
                    }
                }
                _ => {}
            },
        }
    }
    if !desired.freeze_all {
        for r in records {
            if desired.containers.contains_key(&r.name)
                || busy.contains(&r.name)
                || desired.frozen_files.contains(&r.source_file)
                || desired.manifest_errors.contains_key(&r.name)
            {
                continue;
            }
            actions.push(Action::Remove(r.clone()));
        }
    }
    actions
}

/// When a container is due for its next restart, if it is waiting for one.
pub fn next_due(desired: &Desired, records: &[ContainerRecord]) -> Option<u64> {
    records
        .iter()
        .filter_map(|r| {
            let d = desired.containers.get(&r.name)?;
            (d.hash == r.spec_hash && wants_restart(d.spec.restart_policy, r))
                .then(|| r.finished_at.unwrap_or(0) + restart_delay(r))
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(policy: &str) -> berth_spec::ContainerSpec {
        let yaml = format!("image: busybox\nrestartPolicy: {policy}\n");
        serde_yaml::from_str(&yaml).expect("valid container spec")
    }

    fn want(name: &str, hash: &str, policy: &str, file: &str) -> DesiredContainer {
        DesiredContainer {
            name: name.into(),
            spec: spec(policy),
            hash: hash.into(),
            source_file: file.into(),
        }
    }

    fn rec(name: &str, hash: &str, state: &str) -> ContainerRecord {
        ContainerRecord {
            name: name.into(),
            id: format!("{name}-1"),
            source_file: "/m/a.yaml".into(),
            spec_hash: hash.into(),
            spec_json: "{}".into(),
            image: "busybox".into(),
            image_digest: Some("sha256:1".into()),
            state: state.into(),
            shim_pid: None,
            shim_start_time: None,
            init_pid: None,
            exit_code: Some(1),
            restart_count: 0,
            message: None,
            created_at: 0,
            started_at: Some(100),
            finished_at: Some(100),
            reason: None,
        }
    }

    fn desired(items: &[DesiredContainer]) -> Desired {
        Desired {
            containers: items.iter().map(|d| (d.name.clone(), d.clone())).collect(),
            ..Default::default()
        }
    }

    fn summary(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| format!("{} {}", a.verb(), a.name()))
            .collect()
    }

    fn run(d: &Desired, r: &[ContainerRecord], now: u64) -> Vec<String> {
        summary(&plan(d, r, &BTreeSet::new(), &BTreeMap::new(), now))
    }

    #[test]
    fn create_keep_recreate_remove() {
        let d = desired(&[
            want("a", "h1", "Always", "/m/a.yaml"),
            want("b", "h2", "Always", "/m/a.yaml"),
            want("c", "h3", "Always", "/m/a.yaml"),
        ]);
        let r = [
            rec("b", "h2", "running"),
            rec("c", "old", "running"),
            rec("gone", "h9", "running"),
        ];
        assert_eq!(run(&d, &r, 1000), ["create a", "recreate c", "remove gone"]);
    }

    #[test]
    fn same_state_twice_does_nothing() {
        let d = desired(&[want("a", "h1", "Always", "/m/a.yaml")]);
        let r = [rec("a", "h1", "running")];
        assert!(run(&d, &r, 1000).is_empty());
        assert!(run(&d, &r, 2000).is_empty());
    }

    #[test]
    fn restart_policy_and_delay() {
        let mut exited = rec("a", "h1", "exited");
        exited.finished_at = Some(100);
        let always = desired(&[want("a", "h1", "Always", "/m/a.yaml")]);
        assert!(
            run(&always, std::slice::from_ref(&exited), 100).is_empty(),
            "too early"
        );
        assert_eq!(
            run(&always, std::slice::from_ref(&exited), 101),
            ["restart a"]
        );
        let never = desired(&[want("a", "h1", "Never", "/m/a.yaml")]);
        assert!(run(&never, std::slice::from_ref(&exited), 500).is_empty());
        let on_failure = desired(&[want("a", "h1", "OnFailure", "/m/a.yaml")]);
        assert_eq!(
            run(&on_failure, std::slice::from_ref(&exited), 500),
            ["restart a"]
        );
        exited.exit_code = Some(0);
        assert!(run(&on_failure, &[exited], 500).is_empty());
    }

    #[test]
    fn backoff_grows_for_crash_loops_and_resets_after_a_long_run() {
        let mut r = rec("a", "h", "exited");
        r.restart_count = 3;
        assert_eq!(restart_delay(&r), 8);
        r.restart_count = 50;
        assert_eq!(restart_delay(&r), 30);
        r.started_at = Some(0);
        r.finished_at = Some(60);
        assert_eq!(restart_delay(&r), 1);
    }

    #[test]
    fn failed_pulls_are_retried_even_with_never() {
        let mut failed = rec("a", "h1", "failed");
        failed.image_digest = None;
        let never = desired(&[want("a", "h1", "Never", "/m/a.yaml")]);
        assert_eq!(
            run(&never, std::slice::from_ref(&failed), 1000),
            ["restart a"]
        );
        failed.image_digest = Some("sha256:1".into());
        assert!(
            run(&never, &[failed], 1000).is_empty(),
            "a start failure under Never stays failed"
        );
    }

    #[test]
    fn frozen_files_and_unreadable_dirs_prune_nothing() {
        let r = [rec("a", "h1", "running")];
        let mut d = desired(&[]);
        d.frozen_files.insert("/m/a.yaml".into());
        assert!(run(&d, &r, 1000).is_empty());
        let d = Desired {
            freeze_all: true,
            ..Default::default()
        };
        assert!(run(&d, &r, 1000).is_empty());
        assert_eq!(run(&desired(&[]), &r, 1000), ["remove a"]);
    }

    #[test]
    fn busy_and_backed_off_containers_are_left_alone() {
        let d = desired(&[want("a", "h1", "Always", "/m/a.yaml")]);
        let busy: BTreeSet<String> = ["a".to_string()].into();
        assert!(plan(&d, &[], &busy, &BTreeMap::new(), 0).is_empty());
        let later: BTreeMap<String, u64> = [("a".to_string(), 50)].into();
        assert!(plan(&d, &[], &BTreeSet::new(), &later, 49).is_empty());
        assert_eq!(
            summary(&plan(&d, &[], &BTreeSet::new(), &later, 50)),
            ["create a"]
        );
    }

    #[test]
    fn interrupted_create_is_redone() {
        let d = desired(&[want("a", "h1", "Always", "/m/a.yaml")]);
        assert_eq!(run(&d, &[rec("a", "h1", "pulling")], 0), ["recreate a"]);
    }
}
