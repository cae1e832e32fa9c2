//! `berth exec-probe BUNDLE --id ID --pid PID --timeout-ms MS -- CMD…`: enters a running
//! container and runs one probe command in it, like `runc exec`. A fresh, single-threaded
//! process started by [`crate::runtime::Runtime::exec_probe`]; it prints one JSON
//! [`Report`] line on stdout and exits.
//!
//! In order:
//! 1. Read the container's bundle config (`ShimConfig`: cgroups, env, cwd, profile).
//! 2. Open a pidfd for PID, check it is the container's init (listed in `cgroup.procs` of
//!    every one of its cgroup dirs, pid 1 of its pid namespace), open all of
//!    `/proc/PID/ns/{cgroup,ipc,uts,net,pid,mnt}`, then confirm through the pidfd that the
//!    process is still alive, so the files are its own and not a recycled pid's.
//! 3. Join the container's cgroups (every hierarchy), so the command is counted and limited
//!    with the container and killed with it.
//! 4. `PR_SET_DUMPABLE 0`: nothing in the container can open `/proc/<us>/exe` (CVE-2019-5736).
//! 5. `setns` into each namespace, the mount namespace last (it also moves our root and cwd
//!    into the container's root).
//! 6. Mark every fd close-on-exec, then fork once: a pid namespace applies to children
//!    only. The child takes its own process group, stdin `/dev/null` (the host's) and one
//!    pipe for stdout and stderr, `chdir`s to the container's working dir, applies the
//!    container's own profile (the same code as its init: rlimits, no_new_privs, bounding
//!    set, user and groups, capabilities, seccomp), asks to be killed if we die, resets
//!    signal dispositions and execs the command from the container's `PATH`.
//! 7. The parent collects the output (the first 4096 bytes) until the command exits or the
//!    timeout passes, then SIGKILLs the command's process group (a probe leaves nothing
//!    running), reaps the command and reports.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, dup2_stderr, dup2_stdin, dup2_stdout, getppid, pipe2, setpgid, Pid};

use super::exec::Report;
use super::init_process::InitProcess;
use super::{HealthError, ProbeResult, Result, MAX_OUTPUT_BYTES};
use crate::runtime::config::ShimConfig;
use crate::runtime::{init, security};
use crate::sys::process::{exit_immediately, fork, Forked};

/// The namespaces a probe joins, in the order it joins them: the mount namespace last, as
/// it changes our root.
const NAMESPACES: [(&str, CloneFlags); 6] = [
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Entry point of `berth exec-probe`. Prints the report and returns the exit code (0 when a
/// report was printed).
pub fn main(bundle: &Path, id: &str, init_pid: i32, timeout: Duration, cmd: &[String]) -> i32 {
    let report = Report::from_outcome(run(bundle, id, init_pid, timeout, cmd));
    let line = match serde_json::to_string(&report) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("berth exec-probe: encode report: {e}");
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth exec-probe: write report: {e}");
            1
        }
    }
}

