//! The decision: what to do to converge, as a pure function of the desired state, the
//! observed state and the time. No I/O, so it is tested with tables (`plan_tests.rs`).
//!
//! Order is level-triggered: an action whose prerequisites do not hold yet (its networks
//! and volumes exist, its `dependsOn` conditions hold; for a removal, its dependents are
//! gone; for a network, its containers are gone) is not planned at all, and the container
//! says what it waits for. Every finished action wakes the loop, so the next pass plans it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use berth_engine::network::NetworkDef;
use berth_engine::state::{ContainerRecord, ContainerState, Reason, Revision};
use berth_spec::{
    ContainerSpec, Dependency, DependencyCondition, MountSource, NetworkMode, OnUnhealthy,
    ReclaimPolicy, RestartPolicy,
};

use super::action::{Action, Key, RecreateReason};
use super::backoff::Backoff;
use super::desired::{Desired, DesiredContainer};
use super::health::HealthStatus;
use super::observed::{Observed, ObservedContainer, Shim};

/// What the agent config says that the planner needs.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanConfig {
    pub backoff: Backoff,
    /// berth manages networks (off only in tests that run without them).
    pub networking: bool,
    /// `networks.defaultNetwork`: the built-in network exists while a container needs it.
    pub default_network: bool,
    /// Containers wait for their networks, volumes and `dependsOn` conditions (off for
    /// `berth plan`, which shows what changes, not in which pass).
    pub ordering: bool,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            backoff: Backoff::default(),
            networking: true,
            default_network: true,
            ordering: true,
        }
    }
}

/// Why a container does not start (or is not removed) yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiting {
    Dependency(Dependency),
    Network(String),
    Volume(String),
    /// The restart back-off: not before `until_ms`.
    Backoff {
        until_ms: u64,
        delay: Duration,
    },
    /// A failed action is retried at `until_ms`.
    Retry {
        until_ms: u64,
        error: String,
    },
    /// Removed after the containers that depend on it.
    Dependents(Vec<String>),
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::Dependency(d) => {
                let cond = match d.condition {
                    DependencyCondition::Started => "started",
                    DependencyCondition::Healthy => "healthy",
                    DependencyCondition::Completed => "completed successfully",
                };
                write!(f, "{} to be {cond}", d.name)
            }
            Waiting::Network(n) => write!(f, "network {n} to be ready"),
            Waiting::Volume(v) => write!(f, "volume {v} to be ready"),
            Waiting::Backoff { delay, .. } => {
                write!(
                    f,
                    "restart back-off ({})",
                    berth_spec::DurationSpec::from_millis(delay.as_millis() as u64)
                )
            }
            Waiting::Retry { error, .. } => write!(f, "a retry after: {error}"),
            Waiting::Dependents(d) => write!(f, "{} to be removed first", d.join(", ")),
        }
    }
}

/// The plan of one pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// In order: networks and volumes, then containers, then removals.
    pub actions: Vec<Action>,
    /// Containers that do not start (or go) yet, and why.
    pub waiting: BTreeMap<String, Waiting>,
    /// Unix ms when something becomes due (a back-off, a readiness or rollback deadline).
    pub wake_at_ms: Option<u64>,
    /// The directory is empty and `allowEmpty` is off: removals were held back.
    pub prune_blocked: bool,
}

pub fn plan(desired: &Desired, observed: &Observed, cfg: &PlanConfig, now_ms: u64) -> Plan {
    let leased: BTreeSet<&str> = observed.leases.iter().map(|l| l.network.as_str()).collect();
    let wanted = if cfg.networking {
        super::networks::wanted(desired, cfg.default_network, &leased)
    } else {
        BTreeMap::new()
    };
    let mut p = Planner {
        desired,
        observed,
        cfg,
        now: now_ms,
        wanted,
        taken: BTreeSet::new(),
        out: Plan::default(),
    };
    p.networks();
    p.volumes();
    p.containers();
    p.removals();
    p.strays();
    p.out.prune_blocked = desired.empty_guard
        && !(observed.containers.is_empty()
            && observed.networks.is_empty()
            && observed.volumes.is_empty());
    p.out
}

struct Planner<'a> {
    desired: &'a Desired,
    observed: &'a Observed,
    cfg: &'a PlanConfig,
    now: u64,
    wanted: BTreeMap<String, NetworkDef>,
    /// Keys of the actions planned so far: one action per object per pass.
    taken: BTreeSet<Key>,
    out: Plan,
}

