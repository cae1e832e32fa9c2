//! Container health, Docker's way: probes every `startInterval` during `startPeriod` (where
//! failures do not count, and a success ends the period), then every `interval`; `retries`
//! failures in a row make the container unhealthy, one success makes it healthy again.
//!
//! Each running container with a healthcheck has one monitor task. It only observes: it
//! publishes its snapshot on the [`HealthBoard`] and wakes the control loop when the status
//! changes; what to do about an unhealthy container is the planner's decision.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_spec::Healthcheck;
use serde::Serialize;
use tokio::task::JoinHandle;

use super::engine::{Engine, ProbeTarget};
use super::{Clock, Trigger};

/// Docker's three words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// The health of one running container, as its monitor last saw it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthSnapshot {
    pub status: HealthStatus,
    /// Failed probes in a row (after the start period).
    pub failing_streak: u32,
    /// The last probe's output (at most 4 KiB).
    pub output: String,
    /// Unix ms of the last probe; `None` before the first.
    pub checked_at_ms: Option<u64>,
}

impl HealthSnapshot {
    fn new() -> HealthSnapshot {
        HealthSnapshot {
            status: HealthStatus::Starting,
            failing_streak: 0,
            output: String::new(),
            checked_at_ms: None,
        }
    }
}

/// The state machine of one container's health: what a probe result does to it.
#[derive(Clone, Debug)]
pub struct HealthState {
    pub snapshot: HealthSnapshot,
    /// A probe succeeded since the start: the start period is over.
    started: bool,
}

impl HealthState {
    pub fn new() -> HealthState {
        HealthState {
            snapshot: HealthSnapshot::new(),
            started: false,
        }
    }

    /// Whether the container is still in its start period, `since_start` after it started.
    pub fn in_start_period(&self, hc: &Healthcheck, since_start: Duration) -> bool {
        !self.started && since_start < hc.start_period.get()
    }

    /// The wait before the next probe.
    pub fn next_interval(&self, hc: &Healthcheck, since_start: Duration) -> Duration {
        if self.in_start_period(hc, since_start) {
            hc.start_interval.get()
        } else {
            hc.interval.get()
        }
    }

    /// Applies one probe result. Returns whether the status changed.
    pub fn record(
        &mut self,
        hc: &Healthcheck,
        since_start: Duration,
        healthy: bool,
        output: String,
        now_ms: u64,
    ) -> bool {
        let before = self.snapshot.status;
        let s = &mut self.snapshot;
        s.output = output;
        s.checked_at_ms = Some(now_ms);
        if healthy {
            self.started = true;
            s.failing_streak = 0;
            s.status = HealthStatus::Healthy;
        } else if !self.started && since_start < hc.start_period.get() {
            // Failures during the start period do not count.
        } else {
            s.failing_streak += 1;
            if s.failing_streak >= hc.retries {
                s.status = HealthStatus::Unhealthy;
            }
        }
        s.status != before
    }
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState::new()
    }
}

/// The latest health of every monitored container, by container id.
#[derive(Default)]
pub struct HealthBoard {
    inner: Mutex<BTreeMap<String, HealthSnapshot>>,
}

impl HealthBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, HealthSnapshot>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<HealthSnapshot> {
        self.lock().get(id).cloned()
    }

    fn set(&self, id: &str, s: HealthSnapshot) {
        self.lock().insert(id.to_string(), s);
    }

    fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// One running monitor: for which container id and healthcheck.
struct Monitor {
    healthcheck: Healthcheck,
    task: JoinHandle<()>,
}

/// The monitor tasks, kept in step with the running containers by the control loop.
pub struct HealthMonitors<E: Engine> {
    engine: Arc<E>,
    board: Arc<HealthBoard>,
    clock: Clock,
    triggers: tokio::sync::mpsc::UnboundedSender<Trigger>,
    monitors: BTreeMap<String, Monitor>,
}

/// A container that should be monitored now.
pub struct Monitored {
    pub name: String,
    pub target: ProbeTarget,
    pub healthcheck: Healthcheck,
    /// Unix ms of its start.
    pub started_at_ms: u64,
}

impl<E: Engine> HealthMonitors<E> {
    pub fn new(
        engine: Arc<E>,
        board: Arc<HealthBoard>,
        clock: Clock,
        triggers: tokio::sync::mpsc::UnboundedSender<Trigger>,
    ) -> Self {
        HealthMonitors {
            engine,
            board,
            clock,
            triggers,
            monitors: BTreeMap::new(),
        }
    }

