//! Creating a cgroup on v1 (and hybrid) hierarchies and writing its limits.

use std::path::{Path, PathBuf};

use super::control;
use super::detect::Controller;
use super::error::Result;
use super::{undo_create, Cgroup, CgroupManager, Limits, CPU_PERIOD_US};

/// v1 spelling of "no limit" for `memory.limit_in_bytes` and `cpu.cfs_quota_us`.
const UNLIMITED: &str = "-1";

/// Makes the cgroup's directory in every v1 hierarchy (and under `unified` in hybrid mode),
/// then writes the limits. The limits are checked before anything is made.
pub(super) fn create(mgr: &CgroupManager, cg: &Cgroup, limits: &Limits) -> Result<()> {
    limits.validate(cg.name())?;
    // A requested limit without its controller fails before the host is touched.
    if limits.memory_bytes.is_some() {
        cg.require(Controller::Memory)?;
    }
    if limits.cpu_millis.is_some() {
        cg.require(Controller::Cpu)?;
    }
    if limits.pids.is_some() {
        cg.require(Controller::Pids)?;
    }

    let mut created = Vec::new();
    let result = make_all_dirs(mgr, cg, &mut created).and_then(|()| write_limits(cg, limits));
    result.map_err(|e| undo_create(e, &created))
}

fn make_all_dirs(mgr: &CgroupManager, cg: &Cgroup, created: &mut Vec<PathBuf>) -> Result<()> {
    for h in &mgr.hierarchies {
        let cpuset = h.controllers.contains(&Controller::Cpuset);
        make_dirs(&h.dir, &mgr.parent, cg.name(), cpuset, created)?;
    }
    if let Some(unified) = mgr.unified_root() {
        // Hybrid: membership in the cgroup2 tree too, which gives `cgroup.kill`.
        make_dirs(&unified, &mgr.parent, cg.name(), false, created)?;
    }
    if let Some(systemd) = &mgr.systemd {
        // The named systemd hierarchy: no controller, but where systemd looks for a service's
        // processes; berth's must be in berth's own cgroup there too.
        make_dirs(systemd, &mgr.parent, cg.name(), false, created)?;
    }
    Ok(())
}

/// Creates `<base>/<parent>/<name>` one level at a time, recording the leaf if it is new.
fn make_dirs(
    base: &Path,
    parent: &str,
    name: &str,
    cpuset: bool,
    created: &mut Vec<PathBuf>,
) -> Result<()> {
    let mut dir = base.to_path_buf();
    for component in parent.split('/') {
        let up = dir.clone();
        dir.push(component);
        control::mkdir(&dir)?;
        if cpuset {
            init_cpuset(&up, &dir)?;
        }
    }
    let leaf = dir.join(name);
    if control::mkdir(&leaf)? {
        created.push(leaf.clone());
    }
    if cpuset {
        init_cpuset(&dir, &leaf)?;
    }
    Ok(())
}

/// A v1 cpuset starts with empty `cpuset.cpus` and `cpuset.mems`, and no task can join it
/// until both are set; copy them from the parent (unless `cgroup.clone_children` did).
fn init_cpuset(parent: &Path, dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = control::read(&dir.join(file))?;
        if own.trim().is_empty() {
            let inherited = control::read(&parent.join(file))?;
            control::write(&dir.join(file), inherited.trim())?;
        }
    }
    Ok(())
}

