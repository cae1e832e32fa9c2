//! The reconciler: load the manifests, observe the host, plan, execute. Level triggered —
//! every pass starts from the full desired and observed state — and woken by file events
//! (debounced), container exits, health changes, finished actions, due timers (back-off,
//! readiness, rollback) and a periodic resync that also repairs host drift.
//!
//! The pieces: [`plan`] decides (pure), [`execute`] carries out one action through the
//! [`engine::Engine`] seam, [`executor`] runs actions in parallel, one per object, and this
//! module is the loop that ties them together.

pub mod action;
pub mod backoff;
pub mod desired;
pub mod diff;
pub mod engine;
mod execute;
mod executor;
#[cfg(test)]
mod fake;

/// Loads `(path, content)` pairs as if they were a manifest directory, for tests.
#[cfg(test)]
pub fn test_load(files: &[(&str, &str)]) -> LoadResult {
    berth_spec::load_files(
        files
            .iter()
            .map(|(p, c)| (std::path::PathBuf::from(p), c.as_bytes().to_vec()))
            .collect(),
    )
}

/// A running record of `name`, for tests elsewhere in the agent.
#[cfg(test)]
pub fn fake_record(name: &str) -> berth_engine::state::ContainerRecord {
    fake::record(name, "h", berth_engine::state::ContainerState::Running)
}
pub mod health;
pub mod host;
pub mod last_good;
pub mod last_load;
pub mod mounts;
pub mod networks;
mod observe;
pub mod observed;
pub mod plan;
pub mod preview;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_engine::state::{ContainerState, StateDb};
use berth_spec::LoadResult;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::status::LiveStatus;
use engine::Engine;
use execute::ExecCtx;
use executor::{Completion, Executor};
use health::{HealthBoard, HealthMonitors};
use last_load::LastLoad;
use plan::PlanConfig;

/// Why a pass runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    ManifestsChanged,
    /// A manifest file was closed after writing or renamed into place: complete.
    ManifestsWritten,
    ContainerExited(String),
    HealthChanged(String),
    ActionDone,
    /// A back-off, readiness or retry came due, or the periodic resync.
    Timer,
}

/// Unix milliseconds, from the wall clock or (in tests) from tokio's paused clock.
#[derive(Clone, Debug)]
pub struct Clock {
    /// (unix ms, tokio instant) at the same moment, when time follows tokio's clock.
    anchor: Option<(u64, tokio::time::Instant)>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock { anchor: None }
    }

    /// Time that starts at `unix_ms` now and follows tokio's clock (paused in tests).
    #[cfg(test)]
    pub fn tokio(unix_ms: u64) -> Clock {
        Clock {
            anchor: Some((unix_ms, tokio::time::Instant::now())),
        }
    }

    pub fn now_ms(&self) -> u64 {
        match self.anchor {
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            Some((ms, at)) => ms + at.elapsed().as_millis() as u64,
        }
    }
}

/// The reconciler's part of the agent config.
#[derive(Clone, Debug)]
pub struct ReconcileConfig {
    pub plan: PlanConfig,
    /// An empty manifest directory removes everything (`allowEmpty`).
    pub allow_empty: bool,
    /// Actions that run at once (`parallelActions`).
    pub parallel: usize,
    /// The periodic resync, which also repairs host drift.
    pub resync: Duration,
    /// File events come in bursts (editors write, rename, chmod): a pass waits until no
    /// event came for this long. A complete write (close, rename) skips it.
    pub debounce: Duration,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            plan: PlanConfig::default(),
            allow_empty: false,
            parallel: 4,
            resync: Duration::from_secs(30),
            debounce: Duration::from_millis(10),
        }
    }
}

/// The next tick of the watchdog interval; never, without one.
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Bursts of file events longer than this do not hold a pass back any further.
const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

/// Loads the manifest directory (blocking: run on a blocking thread).
pub type Loader = Arc<dyn Fn() -> LoadResult + Send + Sync>;