/// The spec a record runs, from its JSON (a record from another berth version falls back
/// to the manifest defaults for its image).
pub fn recorded_spec(r: &ContainerRecord) -> ContainerSpec {
    serde_json::from_str(&r.spec_json).unwrap_or_else(|_| ContainerSpec::new(r.image.clone()))
}

/// The revision a record runs, as a target (for a rolled-back container: what it runs now).
fn record_target(r: &ContainerRecord, d: &DesiredContainer) -> DesiredContainer {
    DesiredContainer {
        name: r.name.clone(),
        spec: serde_json::from_str(&r.spec_json).unwrap_or_else(|_| d.spec.clone()),
        hash: r.spec_hash.clone(),
        runtime_hash: r
            .runtime_hash
            .clone()
            .unwrap_or_else(|| r.spec_hash.clone()),
        source_file: r.source_file.clone(),
        origin: d.origin,
        rejected: Some(d.hash.clone()),
    }
}

/// The revision a record runs, to go back to.
pub fn revision_of(r: &ContainerRecord) -> Revision {
    Revision {
        spec_hash: r.spec_hash.clone(),
        runtime_hash: r.runtime_hash.clone(),
        spec_json: r.spec_json.clone(),
        source_file: r.source_file.clone(),
        image: r.image.clone(),
        image_digest: r.image_digest.clone(),
    }
}

/// Whether the process of `r` differs from the one `t` asks for.
fn runtime_differs(r: &ContainerRecord, t: &DesiredContainer) -> bool {
    match &r.runtime_hash {
        Some(h) => *h != t.runtime_hash,
        // Written before berth knew runtime hashes: only the same revision is the same.
        None => r.spec_hash != t.hash,
    }
}

/// Whether the record should be brought up to `t` without touching the process.
fn needs_refresh(r: &ContainerRecord, t: &DesiredContainer) -> bool {
    r.spec_hash != t.hash
        || r.source_file != t.source_file
        || r.runtime_hash.is_none()
        || r.rejected_hash != t.rejected
}

/// Whether the finished container `r` is started again under `t`.
pub fn will_restart(t: &ContainerSpec, r: &ContainerRecord) -> bool {
    match r.reason {
        Some(Reason::Unhealthy) => t
            .healthcheck
            .as_ref()
            .is_some_and(|h| h.on_unhealthy == OnUnhealthy::Restart),
        // Berth's own failure to set it up is not the workload's exit.
        Some(Reason::SetupError) => !r.ever_ran || t.restart_policy != RestartPolicy::Never,
        _ => match t.restart_policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => {
                !(r.state == ContainerState::Exited && r.exit_code == Some(0))
            }
            RestartPolicy::Never => false,
        },
    }
}

/// Where an update stands.
enum Readiness {
    Ready,
    /// Not ready, and out of time: why.
    Late(String),
    /// Not ready yet; judged again at this unix ms.
    Pending(u64),
}

impl<'a> Planner<'a> {
    fn busy(&self, key: &Key) -> bool {
        self.observed.busy(key) || self.taken.contains(key)
    }

    fn wake(&mut self, at: u64) {
        self.out.wake_at_ms = Some(self.out.wake_at_ms.map_or(at, |w| w.min(at)));
    }

    fn push(&mut self, action: Action) {
        self.taken.extend(action.keys());
        self.out.actions.push(action);
    }

    fn wait(&mut self, name: &str, why: Waiting) {
        self.out.waiting.insert(name.to_string(), why);
    }

    /// A failed action on `key` waits for its retry time.
    fn retry_pending(&mut self, key: &Key, name: &str) -> bool {
        let Some(f) = self.observed.failures.get(key) else {
            return false;
        };
        if self.now >= f.retry_at_ms {
            return false;
        }
        let (until_ms, error) = (f.retry_at_ms, f.error.clone());
        self.wake(until_ms);
        self.wait(name, Waiting::Retry { until_ms, error });
        true
    }

    // ---- networks ----

