//! Killing every process of a cgroup so that none escapes by forking meanwhile.

use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::control;
use super::detect::Controller;
use super::error::{Error, Result};
use super::Cgroup;

/// How long `kill_all` waits for the cgroup to empty.
pub(crate) const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a v1 freeze may take before the kill goes ahead without it.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(1);

const POLL: Duration = Duration::from_millis(10);

/// SIGKILLs everything in `cg` and waits until its `cgroup.procs` are empty.
///
/// With a cgroup2 directory (V2, and Hybrid's `unified`) the kernel kills the whole tree at
/// once through `cgroup.kill` (Linux 5.14+). Otherwise, on v1, the cgroup is frozen first so
/// no process can fork between reading the pid list and the signals, then thawed so the
/// signals take effect. Either way the list is re-read and re-signalled until it is empty.
pub(crate) fn kill_all(cg: &Cgroup, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let killed_by_kernel = match cg.unified_path() {
        Some(dir) => control::write_if_present(&dir.join("cgroup.kill"), "1")?,
        None => false,
    };
    if !killed_by_kernel {
        if let Some(freezer) = cg.controller_path(Controller::Freezer) {
            freeze_kill_thaw(cg, &freezer.join("freezer.state"))?;
        }
    }
    loop {
        let pids = cg.pids()?;
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::KillTimeout {
                path: cg.paths().first().cloned().unwrap_or_default(),
                pids,
                timeout,
            });
        }
        signal_all(cg, &pids)?;
        thread::sleep(POLL);
    }
}

fn freeze_kill_thaw(cg: &Cgroup, state: &std::path::Path) -> Result<()> {
    if !control::write_if_present(state, "FROZEN")? {
        return Ok(());
    }
    let frozen_by = Instant::now() + FREEZE_TIMEOUT;
    while control::read(state)?.trim() != "FROZEN" && Instant::now() < frozen_by {
        thread::sleep(POLL);
    }
    let killed = cg.pids().and_then(|pids| signal_all(cg, &pids));
    // Thaw even when the kill failed: a frozen cgroup would hold its processes forever.
    let thawed = control::write(state, "THAWED");
    killed.and(thawed)
}

fn signal_all(cg: &Cgroup, pids: &[i32]) -> Result<()> {
    for &pid in pids {
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            // Already gone between the read and the signal.
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(source) => {
                return Err(Error::Signal {
                    pid,
                    path: cg.paths().first().cloned().unwrap_or_default(),
                    source,
                })
            }
        }
    }
    Ok(())
}
