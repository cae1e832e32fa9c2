//! Finding the cgroup layout of a host: the mode (v1, hybrid, v2) and where each v1
//! controller's hierarchy is mounted.

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::statfs::{statfs, FsType, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};

use super::error::{Error, Result};
use super::Mode;

/// A v1 controller berth puts its containers under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
    Cpuacct,
    Cpuset,
    Freezer,
    Devices,
    Blkio,
}

impl Controller {
    /// Every controller a container's cgroup is created in on v1, in creation order.
    pub const ALL: [Controller; 8] = [
        Controller::Memory,
        Controller::Pids,
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Cpuset,
        Controller::Freezer,
        Controller::Devices,
        Controller::Blkio,
    ];

    /// The kernel's name of the controller.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Cpuset => "cpuset",
            Controller::Freezer => "freezer",
            Controller::Devices => "devices",
            Controller::Blkio => "blkio",
        }
    }

    fn from_name(name: &str) -> Option<Controller> {
        Controller::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One mounted v1 hierarchy: its mount directory and the controllers bound to it (one, or
/// several as in `cpu,cpuacct`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub dir: PathBuf,
    pub controllers: Vec<Controller>,
}

/// The mode from the filesystem types of the root and of `<root>/unified`.
pub fn classify(root: FsType, unified: Option<FsType>) -> Mode {
    if root == CGROUP2_SUPER_MAGIC {
        Mode::V2
    } else if root == TMPFS_MAGIC && unified == Some(CGROUP2_SUPER_MAGIC) {
        Mode::Hybrid
    } else {
        Mode::V1
    }
}

/// Detects the mode of the cgroup root by statfs magic.
pub fn detect_mode(root: &Path) -> Result<Mode> {
    let root_fs = statfs(root).map_err(|source| Error::Statfs {
        path: root.to_path_buf(),
        source,
    })?;
    // A missing `unified` dir is plain v1, not an error.
    let unified = statfs(&root.join("unified"))
        .ok()
        .map(|s| s.filesystem_type());
    Ok(classify(root_fs.filesystem_type(), unified))
}

/// The mount point of the named v1 hierarchy `name=systemd` under `root` (systemd tracks
/// services there on v1 and hybrid hosts), if it is mounted.
pub fn systemd_hierarchy(root: &Path, mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split(' ');
        if right.next() != Some("cgroup") {
            return None;
        }
        let superopts = right.nth(1).unwrap_or("");
        if !superopts.split(',').any(|o| o == "name=systemd") {
            return None;
        }
        let mount_point = PathBuf::from(unescape_mount_path(left.split(' ').nth(4)?));
        mount_point.starts_with(root).then_some(mount_point)
    })
}

/// The v1 hierarchies mounted under `root`, from the text of `/proc/self/mountinfo`.
///
/// A controller mounted twice counts once (the first mount wins), and hierarchies without a
/// controller berth uses (`name=systemd`, `net_cls`, …) are left out.
pub fn hierarchies_from_mountinfo(root: &Path, mountinfo: &str) -> Vec<Hierarchy> {
    let mut found: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        // id parent major:minor root mountpoint options [optional…] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split(' ');
        if right.next() != Some("cgroup") {
            continue;
        }
        let superopts = right.nth(1).unwrap_or("");
        let Some(mount_point) = left.split(' ').nth(4).map(unescape_mount_path) else {
            continue;
        };
        let mount_point = PathBuf::from(mount_point);
        if !mount_point.starts_with(root) {
            continue;
        }
        let controllers: Vec<Controller> = superopts
            .split(',')
            .filter_map(Controller::from_name)
            .filter(|c| !found.iter().any(|h| h.controllers.contains(c)))
            .collect();
        if !controllers.is_empty() {
            found.push(Hierarchy {
                dir: mount_point,
                controllers,
            });
        }
    }
    found
}