    /// Starts a monitor for each container of `want` that has none (or whose healthcheck
    /// changed), and stops those of containers no longer in it.
    pub fn sync(&mut self, want: Vec<Monitored>) {
        let ids: std::collections::BTreeSet<String> =
            want.iter().map(|m| m.target.id.clone()).collect();
        let gone: Vec<String> = self
            .monitors
            .keys()
            .filter(|id| !ids.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(m) = self.monitors.remove(&id) {
                m.task.abort();
            }
            self.board.forget(&id);
        }
        for m in want {
            let id = m.target.id.clone();
            if let Some(existing) = self.monitors.get(&id) {
                if existing.healthcheck == m.healthcheck && !existing.task.is_finished() {
                    continue;
                }
                existing.task.abort();
            }
            let healthcheck = m.healthcheck.clone();
            let task = tokio::spawn(run(
                self.engine.clone(),
                self.board.clone(),
                self.clock.clone(),
                self.triggers.clone(),
                m,
            ));
            self.monitors.insert(id, Monitor { healthcheck, task });
        }
    }
}

impl<E: Engine> Drop for HealthMonitors<E> {
    fn drop(&mut self) {
        for m in self.monitors.values() {
            m.task.abort();
        }
    }
}

/// Probes one container until aborted.
async fn run<E: Engine>(
    engine: Arc<E>,
    board: Arc<HealthBoard>,
    clock: Clock,
    triggers: tokio::sync::mpsc::UnboundedSender<Trigger>,
    m: Monitored,
) {
    let hc = &m.healthcheck;
    let mut state = HealthState::new();
    board.set(&m.target.id, state.snapshot.clone());
    let since_start =
        |clock: &Clock| Duration::from_millis(clock.now_ms().saturating_sub(m.started_at_ms));
    loop {
        tokio::time::sleep(state.next_interval(hc, since_start(&clock))).await;
        let result = match tokio::time::timeout(
            hc.timeout.get(),
            engine.probe(&m.target, &hc.probe, hc.timeout.get()),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => super::engine::ProbeResult {
                healthy: false,
                output: format!("probe timed out after {}", hc.timeout),
                exit_code: None,
            },
        };
        let changed = state.record(
            hc,
            since_start(&clock),
            result.healthy,
            result.output,
            clock.now_ms(),
        );
        board.set(&m.target.id, state.snapshot.clone());
        if changed {
            tracing::info!(container = %m.name, health = state.snapshot.status.as_str(), output = %state.snapshot.output.trim_end(), "health changed");
            // The loop is gone only during shutdown.
            let _ = triggers.send(Trigger::HealthChanged(m.name.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(yaml: &str) -> Healthcheck {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn start_period_failures_do_not_count_and_a_success_ends_it() {
        let h =
            hc("{tcp: {port: 1}, retries: 2, startPeriod: 10s, startInterval: 1s, interval: 5s}");
        let mut s = HealthState::new();
        let at = Duration::from_secs;
        assert_eq!(s.next_interval(&h, at(0)), at(1));
        assert!(!s.record(&h, at(1), false, "refused".into(), 1));
        assert!(!s.record(&h, at(2), false, "refused".into(), 2));
        assert_eq!(
            (s.snapshot.status, s.snapshot.failing_streak),
            (HealthStatus::Starting, 0)
        );
        assert!(s.record(&h, at(3), true, "ok".into(), 3));
        assert_eq!(s.snapshot.status, HealthStatus::Healthy);
        assert_eq!(s.next_interval(&h, at(3)), at(5), "the start period ended");
        assert!(!s.record(&h, at(8), false, "no".into(), 8));
        assert_eq!(s.snapshot.failing_streak, 1);
        assert!(s.record(&h, at(13), false, "no".into(), 13));
        assert_eq!(
            (
                s.snapshot.status,
                s.snapshot.failing_streak,
                s.snapshot.output.as_str()
            ),
            (HealthStatus::Unhealthy, 2, "no")
        );
        assert!(s.record(&h, at(18), true, "back".into(), 18));
        assert_eq!(s.snapshot.failing_streak, 0);
    }

    #[test]
    fn after_the_start_period_failures_count_from_the_first_probe() {
        let h = hc("{tcp: {port: 1}, retries: 1, startPeriod: 2s}");
        let mut s = HealthState::new();
        assert_eq!(s.next_interval(&h, Duration::ZERO), Duration::from_secs(5));
        assert!(!s.record(&h, Duration::from_secs(1), false, "x".into(), 1));
        assert_eq!(
            s.next_interval(&h, Duration::from_secs(2)),
            Duration::from_secs(30)
        );
        assert!(s.record(&h, Duration::from_secs(3), false, "x".into(), 3));
        assert_eq!(s.snapshot.status, HealthStatus::Unhealthy);
    }
}
