//! A container's init process, identified for good before a probe enters its namespaces.
//!
//! The pid comes from the agent's records and may be stale: the container restarted, or the
//! pid now belongs to another process. So a pidfd is opened first (it keeps naming that one
//! process), then the pid is checked: listed in the container's `cgroup.procs` in every
//! hierarchy, and pid 1 of its own pid namespace. Namespace files opened through `/proc/PID`
//! afterwards are that process's as long as the pidfd still finds it alive once they are
//! open, since a pid is not handed out again while its process exists.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::{HealthError, Result};
use crate::sys::pidfd;

pub(crate) struct InitProcess<'a> {
    id: &'a str,
    pid: i32,
    pidfd: OwnedFd,
}

impl<'a> InitProcess<'a> {
    /// Checks that `pid` is the init of container `id`, whose cgroup directories are
    /// `cgroup_dirs` (one per hierarchy).
    pub(crate) fn open(id: &'a str, pid: i32, cgroup_dirs: &[PathBuf]) -> Result<InitProcess<'a>> {
        let not_init = |reason: String| HealthError::NotInit {
            id: id.to_string(),
            pid,
            reason,
        };
        if pid <= 0 {
            return Err(not_init("not a process id".into()));
        }
        let pidfd = pidfd::pidfd_open(pid).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => HealthError::Gone {
                id: id.to_string(),
                pid,
            },
            _ => HealthError::Io {
                id: id.to_string(),
                op: "open a pidfd for",
                path: PathBuf::from(format!("/proc/{pid}")),
                source: e,
            },
        })?;
        let init = InitProcess { id, pid, pidfd };
        if cgroup_dirs.is_empty() {
            return Err(not_init("the container has no cgroup directories".into()));
        }
        for dir in cgroup_dirs {
            let procs = crate::cgroups::procs_of(dir).map_err(|e| HealthError::Cgroup {
                id: id.to_string(),
                source: e,
            })?;
            if !procs.contains(&pid) {
                init.confirm_alive()?;
                return Err(not_init(format!(
                    "it is not listed in {}",
                    dir.join("cgroup.procs").display()
                )));
            }
        }
        let status_path = PathBuf::from(format!("/proc/{pid}/status"));
        let status = std::fs::read_to_string(&status_path)
            .map_err(|e| init.io_error("read", &status_path, e))?;
        match ns_pid(&status) {
            Some(1) => {}
            Some(n) => {
                return Err(not_init(format!(
                    "it is pid {n} in its pid namespace, not 1"
                )))
            }
            None => {
                return Err(not_init(format!(
                    "it runs in the host's pid namespace ({})",
                    status_path.display()
                )))
            }
        }
        init.confirm_alive()?;
        Ok(init)
    }

    /// Opens `/proc/PID/ns/<name>` (close-on-exec). Call [`InitProcess::confirm_alive`] once
    /// every namespace needed is open.
    pub(crate) fn namespace(&self, name: &str) -> Result<(PathBuf, OwnedFd)> {
        let path = PathBuf::from(format!("/proc/{}/ns/{name}", self.pid));
        let file = std::fs::File::open(&path).map_err(|e| self.io_error("open", &path, e))?;
        Ok((path, file.into()))
    }

    /// Fails with [`HealthError::Gone`] when the process has exited since it was checked.
    pub(crate) fn confirm_alive(&self) -> Result<()> {
        match pidfd::is_alive(&self.pidfd) {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.gone()),
            Err(e) => Err(HealthError::Io {
                id: self.id.to_string(),
                op: "check the pidfd of",
                path: PathBuf::from(format!("/proc/{}", self.pid)),
                source: e,
            }),
        }
    }

    fn gone(&self) -> HealthError {
        HealthError::Gone {
            id: self.id.to_string(),
            pid: self.pid,
        }
    }

    /// A `/proc/PID/…` file that is missing means the process exited (or is exiting).
    fn io_error(&self, op: &'static str, path: &Path, e: io::Error) -> HealthError {
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ESRCH) => self.gone(),
            _ => HealthError::Io {
                id: self.id.to_string(),
                op,
                path: path.to_path_buf(),
                source: e,
            },
        }
    }
}

/// The pid in the innermost pid namespace, from the `NSpid:` line of `/proc/PID/status`;
/// `None` when the process is in the reader's own namespace (a single field).
fn ns_pid(status: &str) -> Option<i32> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 2 {
        return None;
    }
    fields.last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn innermost_pid_from_status() {
        assert_eq!(
            ns_pid("Name:\tsh\nNSpid:\t4242\t1\nNSpgid:\t4242\t1\n"),
            Some(1)
        );
        assert_eq!(ns_pid("NSpid:\t4243\t7\n"), Some(7));
        assert_eq!(ns_pid("NSpid:\t4243\n"), None, "host namespace");
        assert_eq!(ns_pid("Name:\tsh\n"), None);
    }

    #[test]
    fn a_host_process_is_refused() {
        let me = std::process::id() as i32;
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("cgroup.procs"), format!("{me}\n")).expect("write procs");
        let err = InitProcess::open("c1", me, &[dir.path().to_path_buf()])
            .err()
            .expect("the test process is no container's init");
        assert_eq!(
            err.to_string(),
            format!(
                "probe container c1: pid {me} is not the container's init: it runs in the host's pid namespace (/proc/{me}/status) (hint: the container may have restarted; probe the init pid of its latest start)"
            )
        );
        let other = tempfile::tempdir().expect("temp dir");
        let err = InitProcess::open(
            "c1",
            me,
            &[dir.path().to_path_buf(), other.path().to_path_buf()],
        )
        .err()
        .expect("not in the second directory");
        assert!(
            err.to_string().contains(&format!(
                "it is not listed in {}/cgroup.procs",
                other.path().display()
            )),
            "{err}"
        );
    }
}