/// The v1 hierarchies under `root` from directory names alone (for a root that is not a
/// mount, such as a test's temp dir): each directory named after one or more controllers,
/// comma-separated. Symlinks (`cpu -> cpu,cpuacct`) are skipped, their target is listed too.
pub fn hierarchies_from_dir_names(root: &Path) -> Vec<Hierarchy> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut found: Vec<Hierarchy> = Vec::new();
    for name in names {
        let controllers: Vec<Controller> = name
            .split(',')
            .filter_map(Controller::from_name)
            .filter(|c| !found.iter().any(|h| h.controllers.contains(c)))
            .collect();
        if !controllers.is_empty() {
            found.push(Hierarchy {
                dir: root.join(&name),
                controllers,
            });
        }
    }
    found
}

/// Undoes the octal escapes (`\040` for a space, …) the kernel writes in mountinfo paths.
fn unescape_mount_path(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(value) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/net_cls rw,relatime - cgroup cgroup rw,net_cls
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:32 / /mnt/other\\040memory rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn mountinfo_gives_v1_hierarchies_under_the_root_only() {
        let got = hierarchies_from_mountinfo(Path::new("/sys/fs/cgroup"), HYBRID);
        assert_eq!(
            got,
            vec![
                Hierarchy {
                    dir: "/sys/fs/cgroup/cpu,cpuacct".into(),
                    controllers: vec![Controller::Cpu, Controller::Cpuacct]
                },
                Hierarchy {
                    dir: "/sys/fs/cgroup/cpuset".into(),
                    controllers: vec![Controller::Cpuset]
                },
                Hierarchy {
                    dir: "/sys/fs/cgroup/memory".into(),
                    controllers: vec![Controller::Memory]
                },
                Hierarchy {
                    dir: "/sys/fs/cgroup/pids".into(),
                    controllers: vec![Controller::Pids]
                },
            ]
        );
    }

    #[test]
    fn the_named_systemd_hierarchy_is_found_apart() {
        assert_eq!(
            systemd_hierarchy(Path::new("/sys/fs/cgroup"), HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/systemd"))
        );
        assert_eq!(systemd_hierarchy(Path::new("/mnt"), HYBRID), None);
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        let got = hierarchies_from_mountinfo(Path::new("/mnt"), HYBRID);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].dir, PathBuf::from("/mnt/other memory"));
    }

    #[test]
    fn dir_names_give_hierarchies_and_skip_symlinks_and_unknown_names() {
        let root = tempfile::tempdir().unwrap();
        for d in ["cpu,cpuacct", "memory", "systemd", "unified", "pids"] {
            fs::create_dir(root.path().join(d)).unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", root.path().join("cpu")).unwrap();
        let got = hierarchies_from_dir_names(root.path());
        let dirs: Vec<(String, Vec<Controller>)> = got
            .into_iter()
            .map(|h| {
                let name = h.dir.file_name().unwrap().to_string_lossy().into_owned();
                (name, h.controllers)
            })
            .collect();
        assert_eq!(
            dirs,
            vec![
                (
                    "cpu,cpuacct".to_string(),
                    vec![Controller::Cpu, Controller::Cpuacct]
                ),
                ("memory".to_string(), vec![Controller::Memory]),
                ("pids".to_string(), vec![Controller::Pids]),
            ]
        );
    }

    #[test]
    fn classify_by_magic() {
        use nix::sys::statfs::EXT4_SUPER_MAGIC;
        assert_eq!(classify(CGROUP2_SUPER_MAGIC, None), Mode::V2);
        assert_eq!(
            classify(TMPFS_MAGIC, Some(CGROUP2_SUPER_MAGIC)),
            Mode::Hybrid
        );
        assert_eq!(classify(TMPFS_MAGIC, None), Mode::V1);
        assert_eq!(classify(TMPFS_MAGIC, Some(TMPFS_MAGIC)), Mode::V1);
        assert_eq!(
            classify(EXT4_SUPER_MAGIC, Some(CGROUP2_SUPER_MAGIC)),
            Mode::V1
        );
    }
}
