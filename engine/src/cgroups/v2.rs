//! Creating a cgroup on a pure cgroup2 tree: enabling controllers down to the parent and
//! writing `memory.max`, `cpu.max` and `pids.max`.

use std::path::Path;

use super::control;
use super::error::{Error, Result};
use super::{undo_create, Cgroup, CgroupManager, Limits, CPU_PERIOD_US};

/// The controllers berth enables for its containers, in the order they are written.
const WANTED: [&str; 3] = ["memory", "pids", "cpu"];

/// What `cgroup.subtree_control` of one directory ended up enabling.
#[derive(Debug, Default)]
struct Enabled {
    controllers: Vec<&'static str>,
    /// Controllers the kernel offered but refused to enable, with its message.
    refused: Vec<(&'static str, String)>,
}

pub(super) fn create(mgr: &CgroupManager, cg: &Cgroup, limits: &Limits) -> Result<()> {
    limits.validate(cg.name())?;
    let root = mgr.root.as_path();

    // Every level from the root down to the parent passes the controllers on to the next.
    let mut dir = root.to_path_buf();
    let mut enabled = enable_controllers(&dir)?;
    for component in mgr.parent.split('/') {
        dir.push(component);
        control::mkdir(&dir)?;
        enabled = enable_controllers(&dir)?;
    }
    for (controller, wanted) in [
        ("memory", limits.memory_bytes.is_some()),
        ("pids", limits.pids.is_some()),
        ("cpu", limits.cpu_millis.is_some()),
    ] {
        if wanted && !enabled.controllers.contains(&controller) {
            return Err(missing(controller, cg.name(), &dir, &enabled));
        }
    }

    let leaf = dir.join(cg.name());
    let created = if control::mkdir(&leaf)? {
        vec![leaf.clone()]
    } else {
        Vec::new()
    };
    write_limits(&leaf, limits).map_err(|e| undo_create(e, &created))
}

fn missing(controller: &'static str, cgroup: &str, parent: &Path, enabled: &Enabled) -> Error {
    let detail = match enabled.refused.iter().find(|(c, _)| *c == controller) {
        Some((_, why)) => why.clone(),
        None => format!(
            "it is not listed in {}",
            parent.join("cgroup.controllers").display()
        ),
    };
    Error::MissingController {
        controller,
        cgroup: cgroup.to_string(),
        detail,
        hint: format!(
            "enable it from the root down (echo +{controller} > cgroup.subtree_control); on a systemd host run berth in a unit with Delegate=yes"
        ),
    }
}

/// Enables the wanted controllers the directory offers in its `cgroup.subtree_control`, and
/// returns which are enabled there afterwards.
fn enable_controllers(dir: &Path) -> Result<Enabled> {
    let available = words(&control::read(&dir.join("cgroup.controllers"))?);
    let subtree = dir.join("cgroup.subtree_control");
    let already = words(&control::read(&subtree)?);
    let mut enabled = Enabled::default();
    let mut to_enable = Vec::new();
    for c in WANTED {
        if already.iter().any(|a| a == c) {
            enabled.controllers.push(c);
        } else if available.iter().any(|a| a == c) {
            to_enable.push(c);
        }
    }
    if to_enable.is_empty() {
        return Ok(enabled);
    }
    let all: Vec<String> = to_enable.iter().map(|c| format!("+{c}")).collect();
    if control::write(&subtree, &all.join(" ")).is_ok() {
        enabled.controllers.extend(to_enable);
        return Ok(enabled);
    }
    // One refused controller fails the whole write; enable the others one by one.
    for c in to_enable {
        match control::write(&subtree, &format!("+{c}")) {
            Ok(()) => enabled.controllers.push(c),
            Err(e) => {
                tracing::warn!(path = %subtree.display(), controller = c, error = %e, "cannot enable cgroup controller");
                enabled.refused.push((c, e.to_string()));
            }
        }
    }
    Ok(enabled)
}

/// The controller names of a `cgroup.controllers` or `cgroup.subtree_control` file.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.trim_start_matches('+').to_string())
        .collect()
}

