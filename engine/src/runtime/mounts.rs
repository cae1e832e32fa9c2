//! The container's own mounts, done by its init: volumes and host paths (bind), tmpfs,
//! device nodes, Docker's masked and read-only paths, and a read-only root.
//!
//! Sources are opened on the host side *before* `pivot_root` and kept as `O_PATH` fds; every
//! target is resolved *after* it with `openat2(RESOLVE_IN_ROOT)` and mounted through
//! `/proc/self/fd/N`, so no symlink an image plants can aim a mount at the host.

use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{major, makedev, minor, mknod, Mode, SFlag};
use serde::{Deserialize, Serialize};

use super::init::{errno_text, io_text};
use crate::sys::fs::{fd_path, open_in_root};

/// Docker's masked paths: unreadable in the container.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountConfig {
    /// Absolute path inside the container.
    pub destination: PathBuf,
    pub read_only: bool,
    pub source: MountSource,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MountSource {
    /// A host file or directory, bound. `populate`: a marker file; while it does not exist
    /// and the source dir is empty, the image's content at the destination is copied in
    /// first (a new named volume, as Docker does), then the marker is written.
    Bind {
        path: PathBuf,
        populate: Option<PathBuf>,
    },
    Tmpfs {
        size: Option<u64>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceConfig {
    pub host_path: PathBuf,
    /// Absolute path inside the container.
    pub path: PathBuf,
    /// Device cgroup access, a subset of "rwm".
    pub permissions: String,
}

/// The device cgroup rule for a host device node.
pub fn device_rule(d: &DeviceConfig) -> Result<crate::cgroups::DeviceRule, String> {
    let meta = std::fs::metadata(&d.host_path)
        .map_err(|e| format!("device {}: {}", d.host_path.display(), io_text(&e)))?;
    let kind = if meta.file_type().is_char_device() {
        'c'
    } else if meta.file_type().is_block_device() {
        'b'
    } else {
        return Err(format!(
            "device {}: not a character or block device",
            d.host_path.display()
        ));
    };
    Ok(crate::cgroups::DeviceRule::new(
        kind,
        Some(major(meta.rdev())),
        Some(minor(meta.rdev())),
        &d.permissions,
    ))
}

/// What must be taken from the host before `pivot_root`: the device nodes' numbers.
pub struct Prepared {
    devices: Vec<(PathBuf, SFlag, u64, u32)>, // path, type, rdev, permission bits
}

fn ensure_absolute(p: &Path) -> Result<(), String> {
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "mount destination {} must be absolute, without '..'",
            p.display()
        ));
    }
    Ok(())
}

/// Mounts volumes, host paths and tmpfs into `rootfs` (still on the host side, before
/// `pivot_root`: a bind source must be in the caller's mount namespace), and reads every
/// device node. Every target is created and resolved beneath `rootfs` through fds.
pub fn prepare(
    mounts: &[MountConfig],
    devices: &[DeviceConfig],
    rootfs: &Path,
) -> Result<Prepared, String> {
    let root: OwnedFd = std::fs::File::open(rootfs)
        .map_err(|e| format!("open rootfs {}: {}", rootfs.display(), io_text(&e)))?
        .into();
    for m in mounts {
        ensure_absolute(&m.destination)?;
        mount_one(&root, rootfs, m)?;
    }
    let mut devs = Vec::with_capacity(devices.len());
    for d in devices {
        ensure_absolute(&d.path)?;
        let meta = std::fs::metadata(&d.host_path)
            .map_err(|e| format!("device {}: {}", d.host_path.display(), io_text(&e)))?;
        let kind = if meta.file_type().is_char_device() {
            SFlag::S_IFCHR
        } else if meta.file_type().is_block_device() {
            SFlag::S_IFBLK
        } else {
            return Err(format!(
                "device {}: not a character or block device",
                d.host_path.display()
            ));
        };
        devs.push((
            d.path.clone(),
            kind,
            meta.rdev(),
            meta.permissions().mode() & 0o7777,
        ));
    }
    Ok(Prepared { devices: devs })
}

fn mount_one(root: &OwnedFd, rootfs: &Path, m: &MountConfig) -> Result<(), String> {
    let dest = &m.destination;
    match &m.source {
        MountSource::Bind { path, populate } => {
            if let Some(marker) = populate {
                populate_volume(path, marker, rootfs, dest)?;
            }
            let is_dir = std::fs::metadata(path)
                .map_err(|e| format!("mount source {}: {}", path.display(), io_text(&e)))?
                .is_dir();
            let t = make_target(root, dest, is_dir)?;
            mount(
                Some(path.as_path()),
                fd_path(&t).as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| {
                format!(
                    "bind {} on {}: {}",
                    path.display(),
                    dest.display(),
                    errno_text(e)
                )
            })?;
            if m.read_only {
                // Reopened: the fd from before the mount still names the dir underneath it.
                let t = open_in_root(root, dest, libc::O_PATH)
                    .map_err(|e| format!("open mount {}: {}", dest.display(), io_text(&e)))?;
                remount_readonly(&t, dest)?;
            }
        }
        MountSource::Tmpfs { size } => {
            let t = make_target(root, dest, true)?;
            let data = match size {
                Some(s) => format!("mode=1777,size={s}"),
                None => "mode=1777".to_string(),
            };
            let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            if m.read_only {
                flags |= MsFlags::MS_RDONLY;
            }
            mount(
                Some("tmpfs"),
                fd_path(&t).as_str(),
                Some("tmpfs"),
                flags,
                Some(data.as_str()),
            )
            .map_err(|e| format!("mount tmpfs on {}: {}", dest.display(), errno_text(e)))?;
        }
    }
    Ok(())
}