/// Writes every limit; `None` resets a limit left from an earlier create to unlimited.
fn write_limits(cg: &Cgroup, limits: &Limits) -> Result<()> {
    if let Some(dir) = cg.controller_path(Controller::Memory) {
        let file = dir.join("memory.limit_in_bytes");
        match limits.memory_bytes {
            Some(bytes) => control::write(&file, &bytes.to_string())?,
            None => {
                control::write_if_present(&file, UNLIMITED)?;
            }
        }
    }
    if let Some(dir) = cg.controller_path(Controller::Cpu) {
        let quota = dir.join("cpu.cfs_quota_us");
        match limits.cpu_quota_us() {
            Some(quota_us) => {
                control::write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                control::write(&quota, &quota_us.to_string())?;
            }
            None => {
                control::write_if_present(&quota, UNLIMITED)?;
            }
        }
    }
    if let Some(dir) = cg.controller_path(Controller::Pids) {
        let file = dir.join("pids.max");
        match limits.pids {
            Some(max) => control::write(&file, &max.to_string())?,
            None => {
                control::write_if_present(&file, "max")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::{Error, Mode, Stats};
    use super::*;

    /// Lays out a v1 root like the kernel would: hierarchies with their root files, and the
    /// files a new cgroup `<parent>/<name>` gets (a tmpfs does not make them on mkdir).
    fn v1_root(
        combined_cpu: bool,
        hybrid: bool,
        parent: &str,
        names: &[&str],
    ) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let mut hierarchies = vec![
            "memory", "pids", "cpuset", "freezer", "devices", "blkio", "systemd",
        ];
        if combined_cpu {
            hierarchies.push("cpu,cpuacct");
        } else {
            hierarchies.extend(["cpu", "cpuacct"]);
        }
        for h in &hierarchies {
            let base = root.path().join(h);
            fs::create_dir_all(&base).unwrap();
            fs::write(base.join("cgroup.procs"), "1\n").unwrap();
            if *h == "cpuset" {
                fs::write(base.join("cpuset.cpus"), "0-1\n").unwrap();
                fs::write(base.join("cpuset.mems"), "0\n").unwrap();
            }
            let mut dirs = vec![base.join(parent)];
            dirs.extend(names.iter().map(|n| base.join(parent).join(n)));
            for dir in dirs {
                fs::create_dir_all(&dir).unwrap();
                fs::write(dir.join("cgroup.procs"), "").unwrap();
                let files: &[(&str, &str)] = match *h {
                    "memory" => &[
                        ("memory.limit_in_bytes", "9223372036854771712\n"),
                        ("memory.usage_in_bytes", "4096\n"),
                        (
                            "memory.stat",
                            "cache 1024\ninactive_file 0\ntotal_inactive_file 1024\n",
                        ),
                        (
                            "memory.oom_control",
                            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                        ),
                    ],
                    "pids" => &[("pids.max", "max\n"), ("pids.current", "3\n")],
                    "cpuset" => &[("cpuset.cpus", "\n"), ("cpuset.mems", "\n")],
                    "cpu" => &[
                        ("cpu.cfs_period_us", "100000\n"),
                        ("cpu.cfs_quota_us", "-1\n"),
                    ],
                    "cpuacct" => &[("cpuacct.usage", "5000000\n")],
                    "cpu,cpuacct" => &[
                        ("cpu.cfs_period_us", "100000\n"),
                        ("cpu.cfs_quota_us", "-1\n"),
                        ("cpuacct.usage", "7000\n"),
                    ],
                    "freezer" => &[("freezer.state", "THAWED\n")],
                    _ => &[],
                };
                for (f, v) in files {
                    fs::write(dir.join(f), v).unwrap();
                }
            }
        }
        if hybrid {
            let unified = root.path().join("unified");
            fs::create_dir_all(unified.join(parent)).unwrap();
            for n in names {
                fs::create_dir_all(unified.join(parent).join(n)).unwrap();
                fs::write(unified.join(parent).join(n).join("cgroup.procs"), "").unwrap();
            }
        }
        root
    }

    fn read(path: PathBuf) -> String {
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    #[test]
    fn create_writes_limits_and_copies_cpuset() {
        let root = v1_root(false, false, "berth", &["web"]);
        let mgr = CgroupManager::with_mode(root.path(), Mode::V1, "berth");
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            cpu_millis: Some(500),
            pids: Some(100),
        };
        let cg = mgr.create("web", &limits).unwrap();
        let r = root.path();
        assert_eq!(
            read(r.join("memory/berth/web/memory.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(read(r.join("cpu/berth/web/cpu.cfs_period_us")), "100000");
        assert_eq!(read(r.join("cpu/berth/web/cpu.cfs_quota_us")), "50000");
        assert_eq!(read(r.join("pids/berth/web/pids.max")), "100");
        assert_eq!(read(r.join("cpuset/berth/cpuset.cpus")), "0-1");
        assert_eq!(read(r.join("cpuset/berth/web/cpuset.cpus")), "0-1");
        assert_eq!(read(r.join("cpuset/berth/web/cpuset.mems")), "0");
        assert_eq!(
            cg.memory_limit_file(),
            r.join("memory/berth/web/memory.limit_in_bytes")
        );
        assert_eq!(cg.memory_usage_bytes().unwrap(), 4096);
        let names: Vec<PathBuf> = cg
            .paths()
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().to_path_buf())
            .collect();
        let expected: Vec<PathBuf> = [
            "memory", "pids", "cpu", "cpuacct", "cpuset", "freezer", "devices", "blkio",
        ]
        .iter()
        .map(|h| Path::new(h).join("berth/web"))
        .collect();
        assert_eq!(names, expected);
        // name=systemd is not a controller berth uses.
        assert!(cg.paths().iter().all(|p| !p.starts_with(r.join("systemd"))));
    }

    #[test]
    fn create_again_resets_limits_left_unset() {
        let root = v1_root(true, false, "berth", &["web"]);
        let mgr = CgroupManager::with_mode(root.path(), Mode::V1, "berth");
        let full = Limits {
            memory_bytes: Some(1 << 30),
            cpu_millis: Some(1500),
            pids: Some(64),
        };
        mgr.create("web", &full).unwrap();
        let r = root.path();
        assert_eq!(
            read(r.join("cpu,cpuacct/berth/web/cpu.cfs_quota_us")),
            "150000"
        );
        mgr.create("web", &Limits::default()).unwrap();
        assert_eq!(read(r.join("memory/berth/web/memory.limit_in_bytes")), "-1");
        assert_eq!(read(r.join("cpu,cpuacct/berth/web/cpu.cfs_quota_us")), "-1");
        assert_eq!(read(r.join("pids/berth/web/pids.max")), "max");
    }

    #[test]
    fn combined_cpu_cpuacct_is_one_directory() {
        let root = v1_root(true, false, "berth", &["web"]);
        let mgr = CgroupManager::with_mode(root.path(), Mode::V1, "berth");
        let cg = mgr.open("web");
        let r = root.path();
        assert_eq!(
            cg.controller_path(Controller::Cpu),
            Some(r.join("cpu,cpuacct/berth/web").as_path())
        );
        assert_eq!(
            cg.controller_path(Controller::Cpuacct),
            Some(r.join("cpu,cpuacct/berth/web").as_path())
        );
        assert_eq!(cg.paths().len(), 7);
    }

    #[test]
    fn hybrid_adds_the_unified_directory_and_writes_pids_everywhere() {
        let root = v1_root(false, true, "berth", &["web"]);
        let mgr = CgroupManager::with_mode(root.path(), Mode::Hybrid, "berth");
        let cg = mgr.create("web", &Limits::default()).unwrap();
        let r = root.path();
        assert_eq!(cg.paths().last().unwrap(), &r.join("unified/berth/web"));
        assert_eq!(
            cg.unified_path(),
            Some(r.join("unified/berth/web").as_path())
        );
        assert_eq!(cg.paths().len(), 9);
        cg.add_process(4242).unwrap();
        for dir in cg.paths() {
            assert_eq!(read(dir.join("cgroup.procs")), "4242", "{}", dir.display());
        }
        assert_eq!(cg.pids().unwrap(), vec![4242]);
    }

    #[test]
    fn kill_all_freezes_and_thaws_and_stats_read_v1_files() {
        let root = v1_root(false, false, "berth", &["web"]);
        let mgr = CgroupManager::with_mode(root.path(), Mode::V1, "berth");
        let cg = mgr.create("web", &Limits::default()).unwrap();
        cg.kill_all().unwrap();
        assert_eq!(
            read(root.path().join("freezer/berth/web/freezer.state")),
            "THAWED"
        );
        assert_eq!(
            cg.stats().unwrap(),
            Stats {
                cpu_usage_usec: Some(5000),
                memory_usage_bytes: Some(4096),
                memory_working_set_bytes: Some(3072),
                pids: Some(3),
                oom_kills: Some(2),
            }
        );
        assert_eq!(cg.oom_kill_count().unwrap(), 2);
    }

    #[test]
    fn kill_all_times_out_naming_the_pids_that_stay() {
        let root = v1_root(true, false, "berth", &["web"]);
        let mgr = CgroupManager::with_mode(root.path(), Mode::V1, "berth");
        let cg = mgr.open("web");
        // A pid that cannot be ours and never leaves the (tmpfs) cgroup.proc file.
        fs::write(
            root.path().join("memory/berth/web/cgroup.procs"),
            "2147483646\n",
        )
        .unwrap();
        let err =
            super::super::kill::kill_all(&cg, std::time::Duration::from_millis(50)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "kill processes of cgroup {}: pids [2147483646] still there after 50ms; hint: a process stuck in \
                 uninterruptible sleep (state D) cannot die until its I/O completes; see /proc/PID/stack",
                root.path().join("memory/berth/web").display()
            )
        );
        assert_eq!(
            read(root.path().join("freezer/berth/web/freezer.state")),
            "THAWED"
        );
    }

    #[test]
    fn missing_controller_for_a_limit_fails_before_creating_anything() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("memory")).unwrap();
        let mgr = CgroupManager::with_mode(root.path(), Mode::V1, "berth");
        let err = mgr
            .create(
                "web",
                &Limits {
                    pids: Some(10),
                    ..Limits::default()
                },
            )
            .unwrap_err();
        assert!(matches!(
            err,
            Error::MissingController {
                controller: "pids",
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "set pids limit of cgroup web: the pids controller is not available (no v1 hierarchy of it is mounted); \
             hint: mount it (mount -t cgroup -o pids cgroup /sys/fs/cgroup/pids) or boot with cgroup_enable=pids"
        );
        assert!(!root.path().join("memory/berth").exists());
    }

    #[test]
    fn failed_create_removes_the_new_leaf_but_keeps_the_parent() {
        // The memory hierarchy has no control files: writing the limit fails after mkdir.
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("memory")).unwrap();
        fs::create_dir(root.path().join("pids")).unwrap();
        let mgr = CgroupManager::with_mode(root.path(), Mode::V1, "berth");
        let err = mgr
            .create(
                "web",
                &Limits {
                    memory_bytes: Some(1 << 20),
                    ..Limits::default()
                },
            )
            .unwrap_err();
        let file = root.path().join("memory/berth/web/memory.limit_in_bytes");
        assert!(
            err.to_string().starts_with(&format!(
                "write {}: No such file or directory",
                file.display()
            )),
            "{err}"
        );
        assert!(!root.path().join("memory/berth/web").exists());
        assert!(!root.path().join("pids/berth/web").exists());
        assert!(root.path().join("memory/berth").is_dir());
    }

    #[test]
    fn remove_tries_every_dir_and_parent_removal_cleans_up() {
        let root = tempfile::tempdir().unwrap();
        for h in ["memory", "pids", "cpu,cpuacct"] {
            fs::create_dir(root.path().join(h)).unwrap();
        }
        let mgr = CgroupManager::with_mode(root.path(), Mode::V1, "berth-t");
        let cg = mgr.create("a", &Limits::default()).unwrap();
        let other = mgr.create("b", &Limits::default()).unwrap();
        // A stray file makes one rmdir fail, as a busy cgroup would; the others still go.
        fs::write(root.path().join("pids/berth-t/a/stray"), "").unwrap();
        let errs = cg.remove().unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().starts_with(&format!(
            "remove cgroup {}: Directory not empty",
            root.path().join("pids/berth-t/a").display()
        )));
        assert!(!root.path().join("memory/berth-t/a").exists());
        assert!(!root.path().join("cpu,cpuacct/berth-t/a").exists());
        assert!(
            root.path().join("memory/berth-t").is_dir(),
            "the parent stays"
        );
        fs::remove_file(root.path().join("pids/berth-t/a/stray")).unwrap();
        cg.remove().unwrap();
        assert!(other.paths().iter().all(|p| p.is_dir()));
        mgr.remove_parent().unwrap();
        for h in ["memory", "pids", "cpu,cpuacct"] {
            assert!(!root.path().join(h).join("berth-t").exists(), "{h}");
        }
    }
}