/// Writes every limit; `None` resets a limit left from an earlier create to unlimited.
fn write_limits(leaf: &Path, limits: &Limits) -> Result<()> {
    let memory = leaf.join("memory.max");
    match limits.memory_bytes {
        Some(bytes) => control::write(&memory, &bytes.to_string())?,
        None => {
            control::write_if_present(&memory, "max")?;
        }
    }
    let cpu = leaf.join("cpu.max");
    match limits.cpu_quota_us() {
        Some(quota) => control::write(&cpu, &format!("{quota} {CPU_PERIOD_US}"))?,
        None => {
            control::write_if_present(&cpu, &format!("max {CPU_PERIOD_US}"))?;
        }
    }
    let pids = leaf.join("pids.max");
    match limits.pids {
        Some(max) => control::write(&pids, &max.to_string())?,
        None => {
            control::write_if_present(&pids, "max")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::super::{Mode, Stats};
    use super::*;

    /// A v2 root as the kernel lays it out, with the parent and leaves pre-made (a tmpfs
    /// does not create control files on mkdir).
    fn v2_root(root_controllers: &str, parent: &str, names: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::write(
            r.join("cgroup.controllers"),
            format!("{root_controllers}\n"),
        )
        .unwrap();
        fs::write(r.join("cgroup.subtree_control"), "").unwrap();
        fs::write(r.join("cgroup.procs"), "1\n").unwrap();
        let p = r.join(parent);
        fs::create_dir_all(&p).unwrap();
        fs::write(
            p.join("cgroup.controllers"),
            format!("{root_controllers}\n"),
        )
        .unwrap();
        fs::write(p.join("cgroup.subtree_control"), "").unwrap();
        for n in names {
            let leaf = p.join(n);
            fs::create_dir_all(&leaf).unwrap();
            for (f, v) in [
                ("cgroup.procs", ""),
                ("cgroup.kill", ""),
                ("memory.max", "max\n"),
                ("memory.current", "8192\n"),
                ("memory.stat", "anon 4096\ninactive_file 1024\n"),
                ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
                ("cpu.max", "max 100000\n"),
                (
                    "cpu.stat",
                    "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n",
                ),
                ("pids.max", "max\n"),
                ("pids.current", "2\n"),
            ] {
                fs::write(leaf.join(f), v).unwrap();
            }
        }
        root
    }

    fn read(path: PathBuf) -> String {
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    #[test]
    fn create_enables_controllers_and_writes_limits() {
        let root = v2_root("cpuset cpu io memory hugetlb pids rdma", "berth", &["web"]);
        let mgr = CgroupManager::with_mode(root.path(), Mode::V2, "berth");
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            cpu_millis: Some(250),
            pids: Some(32),
        };
        let cg = mgr.create("web", &limits).unwrap();
        let r = root.path();
        assert_eq!(read(r.join("cgroup.subtree_control")), "+memory +pids +cpu");
        assert_eq!(
            read(r.join("berth/cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        assert_eq!(read(r.join("berth/web/memory.max")), "67108864");
        assert_eq!(read(r.join("berth/web/cpu.max")), "25000 100000");
        assert_eq!(read(r.join("berth/web/pids.max")), "32");
        assert_eq!(cg.paths(), &[r.join("berth/web")]);
        assert_eq!(cg.memory_limit_file(), r.join("berth/web/memory.max"));
        assert_eq!(cg.memory_usage_bytes().unwrap(), 8192);

        // Again, without limits: controllers already on, limits back to unlimited.
        mgr.create("web", &Limits::default()).unwrap();
        assert_eq!(read(r.join("berth/web/memory.max")), "max");
        assert_eq!(read(r.join("berth/web/cpu.max")), "max 100000");
        assert_eq!(read(r.join("berth/web/pids.max")), "max");
    }

    #[test]
    fn only_offered_controllers_are_enabled() {
        let root = v2_root("memory io", "berth", &["web"]);
        let mgr = CgroupManager::with_mode(root.path(), Mode::V2, "berth");
        mgr.create(
            "web",
            &Limits {
                memory_bytes: Some(1 << 20),
                ..Limits::default()
            },
        )
        .unwrap();
        assert_eq!(read(root.path().join("cgroup.subtree_control")), "+memory");
    }

    #[test]
    fn a_limit_without_its_controller_is_a_clear_error() {
        let root = v2_root("memory io", "berth", &[]);
        let mgr = CgroupManager::with_mode(root.path(), Mode::V2, "berth");
        let err = mgr
            .create(
                "web",
                &Limits {
                    pids: Some(5),
                    ..Limits::default()
                },
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "set pids limit of cgroup web: the pids controller is not available (it is not listed in {}); \
                 hint: enable it from the root down (echo +pids > cgroup.subtree_control); on a systemd host run berth in a unit with Delegate=yes",
                root.path().join("berth/cgroup.controllers").display()
            )
        );
        assert!(!root.path().join("berth/web").exists());
    }

    #[test]
    fn cpu_limits_the_kernel_refuses_are_rejected() {
        let root = v2_root("memory pids cpu", "berth", &["web"]);
        let mgr = CgroupManager::with_mode(root.path(), Mode::V2, "berth");
        let err = mgr
            .create(
                "web",
                &Limits {
                    cpu_millis: Some(5),
                    ..Limits::default()
                },
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "set cpu limit of cgroup web: 5m is below the kernel's minimum of 10m (a quota of 1000us per 100000us period)"
        );
        let err = mgr
            .create(
                "web",
                &Limits {
                    memory_bytes: Some(0),
                    ..Limits::default()
                },
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "set memory limit of cgroup web: 0 bytes leaves no memory to run in; leave it unset for no limit"
        );
    }

    #[test]
    fn nested_parent_enables_every_level() {
        let root = v2_root("memory pids cpu", "berth.slice", &[]);
        let r = root.path();
        let mid = r.join("berth.slice/containers");
        fs::create_dir_all(&mid).unwrap();
        fs::write(mid.join("cgroup.controllers"), "memory pids cpu\n").unwrap();
        fs::write(mid.join("cgroup.subtree_control"), "memory\n").unwrap();
        let mgr = CgroupManager::with_mode(r, Mode::V2, "berth.slice/containers");
        let leaf = mid.join("web");
        fs::create_dir(&leaf).unwrap();
        fs::write(leaf.join("pids.max"), "max\n").unwrap();
        let cg = mgr
            .create(
                "web",
                &Limits {
                    pids: Some(9),
                    ..Limits::default()
                },
            )
            .unwrap();
        assert_eq!(read(mid.join("cgroup.subtree_control")), "+pids +cpu");
        assert_eq!(read(leaf.join("pids.max")), "9");
        assert_eq!(cg.paths(), &[leaf]);
    }

    #[test]
    fn kill_all_writes_cgroup_kill_and_stats_read_v2_files() {
        let root = v2_root("memory pids cpu", "berth", &["web"]);
        let mgr = CgroupManager::with_mode(root.path(), Mode::V2, "berth");
        let cg = mgr.open("web");
        cg.kill_all().unwrap();
        assert_eq!(read(root.path().join("berth/web/cgroup.kill")), "1");
        assert_eq!(
            cg.stats().unwrap(),
            Stats {
                cpu_usage_usec: Some(1234),
                memory_usage_bytes: Some(8192),
                memory_working_set_bytes: Some(7168),
                pids: Some(2),
                oom_kills: Some(1),
            }
        );
        assert_eq!(cg.oom_kill_count().unwrap(), 1);
    }
}