/// Creates `dest` (a dir, or an empty file) beneath `root`, one component at a time through
/// fds — never following a symlink out of the root — and opens it `O_PATH`.
fn make_target(root: &OwnedFd, dest: &Path, dir: bool) -> Result<OwnedFd, String> {
    let err = |e: std::io::Error| format!("create mount point {}: {}", dest.display(), io_text(&e));
    let names: Vec<&std::ffi::OsStr> = dest
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut prefix = PathBuf::from("/");
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let parent = open_in_root(root, &prefix, libc::O_PATH | libc::O_DIRECTORY).map_err(err)?;
        prefix.push(name);
        if open_in_root(root, &prefix, libc::O_PATH).is_ok() {
            continue;
        }
        let made = if last && !dir {
            nix::fcntl::openat(
                &parent,
                *name,
                OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        } else {
            match nix::sys::stat::mkdirat(&parent, *name, Mode::from_bits_truncate(0o755)) {
                Err(nix::errno::Errno::EEXIST) => Ok(()),
                other => other,
            }
        };
        made.map_err(|e| err(std::io::Error::from(e)))?;
    }
    open_in_root(root, dest, libc::O_PATH).map_err(err)
}

/// Docker's copy-up: a new, empty volume mounted over a path with content in the image gets
/// that content first — once, marked by `marker`.
fn populate_volume(data: &Path, marker: &Path, rootfs: &Path, dest: &Path) -> Result<(), String> {
    if marker.exists() {
        return Ok(());
    }
    let empty = std::fs::read_dir(data)
        .map_err(|e| format!("read volume {}: {}", data.display(), io_text(&e)))?
        .next()
        .is_none();
    if empty {
        let root: OwnedFd = std::fs::File::open(rootfs)
            .map_err(|e| format!("open rootfs {}: {}", rootfs.display(), io_text(&e)))?
            .into();
        // Resolved inside the image's root: a symlink in the image cannot make us copy host files.
        if let Ok(src) = open_in_root(&root, dest, libc::O_RDONLY | libc::O_DIRECTORY) {
            copy_tree(&PathBuf::from(fd_path(&src)), data).map_err(|e| {
                format!(
                    "fill volume {} from the image's {}: {e}",
                    data.display(),
                    dest.display()
                )
            })?;
        }
    }
    std::fs::write(marker, b"")
        .map_err(|e| format!("mark volume {}: {}", data.display(), io_text(&e)))
}

/// Copies a tree with modes, owners and symlinks (never following them).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&src)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else {
            continue; // sockets, fifos, devices are not volume content
        }
        if !ft.is_symlink() {
            std::fs::set_permissions(
                &dst,
                std::fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
            )?;
        }
        std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()))?;
    }
    Ok(())
}

fn root_fd() -> Result<OwnedFd, String> {
    std::fs::File::open("/")
        .map(OwnedFd::from)
        .map_err(|e| format!("open /: {}", io_text(&e)))
}

fn remount_readonly(fd: &OwnedFd, dest: &Path) -> Result<(), String> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mount(
        None::<&str>,
        fd_path(fd).as_str(),
        None::<&str>,
        flags,
        None::<&str>,
    )
    .map_err(|e| format!("make {} read-only: {}", dest.display(), errno_text(e)))
}

/// The listed device nodes, inside the new root (after `pivot_root` and `/dev`).
pub fn make_devices(prepared: &Prepared) -> Result<(), String> {
    for (path, kind, rdev, mode) in &prepared.devices {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("mkdir {}: {}", parent.display(), io_text(&e)))?;
        }
        let _ = std::fs::remove_file(path);
        mknod(
            path,
            *kind,
            Mode::from_bits_truncate(*mode),
            makedev(major(*rdev), minor(*rdev)),
        )
        .map_err(|e| format!("mknod {}: {}", path.display(), errno_text(e)))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
            .map_err(|e| format!("chmod {}: {}", path.display(), io_text(&e)))?;
    }
    Ok(())
}

/// Docker's masked paths (a read-only empty tmpfs over dirs, `/dev/null` over files) and
/// read-only paths. Paths the kernel does not have are skipped.
pub fn harden(masked: &[String], readonly: &[String]) -> Result<(), String> {
    let root = root_fd()?;
    for p in masked {
        let p = Path::new(p);
        let Ok(fd) = open_in_root(&root, p, libc::O_PATH) else {
            continue;
        };
        let is_dir = std::fs::metadata(fd_path(&fd))
            .map(|m| m.is_dir())
            .unwrap_or(false);
        let result = if is_dir {
            mount(
                Some("tmpfs"),
                fd_path(&fd).as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0"),
            )
        } else {
            mount(
                Some("/dev/null"),
                fd_path(&fd).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        result.map_err(|e| format!("mask {}: {}", p.display(), errno_text(e)))?;
    }
    for p in readonly {
        let p = Path::new(p);
        let Ok(fd) = open_in_root(&root, p, libc::O_PATH) else {
            continue;
        };
        mount(
            Some(fd_path(&fd).as_str()),
            fd_path(&fd).as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| format!("bind {} read-only: {}", p.display(), errno_text(e)))?;
        let fd = open_in_root(&root, p, libc::O_PATH)
            .map_err(|e| format!("open {}: {}", p.display(), io_text(&e)))?;
        remount_readonly(&fd, p)?;
    }
    Ok(())
}

/// `readOnlyRootFilesystem`: the root becomes read-only; the mounts on it keep their own mode.
pub fn readonly_root() -> Result<(), String> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| format!("make the root filesystem read-only: {}", errno_text(e)))
}