    fn networks(&mut self) {
        if !self.cfg.networking {
            return;
        }
        let wanted: Vec<NetworkDef> = self.wanted.values().cloned().collect();
        for def in wanted {
            let key = Key::Network(def.name.clone());
            if self.busy(&key) || self.retry_pending(&key, &def.name) {
                continue;
            }
            match self.observed.networks.get(&def.name) {
                None => self.push(Action::EnsureNetwork(def)),
                Some(rec) if rec.spec_hash != def.hash => {
                    let ids = self.observed.lease_holders(&def.name);
                    let holders: Vec<ContainerRecord> = self
                        .observed
                        .containers
                        .values()
                        .filter(|o| ids.contains(o.record.id.as_str()))
                        .map(|o| o.record.clone())
                        .collect();
                    if holders
                        .iter()
                        .any(|h| self.busy(&Key::Container(h.name.clone())))
                    {
                        continue;
                    }
                    self.push(Action::RebuildNetwork { def, holders });
                }
                Some(_) => {}
            }
        }
        if self.observed.drift_check && !self.busy(&Key::Firewall) {
            let intact: Vec<NetworkDef> = self
                .wanted
                .values()
                .filter(|d| {
                    self.observed
                        .networks
                        .get(&d.name)
                        .is_some_and(|r| r.spec_hash == d.hash)
                        && !self.busy(&Key::Network(d.name.clone()))
                })
                .cloned()
                .collect();
            if !intact.is_empty() {
                self.push(Action::RepairNetworks(intact));
            }
        }
        if self.desired.freeze_all {
            return;
        }
        let unwanted: Vec<String> = self
            .observed
            .networks
            .values()
            .filter(|r| !self.wanted.contains_key(&r.name))
            .filter(|r| r.source_file.is_empty() || !self.desired.is_frozen(&r.source_file))
            .map(|r| r.name.clone())
            .collect();
        for name in unwanted {
            let key = Key::Network(name.clone());
            // Its containers go first: their leases keep it.
            if self.busy(&key)
                || !self.observed.lease_holders(&name).is_empty()
                || self.retry_pending(&key, &name)
            {
                continue;
            }
            self.push(Action::RemoveNetwork(name));
        }
    }

    // ---- volumes ----

    /// Names of the volumes a spec mounts.
    fn volumes_of(spec: &ContainerSpec) -> impl Iterator<Item = &str> {
        spec.mounts.iter().filter_map(|m| match &m.source {
            MountSource::Volume(v) => Some(v.as_str()),
            _ => None,
        })
    }

    fn volumes(&mut self) {
        let desired: Vec<_> = self.desired.volumes.values().cloned().collect();
        for v in desired {
            let key = Key::Volume(v.name.clone());
            if self.busy(&key) || self.retry_pending(&key, &v.name) {
                continue;
            }
            let current = self.observed.volumes.get(&v.name).is_some_and(|r| {
                !r.retained && r.spec_hash == v.hash && r.source_file == v.source_file
            });
            if !current {
                self.push(Action::EnsureVolume(v));
            }
        }
        if self.desired.freeze_all {
            return;
        }
        let gone: Vec<_> = self
            .observed
            .volumes
            .values()
            .filter(|r| !self.desired.volumes.contains_key(&r.name))
            .filter(|r| !self.desired.is_frozen(&r.source_file))
            .cloned()
            .collect();
        for r in gone {
            let key = Key::Volume(r.name.clone());
            if self.busy(&key) || self.retry_pending(&key, &r.name) {
                continue;
            }
            if r.reclaim_policy != ReclaimPolicy::Delete.as_str() {
                if !r.retained {
                    self.push(Action::RetainVolume(r));
                }
                continue;
            }
            // Deleted only once no container, recorded or wanted, mounts it.
            let used = self
                .observed
                .containers
                .values()
                .any(|o| Self::volumes_of(&recorded_spec(&o.record)).any(|v| v == r.name))
                || self
                    .desired
                    .containers
                    .values()
                    .any(|d| Self::volumes_of(&d.spec).any(|v| v == r.name));
            if !used {
                self.push(Action::RemoveVolume(r));
            }
        }
    }

    // ---- containers ----

