//! pidfds: a file descriptor that becomes readable when a process exits, so the agent can
//! follow shims it did not spawn (after a restart) without polling pids that may be recycled,
//! and so a pid checked once keeps naming the same process (health probes entering a
//! container through `/proc/PID`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `pidfd_open(2)` for `pid`.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the process behind `pidfd` still exists: `pidfd_send_signal(2)` with signal 0
/// runs the kernel's checks and sends nothing. A process that exited but was not reaped yet
/// (a zombie) still counts; its pid cannot have been recycled either.
pub fn is_alive(pidfd: &OwnedFd) -> io::Result<bool> {
    // SAFETY: pidfd_send_signal takes an fd, a signal number, a null siginfo (allowed: the
    // kernel fills in a default one) and flags; it touches no memory of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(e),
    }
}

/// Registers a pidfd with the tokio reactor, to await the process's exit.
pub fn async_pidfd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: `fd` is an owned, open descriptor; AsyncFd takes ownership, so it stays open and
    // refers to the same pidfd for as long as it is registered.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reaped_child_is_not_alive() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("spawn sleep");
        let fd = pidfd_open(child.id() as i32).expect("pidfd of child");
        assert!(is_alive(&fd).expect("check child"));
        child.kill().expect("kill child");
        child.wait().expect("reap child");
        assert!(!is_alive(&fd).expect("check reaped child"));
    }
}
