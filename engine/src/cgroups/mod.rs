//! Container cgroups on every layout an edge fleet has: cgroup v1, hybrid (v1 controllers
//! plus an empty cgroup2 at `unified`) and pure v2.
//!
//! A [`CgroupManager`] knows the root (`/sys/fs/cgroup`, a parameter so tests use a temp dir),
//! the mode and berth's parent cgroup; it creates a container's [`Cgroup`] with its
//! [`Limits`]. Paths: `<root>/<hierarchy>/<parent>/<name>` per v1 hierarchy (plus
//! `<root>/unified/<parent>/<name>` in hybrid mode) and `<root>/<parent>/<name>` on v2.

mod cgroup;
mod control;
mod detect;
mod devices;
mod error;
mod kill;
mod stats;
mod v1;
mod v2;

use std::path::{Path, PathBuf};

pub use cgroup::Cgroup;
pub use detect::Controller;
pub use devices::{default_rules as default_device_rules, DeviceRule};
pub use error::{Error, Result};
pub use stats::Stats;

use detect::Hierarchy;

/// Where the agent reads the mounts from to find the v1 hierarchies.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The cgroup layout of the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Mode {
    /// Only v1 hierarchies, one per controller (or combined, like `cpu,cpuacct`).
    V1,
    /// v1 controllers plus a cgroup2 tree at `<root>/unified` without useful controllers.
    Hybrid,
    /// One cgroup2 tree at the root.
    V2,
}

/// Resource limits of one cgroup. `None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    /// Thousandths of a CPU: 500 is half a core.
    pub cpu_millis: Option<u64>,
    pub pids: Option<u64>,
}

/// The CFS period berth uses: quotas are per 100ms, like Docker's `--cpus`.
pub const CPU_PERIOD_US: u64 = 100_000;

/// The kernel refuses CFS quotas below 1ms.
const CPU_MIN_QUOTA_US: u64 = 1_000;

impl Limits {
    /// Refuses limits the kernel would reject or that would kill the container at once.
    fn validate(&self, cgroup: &str) -> Result<()> {
        let invalid = |what, reason: String| {
            Err(Error::InvalidLimit {
                what,
                cgroup: cgroup.to_string(),
                reason,
            })
        };
        if self.memory_bytes == Some(0) {
            return invalid(
                "memory",
                "0 bytes leaves no memory to run in; leave it unset for no limit".into(),
            );
        }
        if let Some(millis) = self.cpu_millis {
            match millis.checked_mul(CPU_PERIOD_US / 1000) {
                Some(q) if q >= CPU_MIN_QUOTA_US => {}
                Some(_) => {
                    return invalid(
                        "cpu",
                        format!("{millis}m is below the kernel's minimum of 10m (a quota of 1000us per 100000us period)"),
                    )
                }
                None => return invalid("cpu", format!("{millis}m is too large")),
            }
        }
        Ok(())
    }

    /// The CFS quota per [`CPU_PERIOD_US`] for the CPU limit (after [`Limits::validate`]).
    pub fn cpu_quota_us(&self) -> Option<u64> {
        self.cpu_millis
            .map(|m| m.saturating_mul(CPU_PERIOD_US / 1000))
    }
}

/// Removes the leaf directories a failed create made, keeping the error that made it fail
/// and any error of the cleanup.
fn undo_create(err: Error, created: &[PathBuf]) -> Error {
    let cleanup: Vec<Error> = created
        .iter()
        .rev()
        .filter_map(|dir| control::rmdir(dir).err())
        .collect();
    if cleanup.is_empty() {
        err
    } else {
        Error::CreateCleanup {
            source: Box::new(err),
            cleanup,
        }
    }
}

/// Moves process `pid` (all its threads) into the cgroup directory `dir`.
pub fn join(dir: &Path, pid: &str) -> Result<()> {
    control::write(&dir.join("cgroup.procs"), pid)
}

/// Creates and opens the cgroups of berth's containers under one parent cgroup.
#[derive(Clone, Debug)]
pub struct CgroupManager {
    root: PathBuf,
    mode: Mode,
    parent: String,
    /// The v1 hierarchies (V1 and Hybrid), ordered like [`Controller::ALL`].
    hierarchies: Vec<Hierarchy>,
    /// The named `name=systemd` v1 hierarchy, where systemd tracks services on v1 and hybrid
    /// hosts: berth controls nothing there, but every cgroup of berth's exists there too, so
    /// its processes leave the agent's cgroup there as well.
    pub(crate) systemd: Option<PathBuf>,
}

/// The cgroup (under the parent) that holds the shims: out of the agent's own cgroup, so a
/// service manager that kills the agent's whole cgroup leaves every container running.
pub const SHIMS: &str = "shims";

