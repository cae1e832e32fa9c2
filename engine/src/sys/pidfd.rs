//! pidfds: a file descriptor that becomes readable when a process exits, so the agent can
//! follow shims it did not spawn (after a restart) without polling pids that may be recycled.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

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

/// Registers a pidfd with the tokio reactor, to await the process's exit.
pub fn async_pidfd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: `fd` is an owned, open descriptor; AsyncFd takes ownership, so it stays open and
    // refers to the same pidfd for as long as it is registered.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}
