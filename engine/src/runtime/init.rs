//! The container's init, between the shim's fork and `execve`: overlay root, `pivot_root`,
//! `/proc`, `/dev`, `/sys`, hostname, loopback, working dir, then the user's program.
//!
//! Runs in a freshly forked child of the single-threaded shim, in new pid, mount, uts, ipc
//! and network namespaces. Every failure becomes one message for the agent, worded like
//! runc's ("exec /bin/nope: no such file or directory"), then `_exit(127)`.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::{access, chdir, execve, pivot_root, sethostname, AccessFlags};

use super::config::{NetworkNamespace, ShimConfig};
use super::mounts;
use super::security;
use crate::sys;

/// "no such file or directory": errno text the way Go (and so runc, Docker) prints it.
pub fn errno_text(e: Errno) -> String {
    let d = e.desc();
    let mut c = d.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => d.to_string(),
    }
}

pub(crate) fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_text(Errno::from_raw(n)),
        None => e.to_string(),
    }
}

/// Prepares the container and execs its process. Returns only on failure, with the message.
pub fn setup_and_exec(cfg: &ShimConfig) -> Result<Infallible, String> {
    join_network(cfg)?;
    // Nothing we mount may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("make / a slave mount: {}", errno_text(e)))?;
    mount_overlay(cfg)?;
    // Binds need their sources in our mount namespace: done before the host is out of reach.
    mounts::prepare(&etc_file_mounts(&cfg.etc_files), &[], &cfg.rootfs)?;
    let prepared = mounts::prepare(&cfg.mounts, &cfg.devices, &cfg.rootfs)?;
    enter_root(&cfg.rootfs)?;
    mount_proc()?;
    // Sysctls go in while /proc/sys is still writable.
    security::apply_sysctls(&cfg.security, cfg.network == NetworkNamespace::Host)?;
    mount_dev()?;
    mount_sys()?;
    mounts::make_devices(&prepared)?;
    mounts::harden(&cfg.masked_paths, &cfg.readonly_paths)?;
    if cfg.readonly_rootfs {
        mounts::readonly_root()?;
    }
    sethostname(&cfg.hostname)
        .map_err(|e| format!("set hostname {:?}: {}", cfg.hostname, errno_text(e)))?;
    if cfg.network != NetworkNamespace::Host {
        sys::net::set_link_up("lo").map_err(|e| format!("bring up lo: {}", io_text(&e)))?;
    }
    chdir(cfg.cwd.as_str()).map_err(|e| format!("chdir to {}: {}", cfg.cwd, errno_text(e)))?;
    let user = security::apply(&cfg.security)?;
    exec(&cfg.args, &cfg.env, &user.home)
}

/// Enters the prepared network namespace (bridge networks). A new empty one was made by the
/// clone itself; the host's needs nothing.
fn join_network(cfg: &ShimConfig) -> Result<(), String> {
    let NetworkNamespace::Join(path) = &cfg.network else {
        return Ok(());
    };
    let ns = std::fs::File::open(path)
        .map_err(|e| format!("open network namespace {}: {}", path.display(), io_text(&e)))?;
    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
        format!(
            "join network namespace {}: {}",
            path.display(),
            errno_text(e)
        )
    })
}

/// overlayfs with the image's layers under a private upper dir. The mount data is one page,
/// so lower dirs are given relative to their common parent (containerd's trick).
fn mount_overlay(cfg: &ShimConfig) -> Result<(), String> {
    if cfg.layers.is_empty() {
        return Err("mount rootfs: the image has no layers".into());
    }
    let parent = cfg.layers[0]
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let shared = cfg
        .layers
        .iter()
        .all(|l| l.parent() == Some(parent.as_path()));
    let lower: Vec<String> = cfg
        .layers
        .iter()
        .rev() // overlay lists the top layer first
        .map(|l| {
            if shared {
                l.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                l.display().to_string()
            }
        })
        .collect();
    for p in lower.iter().map(String::as_str).chain([
        cfg.upper.to_str().unwrap_or(","),
        cfg.work.to_str().unwrap_or(","),
    ]) {
        if p.contains([',', ':']) {
            return Err(format!("mount rootfs: path {p:?} contains ',' or ':' (hint: choose a state dir without them)"));
        }
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        cfg.upper.display(),
        cfg.work.display()
    );
    if shared {
        chdir(&parent).map_err(|e| format!("chdir {}: {}", parent.display(), errno_text(e)))?;
    }
    mount(
        Some("overlay"),
        &cfg.rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| {
        format!(
            "mount overlay on {}: {}",
            cfg.rootfs.display(),
            errno_text(e)
        )
    })
}

/// `pivot_root(".", ".")` as runc does: no temporary dir inside the image is needed, and the
/// old root is detached right away.
fn enter_root(rootfs: &Path) -> Result<(), String> {
    chdir(rootfs).map_err(|e| format!("chdir {}: {}", rootfs.display(), errno_text(e)))?;
    pivot_root(".", ".")
        .map_err(|e| format!("pivot_root {}: {}", rootfs.display(), errno_text(e)))?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("make old root a slave: {}", errno_text(e)))?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| format!("detach old root: {}", errno_text(e)))?;
    chdir("/").map_err(|e| format!("chdir /: {}", errno_text(e)))
}