impl CgroupManager {
    /// Detects the layout under `root` (normally `/sys/fs/cgroup`): statfs magic for the mode,
    /// `/proc/self/mountinfo` for the v1 hierarchies.
    pub fn detect(root: &Path, parent: &str) -> Result<CgroupManager> {
        let mode = detect::detect_mode(root)?;
        let hierarchies = match mode {
            Mode::V2 => (Vec::new(), None),
            Mode::V1 | Mode::Hybrid => {
                let path = Path::new(MOUNTINFO);
                let mountinfo = control::read(path)?;
                let found = detect::hierarchies_from_mountinfo(root, &mountinfo);
                if found.is_empty() {
                    return Err(Error::NoHierarchies {
                        root: root.to_path_buf(),
                    });
                }
                (found, detect::systemd_hierarchy(root, &mountinfo))
            }
        };
        let (hierarchies, systemd) = hierarchies;
        tracing::debug!(root = %root.display(), ?mode, hierarchies = hierarchies.len(), systemd = ?systemd, "detected cgroup layout");
        let mut mgr = CgroupManager::new(root, mode, parent, hierarchies);
        mgr.systemd = systemd;
        Ok(mgr)
    }

    /// A manager for a known mode, for roots that are not mounts (tests' temp dirs). On V1
    /// and Hybrid the hierarchies are the directories under `root` named after controllers
    /// (`memory`, `cpu,cpuacct`, …); `unified` is the cgroup2 tree of Hybrid.
    pub fn with_mode(root: &Path, mode: Mode, parent: &str) -> CgroupManager {
        let hierarchies = match mode {
            Mode::V2 => Vec::new(),
            Mode::V1 | Mode::Hybrid => detect::hierarchies_from_dir_names(root),
        };
        CgroupManager::new(root, mode, parent, hierarchies)
    }