fn io_err<'a>(
    id: &'a str,
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> HealthError + 'a {
    move |source| HealthError::Io {
        id: id.to_string(),
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn errno_err(id: &str, op: &'static str, path: &Path, e: Errno) -> HealthError {
    io_err(id, op, path)(std::io::Error::from(e))
}

fn run(
    bundle: &Path,
    id: &str,
    init_pid: i32,
    timeout: Duration,
    cmd: &[String],
) -> Result<ProbeResult> {
    if cmd.is_empty() {
        return Err(HealthError::NoCommand { id: id.to_string() });
    }
    let cfg = ShimConfig::read(bundle).map_err(io_err(id, "read container config in", bundle))?;
    if cfg.id != id {
        return Err(HealthError::Helper {
            id: id.to_string(),
            message: format!(
                "bundle {} belongs to container {:?}",
                bundle.display(),
                cfg.id
            ),
        });
    }

    let init = InitProcess::open(id, init_pid, &cfg.cgroups)?;
    let mut namespaces = Vec::with_capacity(NAMESPACES.len());
    for (name, flag) in NAMESPACES {
        let (path, fd) = init.namespace(name)?;
        namespaces.push((path, flag, fd));
    }
    init.confirm_alive()?;
    drop(init);

    // Opened on the host: the container's /dev/null is whatever the container made it.
    let devnull_path = Path::new("/dev/null");
    let devnull: OwnedFd = std::fs::File::open(devnull_path)
        .map_err(io_err(id, "open", devnull_path))?
        .into();
    let pipe_err = |e| errno_err(id, "create pipe for", bundle, e);
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(pipe_err)?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(pipe_err)?;

    let me = std::process::id().to_string();
    for dir in &cfg.cgroups {
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, &me).map_err(io_err(id, "join cgroup", &procs))?;
    }
    crate::sys::process::set_undumpable().map_err(io_err(
        id,
        "set PR_SET_DUMPABLE 0 before entering",
        bundle,
    ))?;
    for (path, flag, fd) in &namespaces {
        nix::sched::setns(fd, *flag).map_err(|e| errno_err(id, "enter namespace", path, e))?;
    }
    drop(namespaces);
    // Nothing the agent or this process opened may reach the container (CVE-2024-21626);
    // marked again right before the exec.
    crate::sys::process::cloexec_from(3).map_err(io_err(
        id,
        "mark fds close-on-exec before entering",
        bundle,
    ))?;

    match fork().map_err(io_err(id, "fork the probe command in", bundle))? {
        Forked::Child => {
            drop((out_r, err_r));
            child(&cfg, cmd, [&devnull, &out_w, &out_w], err_w)
        }
        Forked::Parent(pid) => {
            drop((out_w, err_w, devnull));
            collect(id, pid, out_r, err_r, timeout)
        }
    }
}

/// The probe command's process, in the container's namespaces and cgroups. Never returns:
/// it execs, or writes why it could not on the error pipe and exits.
fn child(cfg: &ShimConfig, cmd: &[String], stdio: [&OwnedFd; 3], err_w: OwnedFd) -> ! {
    let mut err = std::fs::File::from(err_w);
    let msg = match prepare_and_exec(cfg, cmd, stdio) {
        Err(msg) => msg,
        Ok(never) => match never {},
    };
    let _ = err.write_all(msg.as_bytes());
    exit_immediately(127)
}

fn prepare_and_exec(
    cfg: &ShimConfig,
    cmd: &[String],
    stdio: [&OwnedFd; 3],
) -> std::result::Result<Infallible, String> {
    // Its own process group: the timeout kills the command together with its children.
    setpgid(Pid::from_raw(0), Pid::from_raw(0))
        .map_err(|e| format!("set process group: {}", init::errno_text(e)))?;
    // dup2 clears close-on-exec on the new descriptors 0, 1 and 2.
    dup2_stdin(stdio[0].as_fd())
        .and_then(|_| dup2_stdout(stdio[1].as_fd()))
        .and_then(|_| dup2_stderr(stdio[2].as_fd()))
        .map_err(|e| format!("set up stdio: {}", init::errno_text(e)))?;
    // Relative to the container's root: the mount namespace put us there.
    chdir(cfg.cwd.as_str())
        .map_err(|e| format!("chdir to {}: {}", cfg.cwd, init::errno_text(e)))?;
    let user = security::apply(&cfg.security)?;
    // After the user switch, which would clear it.
    crate::sys::process::kill_on_parent_death()
        .map_err(|e| format!("set parent death signal: {}", init::io_text(&e)))?;
    // Our parent is outside this pid namespace, so getppid() is 0 while it lives; had it
    // died before the line above, we would already belong to the container's init.
    if getppid().as_raw() != 0 {
        return Err("the probe helper exited before the command started".into());
    }
    init::exec(cmd, &cfg.env, &user.home)
}