    /// What keeps `t` from starting now, if anything.
    fn gate(&self, t: &DesiredContainer) -> Option<Waiting> {
        if !self.cfg.ordering {
            return None;
        }
        if self.cfg.networking && t.spec.network_mode == NetworkMode::Bridge {
            for n in &t.spec.networks {
                let ready = match (self.wanted.get(n), self.observed.networks.get(n)) {
                    (Some(def), Some(rec)) => {
                        rec.spec_hash == def.hash && !self.busy(&Key::Network(n.clone()))
                    }
                    _ => false,
                };
                if !ready {
                    return Some(Waiting::Network(n.clone()));
                }
            }
        }
        for v in Self::volumes_of(&t.spec) {
            let ready = self.observed.volumes.get(v).is_some_and(|r| !r.retained)
                && !self.busy(&Key::Volume(v.to_string()));
            if !ready {
                return Some(Waiting::Volume(v.to_string()));
            }
        }
        t.spec
            .depends_on
            .iter()
            .find(|d| !self.holds(d))
            .map(|d| Waiting::Dependency(d.clone()))
    }

    /// Whether a `dependsOn` condition holds now.
    fn holds(&self, dep: &Dependency) -> bool {
        let Some(o) = self.observed.containers.get(&dep.name) else {
            return false;
        };
        if self.busy(&Key::Container(dep.name.clone())) {
            return false;
        }
        let r = &o.record;
        let running = r.state == ContainerState::Running && o.shim == Shim::Alive;
        match dep.condition {
            DependencyCondition::Started => running,
            DependencyCondition::Healthy => {
                running
                    && o.health
                        .as_ref()
                        .is_some_and(|h| h.status == HealthStatus::Healthy)
            }
            DependencyCondition::Completed => {
                let current = self
                    .desired
                    .containers
                    .get(&dep.name)
                    .is_none_or(|d| d.hash == r.spec_hash);
                current && r.state == ContainerState::Exited && r.exit_code == Some(0)
            }
        }
    }

    /// Plans `action` (which starts `t`) unless something keeps `t` from starting.
    fn start(&mut self, t: &DesiredContainer, action: Action) {
        match self.gate(t) {
            Some(why) => self.wait(&t.name, why),
            None => self.push(action),
        }
    }

    fn containers(&mut self) {
        let desired: Vec<&DesiredContainer> = self.desired.containers.values().collect();
        for d in desired {
            let key = Key::Container(d.name.clone());
            if self.busy(&key) || self.retry_pending(&key, &d.name) {
                continue;
            }
            match self.observed.containers.get(&d.name) {
                None => self.start(d, Action::Create(d.clone())),
                Some(o) => self.container(d, o),
            }
        }
    }

    fn container(&mut self, d: &DesiredContainer, o: &ObservedContainer) {
        let r = &o.record;
        if r.state == ContainerState::Running && o.shim == Shim::Gone {
            self.push(Action::RecordExit(r.clone()));
            return;
        }
        if r.state.is_finished() && o.leftovers {
            self.push(Action::Reap(r.clone()));
            return;
        }
        if matches!(r.state, ContainerState::Pulling | ContainerState::Created) {
            let target = if r.rejected_hash.as_deref() == Some(&d.hash) {
                record_target(r, d)
            } else {
                d.clone()
            };
            let previous = r.rollout.as_ref().map(|ro| ro.previous.clone());
            return self.start(
                &target.clone(),
                Action::Recreate {
                    target,
                    old: r.clone(),
                    reason: RecreateReason::Interrupted,
                    previous,
                },
            );
        }
        // A rolled-back revision is not tried again until the manifest changes.
        let target = if r.rejected_hash.as_deref() == Some(&d.hash) {
            record_target(r, d)
        } else {
            d.clone()
        };
        if runtime_differs(r, &target) {
            return self.update(&target, o);
        }
        if r.state.is_finished() && r.reason == Some(Reason::NetworkChanged) {
            let previous = r.rollout.as_ref().map(|ro| ro.previous.clone());
            return self.start(
                &target.clone(),
                Action::Recreate {
                    target,
                    old: r.clone(),
                    reason: RecreateReason::NetworkChanged,
                    previous,
                },
            );
        }
        if r.state == ContainerState::Running {
            return self.running(&target, o);
        }
        self.finished(&target, o);
    }