    fn new(root: &Path, mode: Mode, parent: &str, mut hierarchies: Vec<Hierarchy>) -> Self {
        // Memory first: the directory most callers look at leads `Cgroup::paths`.
        hierarchies.sort_by_key(|h| h.controllers.iter().min().copied());
        CgroupManager {
            root: root.to_path_buf(),
            mode,
            parent: parent.to_string(),
            hierarchies,
            systemd: None,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The root this manager works under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The parent cgroup path (relative to each hierarchy) the containers live under.
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// The cgroup2 tree: the root on V2, `<root>/unified` on Hybrid.
    fn unified_root(&self) -> Option<PathBuf> {
        match self.mode {
            Mode::V1 => None,
            Mode::Hybrid => Some(self.root.join("unified")),
            Mode::V2 => Some(self.root.clone()),
        }
    }

    /// Creates the cgroup `name` (and the parent, as needed) and writes `limits`; a limit
    /// left `None` is reset to unlimited. Creating an existing cgroup only rewrites its
    /// limits. If creating a new cgroup fails half way, the directories made are removed.
    pub fn create(&self, name: &str, limits: &Limits) -> Result<Cgroup> {
        validate_path(&self.parent, true)?;
        validate_path(name, false)?;
        let cgroup = self.open(name);
        match self.mode {
            Mode::V1 | Mode::Hybrid => v1::create(self, &cgroup, limits)?,
            Mode::V2 => v2::create(self, &cgroup, limits)?,
        }
        tracing::debug!(cgroup = name, mode = ?self.mode, ?limits, "created cgroup");
        Ok(cgroup)
    }

    /// The handle of the cgroup `name`, without touching the host. An invalid name gives a
    /// handle whose every operation fails with [`Error::InvalidName`].
    pub fn open(&self, name: &str) -> Cgroup {
        let invalid = validate_path(&self.parent, true)
            .and_then(|()| validate_path(name, false))
            .err();
        let relative = Path::new(&self.parent).join(name);
        let mut controllers = Vec::new();
        let mut dirs = Vec::new();
        for h in &self.hierarchies {
            let dir = h.dir.join(&relative);
            for c in &h.controllers {
                controllers.push((*c, dir.clone()));
            }
            dirs.push(dir);
        }
        let unified = self.unified_root().map(|u| u.join(&relative));
        dirs.extend(unified.clone());
        dirs.extend(self.systemd.as_ref().map(|s| s.join(&relative)));
        let memory_dir = match self.mode {
            Mode::V2 => self.root.join(&relative),
            Mode::V1 | Mode::Hybrid => controllers
                .iter()
                .find(|(c, _)| *c == Controller::Memory)
                .map(|(_, d)| d.clone())
                .unwrap_or_else(|| self.root.join("memory").join(&relative)),
        };
        let layout = cgroup::Layout {
            dirs,
            controllers,
            unified,
            memory_dir,
        };
        Cgroup::new(name, self.mode, layout, invalid)
    }

    /// Creates the shims' cgroup (`<parent>/shims`) on every hierarchy, the named systemd one
    /// included, and returns its directories: a shim moves itself there before it starts its
    /// container, whose processes then leave the agent's cgroup everywhere too.
    pub fn shim_dirs(&self) -> Result<Vec<PathBuf>> {
        Ok(self.create(SHIMS, &Limits::default())?.paths().to_vec())
    }

    /// The parent's directory in every hierarchy.
    fn parent_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .hierarchies
            .iter()
            .map(|h| h.dir.join(&self.parent))
            .collect();
        dirs.extend(self.unified_root().map(|u| u.join(&self.parent)));
        dirs.extend(self.systemd.as_ref().map(|s| s.join(&self.parent)));
        dirs
    }

    /// The names of the cgroups directly under the parent, in any hierarchy, sorted. A parent
    /// that does not exist yet has none.
    pub fn children(&self) -> Result<Vec<String>> {
        validate_path(&self.parent, true)?;
        let mut names = std::collections::BTreeSet::new();
        for dir in self.parent_dirs() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(Error::Read { path: dir, source }),
            };
            for e in entries {
                let e = e.map_err(|source| Error::Read {
                    path: dir.clone(),
                    source,
                })?;
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    names.insert(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Processes in the parent cgroup itself (not in a container's cgroup below it), sorted.
    pub fn parent_pids(&self) -> Result<Vec<i32>> {
        validate_path(&self.parent, true)?;
        let mut pids = Vec::new();
        for dir in self.parent_dirs() {
            pids.extend(control::read_pids(&dir)?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Removes the parent cgroup and everything below it in every hierarchy, best effort (for
    /// cleaning up after tests). Only the last component of a nested parent is removed.
    pub fn remove_parent(&self) -> std::result::Result<(), Vec<Error>> {
        if let Err(e) = validate_path(&self.parent, true) {
            return Err(vec![e]);
        }
        let mut errors = Vec::new();
        for dir in self.parent_dirs() {
            if let Err(mut errs) = control::rmdir_tree(&dir) {
                errors.append(&mut errs);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The processes listed in the `cgroup.procs` of one cgroup directory (in the caller's pid
/// namespace); none when the directory does not exist. To check that a pid is in a cgroup in
/// every hierarchy, not just in one of them (which [`Cgroup::pids`] would say).
pub fn procs_of(dir: &Path) -> Result<Vec<i32>> {
    control::read_pids(dir)
}

/// Checks that a cgroup name (one component) or parent (components joined by `/`) stays
/// inside its hierarchy.
fn validate_path(path: &str, nested: bool) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidName {
            name: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return invalid("it is empty");
    }
    if path.contains('\0') {
        return invalid("it contains a NUL byte");
    }
    if !nested && path.contains('/') {
        return invalid("it contains '/'");
    }
    for component in path.split('/') {
        match component {
            "" => {
                return invalid("it has an empty path component (leading, trailing or double '/')")
            }
            "." | ".." => return invalid("'.' and '..' would leave the parent cgroup"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_stay_inside_the_parent() {
        assert_eq!(validate_path("web", false).unwrap(), ());
        assert_eq!(validate_path("berth/containers", true).unwrap(), ());
        for (bad, nested) in [
            ("", false),
            ("a/b", false),
            ("..", false),
            ("a/../b", true),
            ("/abs", true),
            ("a/", true),
        ] {
            let err = validate_path(bad, nested).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid cgroup name {bad:?}: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn an_invalid_name_gives_a_handle_that_refuses_everything() {
        let root = tempfile::tempdir().unwrap();
        let mgr = CgroupManager::with_mode(root.path(), Mode::V2, "berth");
        let cg = mgr.open("../escape");
        assert_eq!(cg.paths(), &[] as &[PathBuf]);
        let msg = "invalid cgroup name \"../escape\": it contains '/'";
        assert_eq!(cg.add_process(1).unwrap_err().to_string(), msg);
        assert_eq!(cg.pids().unwrap_err().to_string(), msg);
        assert_eq!(cg.kill_all().unwrap_err().to_string(), msg);
        let errs = cg.remove().unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].to_string(), msg);
        assert_eq!(
            mgr.create("..", &Limits::default())
                .unwrap_err()
                .to_string(),
            "invalid cgroup name \"..\": '.' and '..' would leave the parent cgroup"
        );
    }

    #[test]
    fn children_and_parent_processes_are_read_from_every_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        for d in [
            "memory/berth/web-1",
            "pids/berth/stray",
            "unified/berth/web-1",
        ] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        std::fs::write(root.path().join("memory/berth/cgroup.procs"), "7\n3\n").unwrap();
        std::fs::write(root.path().join("unified/berth/cgroup.procs"), "3\n").unwrap();
        let mgr = CgroupManager::with_mode(root.path(), Mode::Hybrid, "berth");
        assert_eq!(mgr.children().unwrap(), ["stray", "web-1"]);
        assert_eq!(mgr.parent_pids().unwrap(), [3, 7]);
        let none = CgroupManager::with_mode(root.path(), Mode::Hybrid, "absent");
        assert_eq!(none.children().unwrap(), Vec::<String>::new());
        assert_eq!(none.parent_pids().unwrap(), Vec::<i32>::new());
    }
}