/// Creates a mount point inside the new root. After `pivot_root` every path, symlinks
/// included, resolves inside the container, so an image cannot aim these at the host.
fn mount_point(path: &str) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("mkdir {path}: {}", io_text(&e)))
}

fn mount_fs(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), String> {
    mount_point(target)?;
    mount(Some(source), target, Some(fstype), flags, data)
        .map_err(|e| format!("mount {fstype} on {target}: {}", errno_text(e)))
}

fn mount_proc() -> Result<(), String> {
    mount_fs(
        "proc",
        "/proc",
        "proc",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
}

fn mount_sys() -> Result<(), String> {
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs("sysfs", "/sys", "sysfs", flags, None)
}

/// A minimal `/dev`: Docker's default device nodes, pts, shm and mqueue.
fn mount_dev() -> Result<(), String> {
    mount_fs(
        "tmpfs",
        "/dev",
        "tmpfs",
        // noexec as podman: device nodes work without exec rights, and nothing in /dev is a program.
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let path = format!("/dev/{name}");
        mknod(
            path.as_str(),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .map_err(|e| format!("mknod {path}: {}", errno_text(e)))?;
        // mknod applies the umask; the nodes must be world-usable as on any Linux host.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| format!("chmod {path}: {}", io_text(&e)))?;
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ] {
        symlink(target, link).map_err(|e| format!("symlink {link}: {}", io_text(&e)))?;
    }
    mount_fs(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    mount_fs(
        "shm",
        "/dev/shm",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    mount_fs(
        "mqueue",
        "/dev/mqueue",
        "mqueue",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
}

/// Finds the program like execvp, with the container's own `PATH` (from `env`), inside the
/// container's root.
fn find_executable(name: &str, env: &[String]) -> Result<PathBuf, String> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let path_var = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        let is_file = std::fs::metadata(&candidate)
            .map(|m| m.is_file())
            .unwrap_or(false);
        if is_file && access(&candidate, AccessFlags::X_OK).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "exec: {name:?}: executable file not found in $PATH"
    ))
}

fn cstrings<'a>(items: impl Iterator<Item = &'a str>, what: &str) -> Result<Vec<CString>, String> {
    items
        .map(|s| CString::new(s).map_err(|_| format!("exec: {what} {s:?} contains a NUL byte")))
        .collect()
}

/// Execs `args` (`args[0]` resolved in `env`'s `PATH`) with `env`, as the last step of a
/// process that is already inside the container with its profile applied: the container's
/// init, or an exec probe's command. `home`: the user's home dir from the image's passwd
/// file; it becomes `HOME` unless the image or the manifest set one (as runc does).
pub(crate) fn exec(args: &[String], env: &[String], home: &str) -> Result<Infallible, String> {
    let name = args.first().ok_or("exec: no command given")?;
    let program = find_executable(name, env)?;
    let path = CString::new(program.as_os_str().as_encoded_bytes())
        .map_err(|_| "exec: program path contains a NUL byte".to_string())?;
    let argv = cstrings(args.iter().map(String::as_str), "argument")?;
    let home_var = format!("HOME={}", if home.is_empty() { "/" } else { home });
    let has_home = env.iter().any(|kv| kv.starts_with("HOME="));
    let env = env
        .iter()
        .map(String::as_str)
        .chain((!has_home).then_some(home_var.as_str()));
    let envp = cstrings(env, "env entry")?;
    // An ignored signal stays ignored across execve, and berth's process left some so
    // (SIGPIPE by Rust's startup, 32 and 33 by glibc's posix_spawn): the program gets the
    // defaults any host would give it.
    sys::process::reset_signals().map_err(|e| format!("reset signals: {}", io_text(&e)))?;
    // The error pipe is O_CLOEXEC and must stay open until the exec succeeds; every other fd
    // above stderr is marked close-on-exec too.
    sys::process::cloexec_from(3)
        .map_err(|e| format!("mark fds close-on-exec: {}", io_text(&e)))?;
    match execve(&path, &argv, &envp) {
        Err(e) => Err(format!("exec {}: {}", program.display(), errno_text(e))),
        Ok(never) => match never {},
    }
}

/// The network setup's resolv.conf, hosts and hostname as bind mounts (writable, as in
/// Docker), placed before the manifest's mounts so that a manifest's own wins.
fn etc_file_mounts(files: &[(PathBuf, String)]) -> Vec<mounts::MountConfig> {
    files
        .iter()
        .map(|(host, target)| mounts::MountConfig {
            destination: PathBuf::from(target),
            read_only: false,
            source: mounts::MountSource::Bind {
                path: host.clone(),
                populate: None,
            },
        })
        .collect()
}
