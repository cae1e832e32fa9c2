//! `berth shim DIR`: the per-container monitor. A fresh, single-threaded process (never a fork
//! of the tokio agent) that creates the container's init in new namespaces, places it in its
//! cgroups before it can run anything, reports "started PID" or the setup error on stdout,
//! then waits for the init and writes its exit record atomically. It outlives the agent.
//!
//! Protocol on stdout (one line): `started <pid>` or `error <message>`.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, pipe2, Pid};

use super::config::{NetworkNamespace, ShimConfig};
use super::exit::ExitRecord;
use super::init;
use super::logs::{LineBuffer, LogWriter};
use crate::sys::process::{exit_immediately, fork_into_namespaces, Forked};

/// Namespaces every container gets; the network namespace depends on its config.
const NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWPID
    .union(CloneFlags::CLONE_NEWNS)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWIPC);

fn namespaces(cfg: &ShimConfig) -> CloneFlags {
    match cfg.network {
        NetworkNamespace::New => NAMESPACES | CloneFlags::CLONE_NEWNET,
        // Joined with setns(2) in the init, before anything else.
        NetworkNamespace::Join(_) | NetworkNamespace::Host => NAMESPACES,
    }
}

/// Entry point of `berth shim DIR`. Returns the shim's own exit code.
pub fn main(dir: &Path) -> i32 {
    let cfg = match ShimConfig::read(dir) {
        Ok(c) => c,
        Err(e) => {
            report(&format!("error read shim config in {}: {e}", dir.display()));
            return 1;
        }
    };
    match run(&cfg) {
        Ok(()) => 0,
        Err(msg) => {
            let record = ExitRecord::now(127, None, Some(msg.clone()));
            if let Err(e) = record.write(&cfg.exit_path) {
                eprintln!("berth shim: write {}: {e}", cfg.exit_path.display());
            }
            report(&format!("error {msg}"));
            1
        }
    }
}

fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    // The agent may be gone; the exit record still tells the outcome.
    let _ = writeln!(out, "{}", line.replace('\n', " "));
    let _ = out.flush();
}

fn run(cfg: &ShimConfig) -> Result<(), String> {
    // Out of the agent's cgroup on every hierarchy, before anything is started: a service
    // manager that stops the agent by killing its cgroup must not kill the containers.
    let me = std::process::id().to_string();
    for dir in &cfg.shim_cgroups {
        crate::cgroups::join(dir, &me).map_err(|e| format!("move the shim to its cgroup: {e}"))?;
    }
    // Orphans of the container stay ours to reap if its init leaves them behind.
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("become subreaper: {e}"))?;
    let (sync_r, sync_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("create sync pipe: {e}"))?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("create error pipe: {e}"))?;
    // The shim holds the container's stdio: it timestamps, frames and rotates the logs.
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("create stdout pipe: {e}"))?;
    let (errout_r, errout_w) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("create stderr pipe: {e}"))?;
    let log = LogWriter::open(&cfg.log_path, cfg.log.clone())
        .map_err(|e| format!("open log {}: {e}", cfg.log_path.display()))?;
    let devnull: OwnedFd = std::fs::File::open("/dev/null")
        .map_err(|e| format!("open /dev/null: {e}"))?
        .into();

    match fork_into_namespaces(namespaces(cfg)).map_err(|e| format!("clone container init: {e}"))? {
        Forked::Child => {
            drop((sync_w, err_r, out_r, errout_r, log));
            child(cfg, sync_r, err_w, [&devnull, &out_w, &errout_w])
        }
        Forked::Parent(pid) => {
            drop((sync_r, err_w, out_w, errout_w, devnull));
            parent(cfg, pid, sync_w, err_r, [out_r, errout_r], log)
        }
    }
}

fn child(cfg: &ShimConfig, sync_r: OwnedFd, err_w: OwnedFd, stdio: [&OwnedFd; 3]) -> ! {
    let mut err = std::fs::File::from(err_w);
    // Wait until the shim has put us into our cgroups; EOF means the shim gave up.
    let mut go = [0u8; 1];
    let mut sync = std::fs::File::from(sync_r);
    if !matches!(sync.read(&mut go), Ok(1)) {
        exit_immediately(127);
    }
    // dup2 clears close-on-exec on the new descriptors 0, 1 and 2.
    let result = dup2_stdin(stdio[0].as_fd())
        .and_then(|_| dup2_stdout(stdio[1].as_fd()))
        .and_then(|_| dup2_stderr(stdio[2].as_fd()));
    let msg = match result {
        Err(e) => format!("set up stdio: {}", init::errno_text(e)),
        Ok(()) => match init::setup_and_exec(cfg) {
            Err(msg) => msg,
            Ok(never) => match never {},
        },
    };
    let _ = err.write_all(msg.as_bytes());
    exit_immediately(127)
}

