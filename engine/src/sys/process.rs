//! Process creation for the shim and the exec probe helper: fork (into new namespaces),
//! fd hygiene, the dumpable and parent-death bits, signal dispositions, `_exit`.

use std::io;

use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// Result of [`fork_into_namespaces`], seen from each side.
pub enum Forked {
    /// We are the parent; the child has this pid (in our pid namespace).
    Parent(Pid),
    /// We are the child, in the new namespaces.
    Child,
}

/// `clone(2)` without `CLONE_VM`: a fork whose child starts in new namespaces
/// (`CLONE_NEWPID` makes it pid 1 of a fresh pid namespace). Only call this from a
/// single-threaded process (the shim); the child may then only run async-signal-safe code
/// until it execs — which is what the shim's container init does (plain syscalls, no locks).
pub fn fork_into_namespaces(flags: CloneFlags) -> io::Result<Forked> {
    let raw = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: raw clone with a null stack and without CLONE_VM behaves like fork(2): the child
    // gets a copy-on-write copy of the address space. The caller guarantees the process is
    // single-threaded, so no lock held by another thread can be copied in a locked state.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            raw,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// A plain `fork(2)` (no new namespaces), with the same rules as [`fork_into_namespaces`]:
/// only from a single-threaded process.
pub fn fork() -> io::Result<Forked> {
    fork_into_namespaces(CloneFlags::empty())
}

/// `PR_SET_DUMPABLE 0`: `/proc/PID` of this process (and of children forked before they
/// exec) belongs to root and refuses ptrace-like access, so a process in a container this
/// process entered cannot open `/proc/PID/exe` and overwrite the host binary (CVE-2019-5736).
/// `execve` of another program makes the new image dumpable again.
pub fn set_undumpable() -> io::Result<()> {
    nix::sys::prctl::set_dumpable(false).map_err(io::Error::from)
}

/// `PR_SET_PDEATHSIG SIGKILL`: the calling process is killed when the thread that forked it
/// exits. The kernel clears this on a credential change, so set it after switching users.
pub fn kill_on_parent_death() -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(io::Error::from)
}

/// The kernel's `struct sigaction` for `rt_sigaction(2)` on x86_64 and aarch64 (not the C
/// library's, whose mask is 128 bytes).
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Linux's highest signal number on x86_64 and aarch64 (`_NSIG - 1`).
const LAST_SIGNAL: libc::c_int = 64;

/// Puts every signal back to its default action and unblocks them all, right before an
/// `execve` of a container's program: an ignored signal stays ignored across `execve`.
/// berth's own binary ignores SIGPIPE (Rust does at startup), and glibc's `posix_spawn`
/// (how the agent starts its helpers) leaves glibc's internal signals 32 and 33 ignored in
/// the child. The C library refuses to touch those two, so this calls `rt_sigaction(2)`
/// directly.
pub fn reset_signals() -> io::Result<()> {
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=LAST_SIGNAL {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads one kernel sigaction from `default`, which lives for the
        // call; the old action is not asked for (null); the size is the kernel's 64-bit
        // sigset. SIG_DFL runs no handler code, so no restorer is needed.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                std::mem::size_of::<u64>(),
            )
        };
        if ret == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    )
    .map_err(io::Error::from)
}

/// Marks every fd from `first` upwards close-on-exec, so nothing of the shim leaks into the
/// container (CVE-2024-21626 leaked a host directory fd this way).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag on fds of this
    // process; it touches no memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Ends the calling process at once, without running atexit handlers or flushing stdio
/// buffers that the forked child shares with its parent.
pub fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit(2) never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// The fields of `/proc/PID/stat` from field 3 (the state) on. The command name (field 2)
/// is in parentheses and may hold spaces, so the fields start after the last ')'.
fn stat_fields(pid: i32) -> io::Result<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(malformed_stat)?;
    Ok(after.split_whitespace().map(str::to_string).collect())
}

fn malformed_stat() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed /proc stat")
}

/// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat`, parsed; `n` is 3 or more.
fn stat_field<T: std::str::FromStr>(fields: &[String], n: usize) -> io::Result<T> {
    fields
        .get(n - 3)
        .and_then(|s| s.parse().ok())
        .ok_or_else(malformed_stat)
}

/// The parent of process `pid` (`/proc/PID/stat` field 4).
pub fn parent_pid(pid: i32) -> io::Result<i32> {
    stat_field(&stat_fields(pid)?, 4)
}

/// State (field 3) and start time (field 22) from `/proc/PID/stat`.
fn stat_state_and_start(pid: i32) -> io::Result<(char, u64)> {
    let fields = stat_fields(pid)?;
    Ok((stat_field(&fields, 3)?, stat_field(&fields, 22)?))
}

/// Start time of a process in clock ticks since boot (`/proc/PID/stat` field 22). With the
/// pid it identifies a process for good: a recycled pid has another start time.
pub fn start_time(pid: i32) -> io::Result<u64> {
    stat_state_and_start(pid).map(|(_, start)| start)
}

/// Whether the process `pid` that started at `start` still runs: it exists, it is that
/// process, and it is not a zombie waiting for its parent to reap it (its pidfd already
/// says it exited).
pub fn is_running(pid: i32, start: u64) -> bool {
    matches!(stat_state_and_start(pid), Ok((state, s)) if s == start && !matches!(state, 'Z' | 'X'))
}

/// Drops this process's resident pages of read-only file mappings (program text, read-only
/// data) that it never wrote to. They come back from the page cache on the next touch, so a
/// long-lived, mostly idle process (the shim) keeps only the pages its loop uses. Mappings
/// with any private (copy-on-write) page are left alone: dropping those would lose data.
/// Returns the number of bytes advised away.
pub fn drop_clean_file_pages() -> io::Result<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut dropped = 0u64;
    let mut current: Option<(usize, usize, bool)> = None; // start, end, candidate
    let mut flush = |m: Option<(usize, usize, bool)>, anon_kb: u64| {
        if let Some((start, end, true)) = m {
            if anon_kb == 0 {
                // SAFETY: [start, end) is a whole mapping of this process, read-only, file
                // backed and without private pages; MADV_DONTNEED only drops its resident
                // pages, which the kernel refaults from the file on access.
                let r = unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
                };
                if r == 0 {
                    dropped += (end - start) as u64;
                }
            }
        }
    };
    let mut anon_kb = 0u64;
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            flush(current.take(), anon_kb);
            anon_kb = 0;
            let perms = parts.next().unwrap_or("");
            let inode = parts.nth(2).unwrap_or("0");
            let path = parts.next().unwrap_or("");
            let candidate = !perms.contains('w') && inode != "0" && path.starts_with('/');
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                current = Some((start, end, candidate));
            }
        } else if first == "Anonymous:" {
            anon_kb = parts
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX);
        }
    }
    flush(current.take(), anon_kb);
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_is_not_running_and_a_live_process_is() {
        let me = std::process::id() as i32;
        let start = start_time(me).unwrap();
        assert!(is_running(me, start));
        assert!(
            !is_running(me, start + 1),
            "another process with a recycled pid"
        );
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let child_start = start_time(pid).unwrap();
        // Exited but not reaped: a zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while stat_state_and_start(pid).map(|(s, _)| s).ok() != Some('Z') {
            assert!(std::time::Instant::now() < deadline, "no zombie");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!is_running(pid, child_start));
        assert_eq!(parent_pid(pid).unwrap(), me);
        child.wait().unwrap();
        assert!(!is_running(pid, child_start));
    }

    #[test]
    fn start_time_of_self_is_stable_and_nonzero() {
        let pid = std::process::id() as i32;
        let a = start_time(pid).expect("start time of self");
        let b = start_time(pid).expect("start time of self");
        assert_eq!(a, b);
        assert!(a > 0, "start time {a}");
    }
}
