//! Running under systemd (`Type=notify`): `READY=1` once the first full pass is done,
//! `STATUS=` with a one-line summary after the passes that change it, `WATCHDOG=1` from the
//! control loop itself at half of `WATCHDOG_USEC` (so a loop that hangs gets the agent
//! restarted), and `STOPPING=1` on SIGTERM. Without `NOTIFY_SOCKET` it does nothing.

use std::sync::Mutex;
use std::time::Duration;

use berth_engine::state::ContainerState;
use sd_notify::NotifyState;

use crate::reconcile::observed::Observed;

/// Tells the service manager how the agent is doing.
pub struct Notifier {
    /// `NOTIFY_SOCKET` was set: a service manager listens.
    enabled: bool,
    ready: Mutex<bool>,
    last_status: Mutex<String>,
}

impl Notifier {
    /// From the environment the service manager set.
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            ready: Mutex::new(false),
            last_status: Mutex::default(),
        }
    }

    /// One that never says anything (tests).
    #[cfg(test)]
    pub fn disabled() -> Notifier {
        Notifier {
            enabled: false,
            ready: Mutex::new(false),
            last_status: Mutex::default(),
        }
    }

    fn send(&self, state: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(state) {
            tracing::warn!(error = %e, "notify the service manager");
        }
    }

    /// How often the loop should send `WATCHDOG=1`: half of `WATCHDOG_USEC`, if set.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        sd_notify::watchdog_enabled().map(|d| d / 2)
    }

    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// After a pass: `READY=1` the first time, and the summary when it changed.
    pub fn passed(&self, status: &str) {
        let mut last = self.last_status.lock().unwrap_or_else(|p| p.into_inner());
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        if !*ready {
            self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
            *ready = true;
        } else if *last != status {
            self.send(&[NotifyState::Status(status)]);
        }
        *last = status.to_string();
    }

    pub fn stopping(&self) {
        self.send(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping; containers keep running"),
        ]);
    }
}

/// The one-line summary systemd shows (`systemctl status berth`): containers by state,
/// what waits, what is wrong.
pub fn summary(
    observed: &Observed,
    waiting: usize,
    manifest_errors: usize,
    prune_blocked: bool,
) -> String {
    let count = |s: ContainerState| {
        observed
            .containers
            .values()
            .filter(|o| o.record.state == s)
            .count()
    };
    let mut parts = vec![
        format!("{} running", count(ContainerState::Running)),
        format!("{} exited", count(ContainerState::Exited)),
        format!("{} failed", count(ContainerState::Failed)),
    ];
    if waiting > 0 {
        parts.push(format!("{waiting} waiting"));
    }
    let mut line = parts.join(", ");
    if manifest_errors > 0 {
        line.push_str(&format!("; {manifest_errors} manifest file(s) do not load"));
    }
    if prune_blocked {
        line.push_str("; the manifest directory is empty: nothing is removed");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::observed::ObservedContainer;

    #[test]
    fn the_summary_counts_states_and_names_problems() {
        let mut o = Observed::default();
        for (name, state) in [
            ("a", ContainerState::Running),
            ("b", ContainerState::Running),
            ("c", ContainerState::Failed),
        ] {
            let mut r = crate::reconcile::fake_record(name);
            r.state = state;
            o.containers
                .insert(name.into(), ObservedContainer::from_record(r));
        }
        assert_eq!(summary(&o, 0, 0, false), "2 running, 0 exited, 1 failed");
        assert_eq!(
            summary(&o, 2, 1, true),
            "2 running, 0 exited, 1 failed, 2 waiting; 1 manifest file(s) do not load; the manifest directory is empty: nothing is removed"
        );
    }
}
