//! Podman as a peer to compare berth with (isolation probe, benchmarks), with all of its
//! state in a temp dir so the host is untouched.

use std::process::{Command, Output};

use crate::agent::cgroup_dirs_with;
use crate::require_tool;

/// Podman with all of its state in a temp dir: storage (`--root`, `--runroot`), runc's
/// state, locks, events and networks; each call in a private mount namespace whose `/run`
/// is a fresh tmpfs, so the host's `/run` and mount table stay untouched. Its containers'
/// cgroups go under `cgroup_parent`, which the test removes.
pub struct Podman {
    dir: tempfile::TempDir,
    /// The cgroup its containers go under (`--cgroup-parent=/NAME`); removed on drop.
    pub cgroup_parent: String,
}

impl Podman {
    pub fn new(cgroup_parent: String) -> Podman {
        require_tool("podman", "podman").unwrap();
        require_tool("runc", "runc").unwrap();
        require_tool("unshare", "util-linux").unwrap();
        let dir = tempfile::Builder::new()
            .prefix("berth-test-podman-")
            .tempdir()
            .expect("podman temp dir");
        // Ulimits at or below this host's hard limits: runc fails to start a container whose
        // configured limits are above them, and the defaults are.
        let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
        let limit = |name: &str| -> u64 {
            let line = limits
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {limits}"));
            let hard = line[name.len()..]
                .split_whitespace()
                .nth(1)
                .unwrap_or("unlimited");
            hard.parse::<u64>().unwrap_or(u64::MAX).min(1024)
        };
        let (nofile, nproc) = (limit("Max open files"), limit("Max processes"));
        let t = dir.path().display();
        let conf = format!(
            r#"[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{t}/events.log"
lock_type = "file"
tmp_dir = "{t}/tmp"
static_dir = "{t}/root/libpod"
volume_path = "{t}/volumes"

[network]
network_config_dir = "{t}/networks"
"#
        );
        std::fs::write(dir.path().join("containers.conf"), conf).expect("write containers.conf");
        Podman { dir, cgroup_parent }
    }

    /// Runs podman with `args`; panics with its output when it fails.
    pub fn command(&self, args: &[&str]) -> Output {
        let d = self.dir.path();
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount -n -t tmpfs berth-test-run /run && exec "$@""#)
            .arg("sh")
            .arg("podman")
            .arg(format!("--root={}", d.join("root").display()))
            .arg(format!("--runroot={}", d.join("runroot").display()))
            .arg("--storage-driver=overlay")
            .arg(format!("--runtime-flag=root={}", d.join("runc").display()))
            .args(args)
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .output()
            .expect("run podman");
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // conmon leaves its cgroup (`<parent>/conmon`) a moment after `podman rm` returns.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let dirs = cgroup_dirs_with(&self.cgroup_parent);
            for d in &dirs {
                let _ = std::fs::remove_dir(d);
            }
            if dirs.is_empty() || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