pub struct Reconciler<E: Engine> {
    pub engine: Arc<E>,
    pub db: Arc<StateDb>,
    pub live: Arc<LiveStatus>,
    pub metrics: Arc<Metrics>,
    /// What the last pass loaded, shared with the API.
    pub last_load: Arc<LastLoad>,
    pub health: Arc<HealthBoard>,
    pub cfg: ReconcileConfig,
    pub clock: Clock,
    pub loader: Loader,
    /// The service manager, told when the agent is ready, how it is doing, and that it lives.
    pub notifier: Arc<crate::service::Notifier>,
    /// What was last logged about manifest problems and the prune guard, so a condition that
    /// lasts is logged once.
    logged: Mutex<Logged>,
    /// Where each action's result goes, when the agent keeps events.
    events: Option<Arc<crate::events::Events>>,
}

#[derive(Default)]
struct Logged {
    problems: Vec<String>,
    prune_blocked: bool,
}

impl<E: Engine> Reconciler<E> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Arc<E>,
        db: Arc<StateDb>,
        live: Arc<LiveStatus>,
        metrics: Arc<Metrics>,
        last_load: Arc<LastLoad>,
        health: Arc<HealthBoard>,
        cfg: ReconcileConfig,
        clock: Clock,
        loader: Loader,
        notifier: Arc<crate::service::Notifier>,
    ) -> Reconciler<E> {
        Reconciler {
            engine,
            db,
            live,
            metrics,
            last_load,
            health,
            cfg,
            clock,
            loader,
            notifier,
            logged: Mutex::default(),
            events: None,
        }
    }

    /// Records each action's result and each container exit as an event.
    pub fn with_events(mut self, events: Arc<crate::events::Events>) -> Self {
        self.events = Some(events);
        self
    }

    /// Runs passes until `shutdown` turns true. Containers keep running after it returns.
    pub async fn run(
        self: Arc<Self>,
        triggers_tx: mpsc::UnboundedSender<Trigger>,
        mut triggers: mpsc::UnboundedReceiver<Trigger>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (done_tx, mut done) = mpsc::unbounded_channel::<Completion>();
        let mut exec = Executor::new(self.cfg.parallel, self.cfg.plan.backoff, done_tx);
        let ctx = Arc::new(ExecCtx {
            engine: self.engine.clone(),
            db: self.db.clone(),
            clock: self.clock.clone(),
            backoff: self.cfg.plan.backoff,
            triggers: triggers_tx.clone(),
        });
        let mut monitors = HealthMonitors::new(
            self.engine.clone(),
            self.health.clone(),
            self.clock.clone(),
            triggers_tx,
        );
        self.adopt(&ctx);
        let mut wake = tokio::time::Instant::now();
        let mut next_resync = tokio::time::Instant::now();
        // The watchdog is fed from this loop: a loop that hangs stops feeding it.
        let mut watchdog = self.notifier.watchdog_interval().map(tokio::time::interval);
        loop {
            let reason = tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = tick(&mut watchdog) => {
                    self.notifier.watchdog();
                    continue;
                }
                Some(c) = done.recv() => {
                    self.completed(&mut exec, c);
                    Trigger::ActionDone
                }
                t = triggers.recv() => match t {
                    Some(t) => t,
                    None => break,
                },
                _ = tokio::time::sleep_until(wake) => Trigger::Timer,
            };
            if reason == Trigger::ManifestsChanged {
                self.debounce(&mut triggers).await;
            }
            // Everything queued is covered by this one level-triggered pass.
            while triggers.try_recv().is_ok() {}
            while let Ok(c) = done.try_recv() {
                self.completed(&mut exec, c);
            }
            let drift_check = tokio::time::Instant::now() >= next_resync;
            if drift_check {
                next_resync = tokio::time::Instant::now() + self.cfg.resync;
            }
            // One span per pass; the actions it spawns run outside it, on their own tasks.
            let span = tracing::debug_span!("pass", ?reason);
            let due = self
                .pass(drift_check, &mut exec, &ctx, &mut monitors)
                .instrument(span)
                .await;
            let now_ms = self.clock.now_ms();
            wake = match due {
                Some(at) => {
                    let at = tokio::time::Instant::now()
                        + Duration::from_millis(at.saturating_sub(now_ms));
                    at.min(next_resync)
                }
                None => next_resync,
            };
        }
        tracing::info!("reconciler stopped; containers keep running");
    }

    /// Takes an action's completion.
    fn completed(&self, exec: &mut Executor, c: Completion) {
        let result = match c.outcome {
            execute::Outcome::Done => "ok",
            _ => "error",
        };
        self.metrics
            .actions_total
            .with_label_values(&[c.verb, result])
            .inc();
        if let Some(events) = &self.events {
            let message = match &c.outcome {
                execute::Outcome::Done => None,
                execute::Outcome::Recorded(m) | execute::Outcome::Retry(m) => Some(m.clone()),
            };
            events.record(
                &crate::events::object_of(&c.keys),
                c.verb,
                result == "ok",
                message,
            );
        }
        exec.complete(&c, self.clock.now_ms());
    }

    /// Waits until file events stop coming for the debounce time (at most MAX_DEBOUNCE).
    async fn debounce(&self, triggers: &mut mpsc::UnboundedReceiver<Trigger>) {
        let limit = tokio::time::Instant::now() + MAX_DEBOUNCE;
        loop {
            let quiet = (tokio::time::Instant::now() + self.cfg.debounce).min(limit);
            tokio::select! {
                t = triggers.recv() => match t {
                    Some(Trigger::ManifestsChanged) if tokio::time::Instant::now() < limit => continue,
                    _ => return,
                },
                _ = tokio::time::sleep_until(quiet) => return,
            }
        }
    }

    /// After an agent restart: follow every shim that still runs. A container whose shim is
    /// gone is seen by the first pass (and recorded, and killed if anything of it is left).
    fn adopt(&self, ctx: &ExecCtx<E>) {
        let records = match self.db.list_containers() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "read container records to adopt");
                return;
            }
        };
        for r in records
            .iter()
            .filter(|r| r.state == ContainerState::Running)
        {
            if let Some(w) = self.engine.watch(r) {
                tracing::info!(container = %r.name, pid = ?r.init_pid, "adopted running container");
                ctx.follow(&r.name, w);
            }
        }
    }

    /// One pass. Returns the unix ms when the plan wants to look again, if it does.
    async fn pass(
        &self,
        drift_check: bool,
        exec: &mut Executor,
        ctx: &Arc<ExecCtx<E>>,
        monitors: &mut HealthMonitors<E>,
    ) -> Option<u64> {
        let started = Instant::now();
        let loader = self.loader.clone();
        let load = match tokio::task::spawn_blocking(move || loader()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "manifest loader panicked");
                self.metrics
                    .reconcile_total
                    .with_label_values(&["error"])
                    .inc();
                return None;
            }
        };
        let now = self.clock.now_ms();
        self.report_problems(&load);
        self.last_load.set(load.clone(), now / 1000);
        let desired = last_good::remember(&self.db, &load, self.cfg.allow_empty, now);
        self.live
            .set_manifest_errors(desired.manifest_errors.clone(), desired.file_errors.clone());

        // In flight first, then the host: an action that ends in between has written its
        // records before it left the in-flight set.
        let in_flight = exec.in_flight();
        let observed = match observe::observe(
            &*self.engine,
            &self.db,
            &self.health,
            in_flight,
            exec.failures(),
            drift_check,
        )
        .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "observe the host");
                self.metrics
                    .reconcile_total
                    .with_label_values(&["error"])
                    .inc();
                self.live.set_last_pass(crate::status::LastPass {
                    at: now / 1000,
                    result: "error",
                    duration_ms: started.elapsed().as_millis() as u64,
                });
                return Some(now + 1000);
            }
        };
        let plan = plan::plan(&desired, &observed, &self.cfg.plan, now);
        self.report_prune_guard(plan.prune_blocked);
        for action in plan.actions {
            tracing::info!(action = action.verb(), object = %action.object(), "{action}");
            if let action::Action::Rollback { old, .. } = &action {
                self.metrics
                    .rollbacks_total
                    .with_label_values(&[&old.name])
                    .inc();
            }
            exec.spawn(ctx.clone(), action);
        }
        self.live.set_waiting(
            plan.waiting
                .iter()
                .map(|(name, w)| (name.clone(), status_of_wait(w)))
                .collect(),
        );
        self.live.set_prune_blocked(plan.prune_blocked);
        self.live.set_kept(kept_notes(&desired));
        self.notifier.passed(&crate::service::summary(
            &observed,
            plan.waiting.len(),
            desired.file_errors.len(),
            plan.prune_blocked,
        ));
        monitors.sync(observe::monitored(&observed));
        self.record_metrics(&observed, exec, &load);
        self.metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        self.live.set_last_pass(crate::status::LastPass {
            at: now / 1000,
            result: if load.problems.is_empty() {
                "ok"
            } else {
                "error"
            },
            duration_ms: started.elapsed().as_millis() as u64,
        });
        plan.wake_at_ms
    }

    fn record_metrics(&self, observed: &observed::Observed, exec: &Executor, load: &LoadResult) {
        let mut states: BTreeMap<&str, i64> = ContainerState::ALL
            .iter()
            .map(|s| (s.as_str(), 0))
            .collect();
        self.metrics.container_health.reset();
        self.metrics.container_restarts.reset();
        for o in observed.containers.values() {
            let r = &o.record;
            *states.entry(r.state.as_str()).or_default() += 1;
            self.metrics
                .container_restarts
                .with_label_values(&[&r.name])
                .set(i64::from(r.restart_count));
            if let Some(h) = &o.health {
                self.metrics
                    .container_health
                    .with_label_values(&[&r.name, h.status.as_str()])
                    .set(1);
            }
        }
        for (state, n) in states {
            self.metrics.containers.with_label_values(&[state]).set(n);
        }
        self.metrics
            .actions_in_flight
            .set(exec.in_flight().len() as i64);
        let result = if load.problems.is_empty() {
            "ok"
        } else {
            "error"
        };
        self.metrics
            .reconcile_total
            .with_label_values(&[result])
            .inc();
    }

    /// Logs manifest problems when they change, not on every pass; sets the error metric.
    fn report_problems(&self, load: &LoadResult) {
        let lines: Vec<String> = load.problems.iter().map(|p| p.to_string()).collect();
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.problems != lines {
            for l in &lines {
                tracing::warn!(problem = %l, "manifest does not load; its objects keep their last good version");
            }
            if lines.is_empty() && !logged.problems.is_empty() {
                tracing::info!("all manifests load again");
            }
            logged.problems = lines;
        }
        self.metrics.manifest_errors.reset();
        for f in &load.files {
            if f.error.is_some() {
                self.metrics
                    .manifest_errors
                    .with_label_values(&[&f.path.display().to_string()])
                    .set(1);
            }
        }
    }

    /// Counts every pass the prune guard held back; logs when it starts and ends.
    fn report_prune_guard(&self, blocked: bool) {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if blocked {
            self.metrics.prune_blocked_total.inc();
        }
        if blocked != logged.prune_blocked {
            if blocked {
                tracing::warn!(dir = %self.last_load.dir().display(), "the manifest directory holds no object: nothing is removed (hint: set allowEmpty: true in the agent config to let an empty directory remove everything)");
            } else {
                tracing::info!("the manifest directory holds objects again: removals resume");
            }
            logged.prune_blocked = blocked;
        }
    }
}