/// Waits for the probe command `pid` until `timeout`, collecting its output and any setup
/// error, then reaps it.
fn collect(
    id: &str,
    pid: Pid,
    out_r: OwnedFd,
    err_r: OwnedFd,
    timeout: Duration,
) -> Result<ProbeResult> {
    let deadline = Instant::now() + timeout;
    // Also done by the child itself; whichever comes first wins the race against its exec.
    let _ = setpgid(pid, pid);
    let proc_path = std::path::PathBuf::from(format!("/proc/{pid}"));
    let pidfd = match crate::sys::pidfd::pidfd_open(pid.as_raw()) {
        Ok(fd) => fd,
        Err(e) => {
            end_group(pid);
            return Err(io_err(id, "open a pidfd for the probe command", &proc_path)(e));
        }
    };
    let mut pipes = [Pipe::new(out_r), Pipe::new(err_r)];
    for p in &pipes {
        if let Some(f) = &p.file {
            fcntl(f, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| {
                errno_err(id, "set O_NONBLOCK on the output pipe of", &proc_path, e)
            })?;
        }
    }

    let exited = loop {
        let now = Instant::now();
        if now >= deadline {
            break false;
        }
        let wait_ms = (deadline - now)
            .as_millis()
            .saturating_add(1)
            .min(i32::MAX as u128) as i32;
        let (child_done, ready) = {
            let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            let open: Vec<usize> = (0..pipes.len())
                .filter(|i| pipes[*i].file.is_some())
                .collect();
            for i in &open {
                if let Some(f) = &pipes[*i].file {
                    fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                }
            }
            match poll(
                &mut fds,
                PollTimeout::try_from(wait_ms).unwrap_or(PollTimeout::NONE),
            ) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    end_group(pid);
                    return Err(errno_err(id, "poll the probe command", &proc_path, e));
                }
            }
            let fired = |p: &PollFd<'_>| !p.revents().unwrap_or(PollFlags::empty()).is_empty();
            let ready: Vec<usize> = open
                .iter()
                .zip(&fds[1..])
                .filter(|(_, p)| fired(p))
                .map(|(i, _)| *i)
                .collect();
            (fired(&fds[0]), ready)
        };
        for i in ready {
            pipes[i].read_available();
        }
        if child_done {
            break true;
        }
    };

    // The command's pid is not reaped yet, so its process group id cannot name anything
    // else: whatever it left running in its group goes now, whether it finished or not.
    let _ = killpg(pid, Signal::SIGKILL);
    if !exited {
        let _ = kill(pid, Signal::SIGKILL);
    }
    for p in &mut pipes {
        p.read_available();
    }
    let status = loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    if !exited {
        return Ok(ProbeResult::timed_out(timeout));
    }
    let [output, setup_error] = pipes;
    if !setup_error.kept.is_empty() {
        return Ok(ProbeResult::unhealthy(String::from_utf8_lossy(
            &setup_error.kept,
        )));
    }
    let output = String::from_utf8_lossy(&output.kept).into_owned();
    let exit_code = match status {
        Ok(WaitStatus::Exited(_, code)) => code,
        Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
        Ok(other) => {
            return Err(HealthError::Helper {
                id: id.to_string(),
                message: format!("probe command {pid} ended oddly: {other:?}"),
            })
        }
        Err(e) => return Err(errno_err(id, "wait for the probe command", &proc_path, e)),
    };
    Ok(ProbeResult {
        healthy: exit_code == 0,
        output: super::truncate(output),
        exit_code: Some(exit_code),
    })
}

/// Kills the command's process group and reaps the command: for errors after the fork.
fn end_group(pid: Pid) {
    let _ = killpg(pid, Signal::SIGKILL);
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
}

/// One non-blocking pipe from the command, keeping its first [`MAX_OUTPUT_BYTES`] bytes.
struct Pipe {
    file: Option<std::fs::File>,
    kept: Vec<u8>,
}

impl Pipe {
    fn new(fd: OwnedFd) -> Pipe {
        Pipe {
            file: Some(fd.into()),
            kept: Vec::new(),
        }
    }

    /// Reads what is there now; the rest of a long output is read and dropped, so the
    /// command never blocks on a full pipe. Closes the pipe at its end.
    fn read_available(&mut self) {
        let mut buf = [0u8; 8192];
        while let Some(f) = self.file.as_mut() {
            match f.read(&mut buf) {
                Ok(0) => self.file = None,
                Ok(n) => {
                    let room = MAX_OUTPUT_BYTES.saturating_sub(self.kept.len());
                    self.kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => self.file = None,
            }
        }
    }
}