fn parent(
    cfg: &ShimConfig,
    pid: Pid,
    sync_w: OwnedFd,
    err_r: OwnedFd,
    outputs: [OwnedFd; 2],
    mut log: LogWriter,
) -> Result<(), String> {
    for dir in &cfg.cgroups {
        let procs = dir.join("cgroup.procs");
        if let Err(e) = std::fs::write(&procs, pid.as_raw().to_string()) {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(format!("add init to cgroup {}: {e}", procs.display()));
        }
    }
    let mut sync = std::fs::File::from(sync_w);
    sync.write_all(b"g")
        .map_err(|e| format!("release container init: {e}"))?;
    drop(sync);

    // The error pipe closes on a successful exec (O_CLOEXEC) or carries the failure.
    let mut msg = String::new();
    let mut err = std::fs::File::from(err_r);
    let _ = err.read_to_string(&mut msg);
    if !msg.is_empty() {
        let _ = waitpid(pid, None);
        return Err(msg);
    }
    report(&format!("started {}", pid.as_raw()));
    // Nobody reads stdout any more; keep writes from raising SIGPIPE.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = dup2_stdout(null.as_fd());
    }
    // From here on the shim only copies output and waits: give back the pages of setup code.
    let _ = crate::sys::process::drop_clean_file_pages();
    copy_logs(outputs, &mut log);
    let record = wait_for(pid);
    record
        .write(&cfg.exit_path)
        .map_err(|e| format!("write exit record {}: {e}", cfg.exit_path.display()))?;
    Ok(())
}

/// Copies the container's stdout and stderr into the log until both are closed — which
/// happens when every process of the container is gone (the kernel kills the whole pid
/// namespace when its init exits).
fn copy_logs(outputs: [OwnedFd; 2], log: &mut LogWriter) {
    const STREAMS: [&str; 2] = ["stdout", "stderr"];
    let mut files: [Option<std::fs::File>; 2] = outputs.map(|fd| Some(std::fs::File::from(fd)));
    let mut lines: [LineBuffer; 2] = Default::default();
    let mut buf = [0u8; 8192];
    let mut log_failed = false;
    let mut emit = |log: &mut LogWriter, stream: &str, rec: &[u8]| {
        if let Err(e) = log.write(stream, rec) {
            if !log_failed {
                eprintln!("berth shim: write log: {e}");
                log_failed = true;
            }
        }
    };
    while files.iter().any(Option::is_some) {
        let open: Vec<usize> = (0..2).filter(|i| files[*i].is_some()).collect();
        let ready: Vec<usize> = {
            let mut polls: Vec<PollFd<'_>> = open
                .iter()
                .filter_map(|i| {
                    files[*i]
                        .as_ref()
                        .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
                })
                .collect();
            match poll(&mut polls, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("berth shim: poll container output: {e}");
                    return;
                }
            }
            open.iter()
                .zip(&polls)
                .filter(|(_, p)| !p.revents().unwrap_or(PollFlags::empty()).is_empty())
                .map(|(i, _)| *i)
                .collect()
        };
        for i in &ready {
            let n = match files[*i].as_mut().map(|f| f.read(&mut buf)) {
                Some(Ok(n)) => n,
                Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                _ => 0,
            };
            if n == 0 {
                lines[*i].finish(&mut |rec| emit(log, STREAMS[*i], rec));
                files[*i] = None;
            } else {
                lines[*i].push(&buf[..n], &mut |rec| emit(log, STREAMS[*i], rec));
            }
        }
    }
}

/// Reaps every child until the container's init is gone, and says how it ended.
fn wait_for(init: Pid) -> ExitRecord {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p == init => {
                return ExitRecord::now(code, None, None);
            }
            Ok(WaitStatus::Signaled(p, sig, _)) if p == init => {
                return ExitRecord::now(128 + sig as i32, Some(sig as i32), None);
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return ExitRecord::now(
                    255,
                    None,
                    Some(format!("wait for container init {init}: {e}")),
                );
            }
        }
    }
}
