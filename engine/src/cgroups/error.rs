//! Errors of the cgroups module: each names the operation and the file or directory.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;

/// Result of a cgroups operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while managing cgroups.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("detect cgroup layout at {}: {source}{}", path.display(), hint_suffix(Some("is /sys/fs/cgroup mounted? the kernel needs CONFIG_CGROUPS")))]
    Statfs { path: PathBuf, source: Errno },

    #[error("detect cgroup layout at {}: no cgroup v1 hierarchy is mounted under it{}", root.display(), hint_suffix(Some("mount cgroup2 at the root, or the v1 controllers (memory, cpu, pids, ...) under it")))]
    NoHierarchies { root: PathBuf },

    #[error("read {}: {}{}", path.display(), os_message(source), hint_suffix(hint_for(path, source)))]
    Read { path: PathBuf, source: io::Error },

    #[error("write {}: {}{}", path.display(), os_message(source), hint_suffix(hint_for(path, source)))]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },

    #[error("create cgroup {}: {}{}", path.display(), os_message(source), hint_suffix(hint_for(path, source)))]
    Mkdir { path: PathBuf, source: io::Error },

    #[error("remove cgroup {}: {}{}", path.display(), os_message(source), hint_suffix(hint_for(path, source)))]
    Rmdir { path: PathBuf, source: io::Error },

    #[error("parse {}: {what}", path.display())]
    Parse { path: PathBuf, what: String },

    #[error("set {controller} limit of cgroup {cgroup}: the {controller} controller is not available ({detail}){}", hint_suffix(Some(hint.as_str())))]
    MissingController {
        controller: &'static str,
        cgroup: String,
        detail: String,
        hint: String,
    },

    #[error(
        "{source}; removing the half-made cgroup also failed: {}",
        join(cleanup)
    )]
    CreateCleanup {
        source: Box<Error>,
        cleanup: Vec<Error>,
    },

    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error("set {what} limit of cgroup {cgroup}: {reason}")]
    InvalidLimit {
        what: &'static str,
        cgroup: String,
        reason: String,
    },

    #[error("send SIGKILL to pid {pid} of cgroup {}: {source}", path.display())]
    Signal {
        pid: i32,
        path: PathBuf,
        source: Errno,
    },

    #[error("kill processes of cgroup {}: pids {pids:?} still there after {timeout:?}{}", path.display(), hint_suffix(Some("a process stuck in uninterruptible sleep (state D) cannot die until its I/O completes; see /proc/PID/stack")))]
    KillTimeout {
        path: PathBuf,
        pids: Vec<i32>,
        timeout: Duration,
    },
}

/// The OS's description of an I/O error without the "(os error N)" tail, so messages read
/// like "write …/memory.limit_in_bytes: Device or resource busy".
fn os_message(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_string(),
        None => err.to_string(),
    }
}

fn join(errors: &[Error]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn hint_suffix(hint: Option<&str>) -> String {
    match hint {
        Some(h) => format!("; hint: {h}"),
        None => String::new(),
    }
}

/// What an operator can do about a failed cgroupfs operation, from the file and the errno.
fn hint_for(path: &Path, err: &io::Error) -> Option<&'static str> {
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
    let errno = Errno::from_raw(err.raw_os_error()?);
    match (errno, file) {
        (Errno::EACCES | Errno::EPERM | Errno::EROFS, _) => {
            Some("run berth as root with /sys/fs/cgroup mounted read-write, or delegate the cgroup subtree to it")
        }
        (Errno::EBUSY, "memory.limit_in_bytes" | "memory.max") => {
            Some("the cgroup already uses more memory than the new limit; stop its processes or raise the limit")
        }
        (Errno::EBUSY, "cgroup.subtree_control") => {
            Some("this cgroup holds processes of its own, and cgroup v2 only enables controllers for children of a cgroup without processes")
        }
        (Errno::ENOSPC, "cgroup.procs" | "tasks") => {
            Some("the cpuset of this cgroup has no cpus or mems; check cpuset.cpus and cpuset.mems")
        }
        (Errno::EINVAL, "cpu.cfs_quota_us" | "cpu.max") => {
            Some("the quota must be at least 1000us and not above the quota of a parent cgroup")
        }
        (Errno::ENOENT, _) if file.contains('.') => {
            Some("the kernel does not offer this control file; check that the controller is mounted (v1) or enabled in the parent's cgroup.subtree_control (v2)")
        }
        (Errno::EBUSY | Errno::ENOTEMPTY, _) => {
            Some("the cgroup still has processes or child cgroups; see its cgroup.procs")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_error_reads_like_the_kernel_message_with_a_hint() {
        let err = Error::Write {
            path: PathBuf::from("/sys/fs/cgroup/memory/berth/web/memory.limit_in_bytes"),
            value: "1".into(),
            source: io::Error::from_raw_os_error(libc::EBUSY),
        };
        assert_eq!(
            err.to_string(),
            "write /sys/fs/cgroup/memory/berth/web/memory.limit_in_bytes: Device or resource busy; \
             hint: the cgroup already uses more memory than the new limit; stop its processes or raise the limit"
        );
    }

    #[test]
    fn unknown_errno_has_no_hint() {
        let err = Error::Read {
            path: PathBuf::from("/x/cgroup.procs"),
            source: io::Error::from_raw_os_error(libc::EIO),
        };
        assert_eq!(err.to_string(), "read /x/cgroup.procs: I/O error");
    }
}
