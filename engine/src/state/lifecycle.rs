//! Where a container is in its life, and why it got there: typed, stored as short text in
//! the state db (so `sqlite3` shows words, not numbers) and shown as the same words by the API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The state of one container record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    /// Its image is being pulled; nothing runs yet.
    Pulling,
    /// Its image is local and it is being set up; nothing runs yet.
    Created,
    /// Its process runs (its shim reported the start).
    Running,
    /// Its process ended.
    Exited,
    /// It could not be set up or started (pull, network, mounts, exec).
    Failed,
}

impl ContainerState {
    pub const ALL: [ContainerState; 5] = [
        ContainerState::Pulling,
        ContainerState::Created,
        ContainerState::Running,
        ContainerState::Exited,
        ContainerState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Pulling => "pulling",
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
            ContainerState::Failed => "failed",
        }
    }

    /// Exited or failed: no process of it runs, and none is being started.
    pub fn is_finished(self) -> bool {
        matches!(self, ContainerState::Exited | ContainerState::Failed)
    }
}

/// Why a container is in its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Reason {
    /// Exited with code 0.
    Completed,
    /// Exited with a non-zero code.
    Error,
    /// Killed by the kernel's OOM killer (its cgroup's memory limit).
    OOMKilled,
    /// Its process could not be executed (no such command, bad working dir): the workload's
    /// own configuration, which follows the restart policy like an exit.
    StartError,
    /// Berth could not set it up (image pull, network, mounts, devices, cgroup): retried with
    /// back-off under every restart policy until it has run once.
    SetupError,
    /// Its shim died: berth killed what was left of it.
    ShimLost,
    /// Its health check failed `retries` times in a row and `onUnhealthy` acted.
    Unhealthy,
    /// A network it was on was rebuilt (its spec changed): it is created again on the new one.
    NetworkChanged,
    /// An update did not become ready in time: it runs its previous revision again.
    RolledBack,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Completed => "Completed",
            Reason::Error => "Error",
            Reason::OOMKilled => "OOMKilled",
            Reason::StartError => "StartError",
            Reason::SetupError => "SetupError",
            Reason::ShimLost => "ShimLost",
            Reason::Unhealthy => "Unhealthy",
            Reason::NetworkChanged => "NetworkChanged",
            Reason::RolledBack => "RolledBack",
        }
    }

    const ALL: [Reason; 9] = [
        Reason::Completed,
        Reason::Error,
        Reason::OOMKilled,
        Reason::StartError,
        Reason::SetupError,
        Reason::ShimLost,
        Reason::Unhealthy,
        Reason::NetworkChanged,
        Reason::RolledBack,
    ];
}

/// A word in the db that this berth does not know (written by another version, or by hand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownWord {
    pub what: &'static str,
    pub value: String,
}

impl FromStr for ContainerState {
    type Err = UnknownWord;

    fn from_str(s: &str) -> Result<Self, UnknownWord> {
        ContainerState::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownWord {
                what: "container state",
                value: s.to_string(),
            })
    }
}

impl FromStr for Reason {
    type Err = UnknownWord;

    fn from_str(s: &str) -> Result<Self, UnknownWord> {
        Reason::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownWord {
                what: "container reason",
                value: s.to_string(),
            })
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_match_serde() {
        for s in ContainerState::ALL {
            assert_eq!(s.as_str().parse::<ContainerState>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>(), Ok(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert_eq!(
            "paused".parse::<ContainerState>().unwrap_err().to_string(),
            "unknown container state \"paused\""
        );
    }
}