/// Why containers that no loaded manifest defines stay, for their status.
fn kept_notes(desired: &desired::Desired) -> BTreeMap<String, String> {
    desired
        .containers
        .values()
        .filter_map(|c| {
            let why = match c.origin {
                desired::Origin::Loaded => return None,
                desired::Origin::Kept => {
                    "its manifest is gone; kept by its annotation berth/prune: disabled"
                }
                desired::Origin::Frozen if desired.empty_guard => {
                    "the manifest directory holds no object; kept, nothing is removed (allowEmpty is off)"
                }
                // Frozen by a broken file: the file's own error is shown instead.
                desired::Origin::Frozen => return None,
            };
            Some((c.name.clone(), why.to_string()))
        })
        .collect()
}

/// A wait as the status shows it: what, and until when for timed ones.
fn status_of_wait(w: &plan::Waiting) -> crate::status::Wait {
    let until_ms = match w {
        plan::Waiting::Backoff { until_ms, .. } | plan::Waiting::Retry { until_ms, .. } => {
            Some(*until_ms)
        }
        _ => None,
    };
    let backoff = match w {
        plan::Waiting::Backoff { delay, .. } => {
            Some(berth_spec::DurationSpec::from_millis(delay.as_millis() as u64).to_string())
        }
        _ => None,
    };
    crate::status::Wait {
        waiting_for: w.to_string(),
        until_ms,
        backoff,
    }
}

#[cfg(test)]
#[path = "loop_tests.rs"]
mod loop_tests;
