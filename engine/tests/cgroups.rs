//! Cgroups on the real host (root): detection, limits in the kernel's files, real processes
//! placed, listed and killed, and every directory removed afterwards.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_engine::cgroups::{CgroupManager, Limits, Mode};
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};

const ROOT: &str = "/sys/fs/cgroup";

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the cgroups tests need root: they create cgroups under {ROOT}; run them with sudo"
    );
}

/// A parent cgroup name no other test or run uses.
fn unique_parent() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "berth-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Serializes the tests that run processes: their orphans come to this process (the
/// subreaper), and reaping "any zombie child" is only safe while no other test has children.
static PROCESSES: Mutex<()> = Mutex::new(());

/// Kills the test's processes and removes its parent cgroup even when an assertion fails.
struct Cleanup {
    mgr: CgroupManager,
    children: Vec<Child>,
    cgroups: Vec<&'static str>,
    _serial: MutexGuard<'static, ()>,
}

impl Cleanup {
    /// Also makes this test process the reaper of its orphans: a killed shell leaves its
    /// children to the nearest subreaper, and `reap_orphans` collects them, so no zombie
    /// outlives the test.
    fn new(mgr: &CgroupManager, cgroups: &[&'static str]) -> Cleanup {
        let serial = PROCESSES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        nix::sys::prctl::set_child_subreaper(true).expect("prctl PR_SET_CHILD_SUBREAPER");
        Cleanup {
            mgr: mgr.clone(),
            children: Vec::new(),
            cgroups: cgroups.to_vec(),
            _serial: serial,
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.cgroups {
            if let Err(e) = self.mgr.open(name).kill_all() {
                eprintln!("cleanup: {e}");
            }
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        reap_orphans();
        if let Err(errs) = self.mgr.remove_parent() {
            for e in errs {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Reaps every zombie child of this process: after the tracked children are waited for,
/// those are the orphans a killed shell handed over (tests with processes run one at a time).
fn reap_orphans() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut reaped = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
        let Some(end) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[end + 1..].split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&me.as_str()) {
            nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
                .unwrap_or_else(|e| panic!("waitpid {pid}: {e}"));
            reaped.push(pid);
        }
    }
    reaped
}

/// Every directory named `parent` directly under any hierarchy of the root.
fn leftovers(parent: &str) -> Vec<PathBuf> {
    fs::read_dir(ROOT)
        .unwrap_or_else(|e| panic!("read {ROOT}: {e}"))
        .flatten()
        .map(|h| h.path().join(parent))
        .filter(|p| p.exists())
        .collect()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

#[test]
fn detect_finds_hybrid_on_this_host() {
    require_root();
    let unified = Path::new(ROOT).join("unified");
    let fs_type = statfs(&unified)
        .unwrap_or_else(|e| {
            panic!(
                "statfs {}: {e}; this test expects the hybrid layout of the test machine",
                unified.display()
            )
        })
        .filesystem_type();
    assert_eq!(
        fs_type,
        CGROUP2_SUPER_MAGIC,
        "{} is not a cgroup2 mount; this test expects the hybrid layout of the test machine",
        unified.display()
    );
    let mgr = CgroupManager::detect(Path::new(ROOT), "berth-test-detect").unwrap();
    assert_eq!(mgr.mode(), Mode::Hybrid);
    // detect does no I/O beyond reading: nothing may appear for the parent.
    assert_eq!(leftovers("berth-test-detect"), Vec::<PathBuf>::new());
}

#[test]
fn create_limit_place_kill_and_remove_on_the_host() {
    require_root();
    let parent = unique_parent();
    let mgr = CgroupManager::detect(Path::new(ROOT), &parent).unwrap();
    let mut guard = Cleanup::new(&mgr, &["web"]);

    let limits = Limits {
        memory_bytes: Some(64 * 1024 * 1024),
        cpu_millis: Some(500),
        pids: Some(64),
    };
    let cg = mgr.create("web", &limits).unwrap();
    assert_eq!(read(&cg.memory_limit_file()), "67108864");
    assert_eq!(
        cg.memory_limit_file(),
        Path::new(ROOT).join(format!("memory/{parent}/web/memory.limit_in_bytes"))
    );
    let cpu = Path::new(ROOT).join(format!("cpu/{parent}/web"));
    assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(
        read(&Path::new(ROOT).join(format!("pids/{parent}/web/pids.max"))),
        "64"
    );
    let cpuset = Path::new(ROOT).join(format!("cpuset/{parent}/web"));
    assert_eq!(
        read(&cpuset.join("cpuset.cpus")),
        read(&Path::new(ROOT).join("cpuset/cpuset.cpus"))
    );
    for dir in cg.paths() {
        assert!(dir.is_dir(), "{} was not created", dir.display());
    }
    assert!(
        cg.paths()
            .contains(&Path::new(ROOT).join(format!("unified/{parent}/web"))),
        "{:?}",
        cg.paths()
    );

    // Create is idempotent: again, with a new memory limit.
    let cg = mgr
        .create(
            "web",
            &Limits {
                memory_bytes: Some(128 * 1024 * 1024),
                ..limits.clone()
            },
        )
        .unwrap();
    assert_eq!(read(&cg.memory_limit_file()), "134217728");

    // A real process, placed in every hierarchy.
    let sleeper = Command::new("sleep")
        .arg("1000")
        .spawn()
        .expect("spawn sleep");
    let sleeper_pid = sleeper.id() as i32;
    guard.children.push(sleeper);
    cg.add_process(sleeper_pid).unwrap();
    assert_eq!(cg.pids().unwrap(), vec![sleeper_pid]);
    let membership = read(Path::new(&format!("/proc/{sleeper_pid}/cgroup")));
    for controller in ["memory", "pids", "cpu", "cpuset", "freezer"] {
        let line = format!(":{controller}:/{parent}/web");
        assert!(
            membership.lines().any(|l| l.ends_with(&line)),
            "{line} not in {membership}"
        );
    }
    assert!(
        membership.lines().any(|l| l == format!("0::/{parent}/web")),
        "{membership}"
    );

    // A second process that allocates memory once inside, and forks a child of its own.
    let mut shell = Command::new("sh")
        .arg("-c")
        .arg(r#"read _; x=$(head -c 8000000 /dev/zero | tr '\0' a); sleep 1000 & echo ready; wait"#)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let shell_pid = shell.id() as i32;
    let mut stdin = shell.stdin.take().unwrap();
    let stdout = shell.stdout.take().unwrap();
    guard.children.push(shell);
    cg.add_process(shell_pid).unwrap();
    stdin.write_all(b"go\n").unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let usage = cg.memory_usage_bytes().unwrap();
    assert!(
        usage >= 8_000_000,
        "memory usage {usage} after allocating 8 MB"
    );
    let stats = cg.stats().unwrap();
    assert!(stats.memory_usage_bytes.unwrap() >= 8_000_000, "{stats:?}");
    assert_eq!(stats.oom_kills, Some(0), "{stats:?}");
    assert_eq!(cg.oom_kill_count().unwrap(), 0);
    let pids = cg.pids().unwrap();
    assert!(
        pids.contains(&sleeper_pid) && pids.contains(&shell_pid),
        "{pids:?}"
    );
    assert_eq!(
        pids.len(),
        3,
        "the sleeper, the shell and its sleep: {pids:?}"
    );

    let started = Instant::now();
    cg.kill_all().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(cg.pids().unwrap(), Vec::<i32>::new());
    for mut child in guard.children.drain(..) {
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    }
    // The shell's own `sleep` was orphaned by the kill and came to this process.
    assert_eq!(reap_orphans().len(), 1);

    cg.remove().unwrap();
    for dir in cg.paths() {
        assert!(!dir.exists(), "{} is still there", dir.display());
    }
    // Removing again is fine: missing directories are not errors.
    cg.remove().unwrap();
    // The parent stays for the other containers.
    assert!(Path::new(ROOT).join("memory").join(&parent).is_dir());

    mgr.remove_parent().unwrap();
    assert_eq!(leftovers(&parent), Vec::<PathBuf>::new());
}

#[test]
fn kill_all_of_an_empty_cgroup_and_limits_reset_on_the_host() {
    require_root();
    let parent = unique_parent();
    let mgr = CgroupManager::detect(Path::new(ROOT), &parent).unwrap();
    let _guard = Cleanup::new(&mgr, &["db"]);
    let cg = mgr
        .create(
            "db",
            &Limits {
                memory_bytes: Some(32 * 1024 * 1024),
                cpu_millis: Some(250),
                pids: Some(10),
            },
        )
        .unwrap();
    cg.kill_all().unwrap();
    assert_eq!(cg.pids().unwrap(), Vec::<i32>::new());
    let freezer = Path::new(ROOT).join(format!("freezer/{parent}/db/freezer.state"));
    assert_eq!(read(&freezer), "THAWED");

    mgr.create("db", &Limits::default()).unwrap();
    let unlimited: u64 = read(&cg.memory_limit_file()).parse().unwrap();
    assert!(unlimited > 1 << 60, "memory limit {unlimited} after reset");
    assert_eq!(
        read(&Path::new(ROOT).join(format!("cpu/{parent}/db/cpu.cfs_quota_us"))),
        "-1"
    );
    assert_eq!(
        read(&Path::new(ROOT).join(format!("pids/{parent}/db/pids.max"))),
        "max"
    );

    let err = mgr
        .create(
            "db",
            &Limits {
                cpu_millis: Some(1),
                ..Limits::default()
            },
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "set cpu limit of cgroup db: 1m is below the kernel's minimum of 10m (a quota of 1000us per 100000us period)"
    );

    cg.remove().unwrap();
    mgr.remove_parent().unwrap();
    assert_eq!(leftovers(&parent), Vec::<PathBuf>::new());
}

/// A shell that forks `sleep`s as fast as it can once released, so a kill that reads the
/// pid list once would miss the newest ones.
struct Forker {
    child: Child,
    gate: std::process::ChildStdin,
}

/// Spawns the forker, still held at its gate so none of its children starts outside the
/// cgroup.
fn spawn_forker() -> Forker {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("read _; while :; do sleep 100 & done")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh");
    let gate = child.stdin.take().unwrap();
    Forker { child, gate }
}

/// Places the forker in `cg`, then lets it fork.
fn place_and_release(
    cg: &berth_engine::cgroups::Cgroup,
    forker: Forker,
    guard: &mut Cleanup,
) -> i32 {
    let Forker { child, mut gate } = forker;
    let pid = child.id() as i32;
    guard.children.push(child);
    cg.add_process(pid).unwrap();
    gate.write_all(b"go\n").unwrap();
    pid
}

fn wait_for_pids(cg: &berth_engine::cgroups::Cgroup, at_least: usize) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = cg.pids().unwrap();
        if pids.len() >= at_least {
            return pids;
        }
        assert!(Instant::now() < deadline, "only {pids:?} in the cgroup");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn v1_freeze_kill_thaw_stops_a_forking_process() {
    require_root();
    let parent = unique_parent();
    // The v1 hierarchies of this host without `unified`: the pure-v1 path, freezer included.
    let mgr = CgroupManager::with_mode(Path::new(ROOT), Mode::V1, &parent);
    let mut guard = Cleanup::new(&mgr, &["forker"]);
    let cg = mgr
        .create(
            "forker",
            &Limits {
                pids: Some(200),
                ..Limits::default()
            },
        )
        .unwrap();
    assert!(cg.unified_path().is_none());
    assert_eq!(cg.paths().len(), 8, "{:?}", cg.paths());
    let pid = place_and_release(&cg, spawn_forker(), &mut guard);
    let before = wait_for_pids(&cg, 20);
    assert!(before.contains(&pid), "{before:?}");

    cg.kill_all().unwrap();
    assert_eq!(cg.pids().unwrap(), Vec::<i32>::new());
    assert_eq!(
        read(&Path::new(ROOT).join(format!("freezer/{parent}/forker/freezer.state"))),
        "THAWED"
    );
    let status = guard.children.pop().unwrap().wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    let reaped = reap_orphans();
    for p in before.iter().filter(|p| **p != pid) {
        assert!(
            reaped.contains(p),
            "{p} of {before:?} was not killed and reaped: {reaped:?}"
        );
    }

    cg.remove().unwrap();
    mgr.remove_parent().unwrap();
    assert_eq!(leftovers(&parent), Vec::<PathBuf>::new());
}

#[test]
fn v2_path_on_the_unified_tree_places_and_kills_with_cgroup_kill() {
    require_root();
    let unified = Path::new(ROOT).join("unified");
    let parent = unique_parent();
    // This host's cgroup2 tree offers no memory, pids or cpu controller: the v2 code path
    // still creates, places, kills and removes, and a limit is refused with a clear error.
    let mgr = CgroupManager::with_mode(&unified, Mode::V2, &parent);
    let mut guard = Cleanup::new(&mgr, &["web"]);
    let offered = read(&unified.join("cgroup.controllers"));
    assert!(
        !offered.split_whitespace().any(|c| c == "memory"),
        "this test expects the hybrid host's unified tree without memory, found {offered:?}"
    );
    let err = mgr
        .create(
            "web",
            &Limits {
                memory_bytes: Some(1 << 26),
                ..Limits::default()
            },
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "set memory limit of cgroup web: the memory controller is not available (it is not listed in {}); \
             hint: enable it from the root down (echo +memory > cgroup.subtree_control); on a systemd host run berth in a unit with Delegate=yes",
            unified.join(&parent).join("cgroup.controllers").display()
        )
    );
    assert!(!unified.join(&parent).join("web").exists());

    let cg = mgr.create("web", &Limits::default()).unwrap();
    assert_eq!(cg.paths(), &[unified.join(&parent).join("web")]);
    let pid = place_and_release(&cg, spawn_forker(), &mut guard);
    let before = wait_for_pids(&cg, 20);
    assert!(before.contains(&pid), "{before:?}");
    cg.kill_all().unwrap();
    assert_eq!(cg.pids().unwrap(), Vec::<i32>::new());
    let status = guard.children.pop().unwrap().wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    let reaped = reap_orphans();
    for p in before.iter().filter(|p| **p != pid) {
        assert!(
            reaped.contains(p),
            "{p} of {before:?} was not killed and reaped: {reaped:?}"
        );
    }

    cg.remove().unwrap();
    assert!(!cg.paths()[0].exists());
    mgr.remove_parent().unwrap();
    assert_eq!(leftovers(&parent), Vec::<PathBuf>::new());
    assert!(!unified.join(&parent).exists());
}

/// Runs `script` in a shell placed in `cg` before it starts, and returns its stdout.
fn run_in(cg: &berth_engine::cgroups::Cgroup, script: &str, guard: &mut Cleanup) -> String {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("read _; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh");
    let mut gate = child.stdin.take().unwrap();
    cg.add_process(child.id() as i32).unwrap();
    gate.write_all(b"go\n").unwrap();
    drop(gate);
    let out = child.wait_with_output().unwrap();
    let _ = guard;
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn v2_device_filter_allows_exactly_the_listed_devices() {
    require_root();
    let unified = Path::new(ROOT).join("unified");
    let parent = unique_parent();
    // The eBPF program is what cgroup v2 enforces devices with; this host's unified tree
    // runs it for real (the v1 devices controller is not involved for this cgroup).
    let mgr = CgroupManager::with_mode(&unified, Mode::V2, &parent);
    let mut guard = Cleanup::new(&mgr, &["dev"]);
    let cg = mgr.create("dev", &Limits::default()).unwrap();
    let only_null = [
        berth_engine::cgroups::DeviceRule::new('c', Some(1), Some(3), "rw"),
        berth_engine::cgroups::DeviceRule::new('c', Some(1), Some(5), "r"),
    ];
    cg.set_devices(&only_null).unwrap();
    let out = run_in(
        &cg,
        "echo x > /dev/null && echo null-ok; head -c 1 /dev/zero >/dev/null && echo zero-read-ok; \
         echo x > /dev/zero 2>/dev/null || echo zero-write-denied; head -c 1 /dev/full 2>/dev/null || echo full-denied",
        &mut guard,
    );
    assert_eq!(
        out,
        "null-ok\nzero-read-ok\nzero-write-denied\nfull-denied\n"
    );
    // The same shell outside the cgroup reads /dev/full: the filter is what refused it.
    let free = Command::new("sh")
        .arg("-c")
        .arg("head -c 1 /dev/full >/dev/null && echo full-ok")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&free.stdout), "full-ok\n");
    drop(guard);
    assert_eq!(leftovers(&parent), Vec::<PathBuf>::new());
}
