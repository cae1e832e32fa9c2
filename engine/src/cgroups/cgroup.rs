//! One container's cgroup: its directories, the processes in it, and their removal.

use std::path::{Path, PathBuf};

use super::control;
use super::detect::Controller;
use super::error::{Error, Result};
use super::kill;
use super::Mode;

/// The directories of one cgroup, as the manager lays them out.
#[derive(Clone, Debug, Default)]
pub(crate) struct Layout {
    /// Every directory, memory hierarchy first, the `unified` one last.
    pub dirs: Vec<PathBuf>,
    /// v1: the directory of each controller (two controllers may share one).
    pub controllers: Vec<(Controller, PathBuf)>,
    /// The cgroup2 directory: the only one on V2, the `unified` one on Hybrid.
    pub unified: Option<PathBuf>,
    /// Where the memory files are, or would be when the memory hierarchy is missing.
    pub memory_dir: PathBuf,
}

/// Handle of one container cgroup: a directory per v1 hierarchy (plus the `unified` one in
/// hybrid mode), or one directory on v2. Holds paths only; nothing is open.
#[derive(Clone, Debug)]
pub struct Cgroup {
    name: String,
    mode: Mode,
    layout: Layout,
    /// Why the name was refused, if it was; every operation then fails with it.
    invalid: Option<(String, &'static str)>,
}

impl Cgroup {
    pub(crate) fn new(name: &str, mode: Mode, layout: Layout, invalid: Option<Error>) -> Cgroup {
        let invalid = match invalid {
            Some(Error::InvalidName { name, reason }) => Some((name, reason)),
            Some(_) | None => None,
        };
        // A refused name must not lead anywhere on the host.
        let layout = if invalid.is_some() {
            Layout::default()
        } else {
            layout
        };
        Cgroup {
            name: name.to_string(),
            mode,
            layout,
            invalid,
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        match &self.invalid {
            Some((name, reason)) => Err(Error::InvalidName {
                name: name.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// The container name this cgroup was opened with.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Every directory of this cgroup: one per v1 hierarchy (memory first) and, in hybrid
    /// mode, the `unified` one last; on v2 the one directory.
    pub fn paths(&self) -> &[PathBuf] {
        &self.layout.dirs
    }

    /// The cgroup2 directory (V2, or the `unified` one on Hybrid), for `CLONE_INTO_CGROUP`
    /// and `cgroup.kill`.
    pub fn unified_path(&self) -> Option<&Path> {
        self.layout.unified.as_deref()
    }

    /// The directory that holds `controller`'s files: its v1 hierarchy's, or the v2 one.
    pub fn controller_path(&self, controller: Controller) -> Option<&Path> {
        match self.mode {
            Mode::V2 => self.layout.unified.as_deref(),
            Mode::V1 | Mode::Hybrid => self
                .layout
                .controllers
                .iter()
                .find(|(c, _)| *c == controller)
                .map(|(_, d)| d.as_path()),
        }
    }

    /// Moves process `pid` (all its threads) into this cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        self.check()?;
        let value = pid.to_string();
        for dir in &self.layout.dirs {
            control::write(&dir.join("cgroup.procs"), &value)?;
        }
        Ok(())
    }

    /// The processes in this cgroup (in the caller's pid namespace), sorted, each once. A
    /// directory that does not exist holds none.
    pub fn pids(&self) -> Result<Vec<i32>> {
        self.check()?;
        let mut pids = Vec::new();
        for dir in &self.layout.dirs {
            pids.extend(control::read_pids(dir)?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// SIGKILLs every process in the cgroup (`cgroup.kill` where the kernel has it, else
    /// freeze, kill, thaw) and waits, bounded, until the cgroup is empty.
    pub fn kill_all(&self) -> Result<()> {
        self.check()?;
        kill::kill_all(self, kill::KILL_TIMEOUT)
    }

    /// Removes every directory of this cgroup (with any child cgroups below them), trying
    /// each and returning every failure. A directory already gone is fine; the parent cgroup
    /// is left alone even when empty, other containers share it.
    pub fn remove(&self) -> std::result::Result<(), Vec<Error>> {
        if let Err(e) = self.check() {
            return Err(vec![e]);
        }
        let mut errors = Vec::new();
        for dir in &self.layout.dirs {
            if let Err(mut errs) = control::rmdir_tree(dir) {
                errors.append(&mut errs);
            }
        }
        if errors.is_empty() {
            tracing::debug!(cgroup = %self.name, "removed cgroup");
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The file holding the memory limit: `memory.limit_in_bytes` on v1 and hybrid,
    /// `memory.max` on v2.
    pub fn memory_limit_file(&self) -> PathBuf {
        match self.mode {
            Mode::V2 => self.memory_dir().join("memory.max"),
            Mode::V1 | Mode::Hybrid => self.memory_dir().join("memory.limit_in_bytes"),
        }
    }

    /// Memory charged to the cgroup now (page cache included), in bytes.
    pub fn memory_usage_bytes(&self) -> Result<u64> {
        self.check()?;
        let dir = self.require(Controller::Memory)?;
        match self.mode {
            Mode::V2 => control::read_u64(&dir.join("memory.current")),
            Mode::V1 | Mode::Hybrid => control::read_u64(&dir.join("memory.usage_in_bytes")),
        }
    }

    fn memory_dir(&self) -> &Path {
        &self.layout.memory_dir
    }

    pub(crate) fn require(&self, controller: Controller) -> Result<&Path> {
        self.controller_path(controller)
            .ok_or_else(|| Error::MissingController {
                controller: controller.name(),
                cgroup: self.name.clone(),
                detail: "no v1 hierarchy of it is mounted".into(),
                hint: format!(
                    "mount it (mount -t cgroup -o {0} cgroup /sys/fs/cgroup/{0}) or boot with cgroup_enable={0}",
                    controller.name()
                ),
            })
    }
}
