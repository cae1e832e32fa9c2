//! Resource usage of a cgroup for metrics: CPU time, memory, working set, pids, OOM kills.

use std::io;

use super::control;
use super::detect::Controller;
use super::error::{Error, Result};
use super::{Cgroup, Mode};

/// Usage counters of one cgroup. A field is `None` when its controller is not there.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// CPU time used by all processes, in microseconds.
    pub cpu_usage_usec: Option<u64>,
    /// Memory charged, page cache included.
    pub memory_usage_bytes: Option<u64>,
    /// Usage minus inactive file pages: what the OOM killer and `docker stats` look at.
    pub memory_working_set_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// Processes the OOM killer killed in this cgroup.
    pub oom_kills: Option<u64>,
}

impl Cgroup {
    /// Reads the usage counters of every controller present.
    pub fn stats(&self) -> Result<Stats> {
        self.check()?;
        let (cpu, memory, inactive, pids, oom) = match self.mode() {
            Mode::V2 => (
                ("cpu.stat", Some("usage_usec")),
                "memory.current",
                "inactive_file",
                "pids.current",
                ("memory.events", "oom_kill"),
            ),
            Mode::V1 | Mode::Hybrid => (
                ("cpuacct.usage", None),
                "memory.usage_in_bytes",
                "total_inactive_file",
                "pids.current",
                ("memory.oom_control", "oom_kill"),
            ),
        };
        let cpu_usage_usec = match self.controller_path(Controller::Cpuacct) {
            Some(dir) => match cpu.1 {
                Some(key) => optional(control::read_keyed(&dir.join(cpu.0), key))?,
                // cpuacct.usage is in nanoseconds.
                None => optional(control::read_u64(&dir.join(cpu.0)))?.map(|ns| ns / 1000),
            },
            None => None,
        };
        let (memory_usage_bytes, memory_working_set_bytes, oom_kills) = match self
            .controller_path(Controller::Memory)
        {
            Some(dir) => {
                let usage = optional(control::read_u64(&dir.join(memory)))?;
                let working_set = match usage {
                    Some(u) => optional(control::read_keyed(&dir.join("memory.stat"), inactive))?
                        .map(|inactive| u.saturating_sub(inactive)),
                    None => None,
                };
                let oom_kills = optional(control::read_keyed(&dir.join(oom.0), oom.1))?;
                (usage, working_set, oom_kills)
            }
            None => (None, None, None),
        };
        let pids = match self.controller_path(Controller::Pids) {
            Some(dir) => optional(control::read_u64(&dir.join(pids)))?,
            None => None,
        };
        Ok(Stats {
            cpu_usage_usec,
            memory_usage_bytes,
            memory_working_set_bytes,
            pids,
            oom_kills,
        })
    }

    /// How many processes of this cgroup the OOM killer has killed (`oom_kill` of
    /// `memory.oom_control` on v1, `memory.events` on v2): a rise after the container's
    /// init died by SIGKILL means it was OOMKilled.
    pub fn oom_kill_count(&self) -> Result<u64> {
        self.check()?;
        let dir = self.require(Controller::Memory)?;
        let file = match self.mode() {
            Mode::V2 => "memory.events",
            Mode::V1 | Mode::Hybrid => "memory.oom_control",
        };
        control::read_keyed(&dir.join(file), "oom_kill")
    }
}

/// A control file that does not exist is a counter the kernel does not keep here.
fn optional(value: Result<u64>) -> Result<Option<u64>> {
    match value {
        Ok(v) => Ok(Some(v)),
        Err(Error::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