    /// The runtime spec changed: replace the container, keeping what to roll back to.
    fn update(&mut self, target: &DesiredContainer, o: &ObservedContainer) {
        let r = &o.record;
        let previous = match &r.rollout {
            // The update before this one never became ready: its previous is still the
            // last good revision.
            Some(ro) => Some(ro.previous.clone()),
            None if r.state == ContainerState::Running && r.ever_ran => Some(revision_of(r)),
            None => None,
        };
        // An update that could not even be set up for `rollbackAfter` (its image never
        // pulled) is rejected; the old container never stopped.
        let key = Key::Container(r.name.clone());
        if let Some(f) = self.observed.failures.get(&key) {
            let limit = target.spec.update.rollback_after.millis();
            if r.state == ContainerState::Running
                && previous.is_some()
                && self.now >= f.since_ms + limit
            {
                let why = format!(
                    "update to revision {} ({}) could not be applied within {}: {}; kept revision {}",
                    short(&target.hash),
                    target.source_file,
                    target.spec.update.rollback_after,
                    f.error,
                    short(&r.spec_hash)
                );
                self.push(Action::Rollback {
                    old: r.clone(),
                    to: revision_of(r),
                    rejected: target.hash.clone(),
                    why,
                });
                return;
            }
        }
        self.start(
            target,
            Action::Recreate {
                target: target.clone(),
                old: r.clone(),
                reason: RecreateReason::SpecChanged,
                previous,
            },
        );
    }

    /// Where the update of the running or finished container `o` stands.
    fn readiness(&self, t: &DesiredContainer, o: &ObservedContainer) -> Option<Readiness> {
        let r = &o.record;
        let ro = r.rollout.as_ref()?;
        let update = &t.spec.update;
        let deadline = ro.started_at_ms + update.rollback_after.millis();
        let completed = r.state == ContainerState::Exited && r.exit_code == Some(0);
        let running_since = (r.state == ContainerState::Running)
            .then_some(r.started_at_ms)
            .flatten();
        let ready = completed
            || match (&t.spec.healthcheck, running_since) {
                (Some(_), Some(_)) => o
                    .health
                    .as_ref()
                    .is_some_and(|h| h.status == HealthStatus::Healthy),
                (None, Some(since)) => self.now >= since + update.min_ready.millis(),
                (_, None) => false,
            };
        if ready {
            return Some(Readiness::Ready);
        }
        let finished_for_good = r.state.is_finished() && !will_restart(&t.spec, r);
        if self.now >= deadline || finished_for_good {
            let how = match (&t.spec.healthcheck, r.state) {
                (_, ContainerState::Failed) => format!(
                    "could not start: {}",
                    r.message.as_deref().unwrap_or("no message")
                ),
                (_, ContainerState::Exited) => format!(
                    "exited with code {}",
                    r.exit_code.map_or("?".to_string(), |c| c.to_string())
                ),
                (Some(_), _) => format!(
                    "was not healthy (last probe: {})",
                    o.health
                        .as_ref()
                        .map_or("none yet".to_string(), |h| h.output.trim().to_string())
                ),
                (None, _) => format!("did not keep running for {}", update.min_ready),
            };
            let within = if finished_for_good {
                String::new()
            } else {
                format!(" within {}", update.rollback_after)
            };
            return Some(Readiness::Late(format!(
                "{how}{within}, after {} restarts",
                r.backoff_streak
            )));
        }
        let mut next = deadline;
        if let (None, Some(since)) = (&t.spec.healthcheck, running_since) {
            next = next.min(since + update.min_ready.millis());
        }
        Some(Readiness::Pending(next))
    }

    /// Acts on an update's readiness; returns whether it planned something.
    fn judge_update(&mut self, t: &DesiredContainer, o: &ObservedContainer) -> bool {
        let r = &o.record;
        match self.readiness(t, o) {
            None => false,
            Some(Readiness::Ready) => {
                self.push(Action::Promote(r.clone()));
                true
            }
            Some(Readiness::Late(how)) => {
                let Some(ro) = &r.rollout else { return false };
                let why = format!(
                    "update to revision {} ({}) {how}; rolled back to revision {}",
                    short(&r.spec_hash),
                    r.source_file,
                    short(&ro.previous.spec_hash)
                );
                self.push(Action::Rollback {
                    old: r.clone(),
                    to: ro.previous.clone(),
                    rejected: r.spec_hash.clone(),
                    why,
                });
                true
            }
            Some(Readiness::Pending(at)) => {
                self.wake(at);
                false
            }
        }
    }

