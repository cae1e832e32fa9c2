//! Network namespaces as files: create one on a dedicated thread and pin it with a bind mount
//! (as `ip netns add` does), run code on a thread that entered one (or each of several in
//! turn), and remove the pin.
//!
//! Namespaces belong to threads. A tokio worker must never `setns`: tokio moves tasks between
//! workers, so a socket or a task would end up in the wrong namespace. Everything here runs
//! on a fresh `std::thread` that exits when done, so no pooled thread is ever left in a
//! container's namespace.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

fn nix_err(op: &str, path: &Path, e: nix::errno::Errno) -> io::Error {
    io::Error::new(
        io::Error::from(e).kind(),
        format!("{op} {}: {}", path.display(), e.desc()),
    )
}

/// Creates a new network namespace and bind-mounts it on `path` (created as an empty file).
///
/// `unshare(CLONE_NEWNET)` happens on a dedicated thread that exits right after, so the
/// calling thread (a tokio worker, say) stays where it is. See `unshare(2)`, `mount(2)`.
pub fn create(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // The mount point: an empty regular file, created exclusively so that two creators of
    // the same path cannot both succeed.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    let target = path.to_path_buf();
    let result = std::thread::Builder::new()
        .name("berth-netns-new".into())
        .spawn(move || -> io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| nix_err("unshare network namespace for", &target, e))?;
            // /proc/thread-self is this thread's own entry: the process's main thread is
            // still in the old namespace.
            mount(
                Some(Path::new("/proc/thread-self/ns/net")),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| nix_err("bind-mount network namespace on", &target, e))
        })?
        .join()
        .map_err(|_| io::Error::other("network namespace thread panicked"))?;
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Unmounts the pin at `path` and removes the file. The namespace itself goes away once
/// nothing else (a process, an open fd) holds it. A missing file is not an error.
pub fn remove(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) => {}
        // EINVAL: not a mount point (a half-created namespace); ENOENT: already gone.
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(nix_err("unmount network namespace", path, e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("remove {}: {e}", path.display()),
        )),
    }
}

/// Whether `path` is a network namespace pin (a bind mount of an nsfs inode).
pub fn is_namespace(path: &Path) -> bool {
    // The pin is on nsfs; the empty file under it is not (NSFS_MAGIC, linux/magic.h).
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).is_ok_and(|fs| fs.filesystem_type().0 == NSFS_MAGIC)
}

/// Runs `f` on a fresh thread that first enters the network namespace pinned at `path`.
/// Sockets `f` opens live in that namespace. The thread exits when `f` returns.
pub fn run_in<T, F>(path: &Path, f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let path = path.to_path_buf();
    on_fresh_thread(move || {
        enter(&path)?;
        Ok(f())
    })
}

/// Like [`run_in`], for a namespace the caller holds open: `/proc/PID/ns/net` of a process it
/// verified, say (a path could name another process by the time the thread opens it).
/// `name` is where `ns` was opened, for errors.
pub fn run_in_fd<T, F>(ns: OwnedFd, name: &Path, f: F) -> io::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let name = name.to_path_buf();
    on_fresh_thread(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| nix_err("enter network namespace", &name, e))?;
        drop(ns);
        Ok(f())
    })
}

fn on_fresh_thread<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(f)?
        .join()
        .map_err(|_| io::Error::other("network namespace thread panicked"))?
}

/// Moves the calling thread into the network namespace pinned at `path`.
fn enter(path: &Path) -> io::Result<()> {
    let ns = File::open(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("open network namespace {}: {e}", path.display()),
        )
    })?;
    setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| nix_err("enter network namespace", path, e))
}

/// Runs `f` once for each namespace pinned in `paths`, in order, on one fresh thread that
/// enters each in turn (cheaper than a thread per namespace when there are many). A
/// namespace that cannot be entered gets its error in its slot. The thread exits at the end.
pub fn run_in_each<T, F>(paths: Vec<PathBuf>, mut f: F) -> io::Result<Vec<io::Result<T>>>
where
    F: FnMut(&Path) -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || {
            paths
                .iter()
                .map(|path| {
                    enter(path)?;
                    f(path)
                })
                .collect()
        })?
        .join()
        .map_err(|_| io::Error::other("network namespace thread panicked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_errno_and_name_the_path() {
        let e = nix_err(
            "enter network namespace",
            Path::new("/run/x"),
            nix::errno::Errno::ENOENT,
        );
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "enter network namespace /run/x: No such file or directory"
        );
    }

    #[test]
    fn removing_a_missing_pin_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("none");
        remove(&p).expect("missing pin");
        assert!(!is_namespace(&p));
        std::fs::write(&p, b"").unwrap();
        assert!(!is_namespace(&p), "an empty file is not a namespace");
        remove(&p).expect("plain file");
        assert!(!p.exists());
    }
}