    fn running(&mut self, t: &DesiredContainer, o: &ObservedContainer) {
        let r = &o.record;
        let lost = match (o.link_lost, o.cgroup_lost) {
            (true, _) => Some(RecreateReason::LinkLost),
            (_, true) => Some(RecreateReason::CgroupLost),
            _ => None,
        };
        if let Some(reason) = lost {
            let previous = r.rollout.as_ref().map(|ro| ro.previous.clone());
            return self.start(
                t,
                Action::Recreate {
                    target: t.clone(),
                    old: r.clone(),
                    reason,
                    previous,
                },
            );
        }
        if self.judge_update(t, o) {
            return;
        }
        if let (Some(hc), Some(h)) = (&t.spec.healthcheck, &o.health) {
            if h.status == HealthStatus::Unhealthy && hc.on_unhealthy != OnUnhealthy::None {
                let then = match hc.on_unhealthy {
                    OnUnhealthy::Restart => "restarting it",
                    _ => "stopping it",
                };
                self.push(Action::Stop {
                    old: r.clone(),
                    reason: Reason::Unhealthy,
                    message: format!(
                        "unhealthy after {} failed probes, {then}: {}",
                        h.failing_streak,
                        h.output.trim()
                    ),
                });
                return;
            }
        }
        if needs_refresh(r, t) {
            self.push(Action::Refresh {
                target: t.clone(),
                old: r.clone(),
            });
        }
    }

    fn finished(&mut self, t: &DesiredContainer, o: &ObservedContainer) {
        let r = &o.record;
        if r.rollout.is_some() && self.judge_update(t, o) {
            return;
        }
        // A container stopped as unhealthy starts again with a new revision.
        let new_revision = r.reason == Some(Reason::Unhealthy) && r.spec_hash != t.hash;
        if will_restart(&t.spec, r) || new_revision {
            let (due, delay) = self.cfg.backoff.due(r);
            if self.now >= due || new_revision {
                self.start(
                    t,
                    Action::Restart {
                        target: t.clone(),
                        old: r.clone(),
                    },
                );
            } else {
                self.wake(due);
                self.wait(
                    &t.name,
                    Waiting::Backoff {
                        until_ms: due,
                        delay,
                    },
                );
            }
            return;
        }
        if self.observed.holds_leases(&r.id) {
            self.push(Action::ReleaseNetworks(r.clone()));
            return;
        }
        if needs_refresh(r, t) {
            self.push(Action::Refresh {
                target: t.clone(),
                old: r.clone(),
            });
        }
    }

    // ---- removals ----

    fn removals(&mut self) {
        if self.desired.freeze_all {
            return;
        }
        let doomed: Vec<&ObservedContainer> = self
            .observed
            .containers
            .values()
            .filter(|o| {
                let r = &o.record;
                !self.desired.containers.contains_key(&r.name)
                    && !self.desired.frozen_files.contains(&r.source_file)
                    && !self.desired.manifest_errors.contains_key(&r.name)
            })
            .collect();
        // Who depends on whom among the containers that are still there.
        let mut dependents: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for o in self.observed.containers.values() {
            for dep in recorded_spec(&o.record).depends_on {
                dependents
                    .entry(dep.name)
                    .or_default()
                    .push(o.record.name.clone());
            }
        }
        for o in doomed {
            let r = &o.record;
            let key = Key::Container(r.name.clone());
            if self.busy(&key) || self.retry_pending(&key, &r.name) {
                continue;
            }
            // In reverse order: a container goes after those that depend on it.
            let waiting_for: Vec<String> = dependents
                .get(&r.name)
                .into_iter()
                .flatten()
                .filter(|n| **n != r.name)
                .cloned()
                .collect();
            if !waiting_for.is_empty() && self.cfg.ordering {
                self.wait(&r.name, Waiting::Dependents(waiting_for));
                continue;
            }
            self.push(Action::Remove(r.clone()));
        }
    }

    // ---- what berth does not know ----

    fn strays(&mut self) {
        for s in &self.observed.strays {
            let key = Key::Cgroup(s.cgroup.clone());
            if !self.busy(&key) {
                self.push(Action::KillStray(s.clone()));
            }
        }
        for id in &self.observed.orphan_wiring {
            let key = Key::Wiring(id.clone());
            if !self.busy(&key) {
                self.push(Action::ReleaseOrphan(id.clone()));
            }
        }
    }
}

/// The first 12 hex digits of a `sha256:` hash, for messages.
pub fn short(hash: &str) -> &str {
    let hex = hash.strip_prefix("sha256:").unwrap_or(hash);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
