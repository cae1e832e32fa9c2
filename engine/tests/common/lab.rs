//! Real containers for the runtime tests (root): a [`Lab`] is one test's runtime with its own
//! state and run dirs, a cgroup parent with a unique prefix and a one-layer busybox image.
//! Dropping it kills what its containers left running, removes their cgroups and the
//! network namespaces it pinned, and fails the test if anything of it stays on the host.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_engine::cgroups::{CgroupManager, Limits};
use berth_engine::runtime::logs::LogConfig;
use berth_engine::runtime::security::SecurityConfig;
use berth_engine::runtime::{ContainerRequest, NetworkNamespace, ProcessSpec, Runtime};
use berth_engine::sys::netns;
use berth_tests::agent::{berth_bin, cgroup_dirs_with, leaks, unique_prefix};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Docker's default capability mask, as `/proc/PID/status` prints it.
pub const DOCKER_CAPS: &str = "00000000a80425fb";

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
app:x:1000:1000:app:/home/app:/bin/sh\n";
pub const GROUP: &str = "root:x:0:\nwheel:x:10:root\naudio:x:29:nobody\nvideo:x:44:app,nobody\nnogroup:x:65534:\napp:x:1000:\n";

pub fn require_root_and_tools() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the runtime tests need root: they create namespaces, cgroups and mounts"
    );
    assert!(
        Path::new("/bin/busybox").is_file(),
        "test prerequisite missing: /bin/busybox (hint: apt-get install busybox-static)"
    );
}

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub prefix: String,
    pub runtime: Runtime,
    pub layers: Vec<PathBuf>,
    pins: Mutex<Vec<PathBuf>>,
}

impl Lab {
    /// `kind` names the temp dir (`berth-test-<kind>-…`).
    pub fn new(kind: &str) -> Lab {
        require_root_and_tools();
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-test-{kind}-"))
            .tempdir()
            .expect("temp dir");
        let prefix = unique_prefix();
        let cgroups =
            CgroupManager::detect(Path::new("/sys/fs/cgroup"), &prefix).expect("detect cgroups");
        let runtime = Runtime::new(
            &dir.path().join("state"),
            &dir.path().join("run"),
            cgroups,
            berth_bin(),
        );
        let layer = dir.path().join("layers").join("base");
        build_busybox_layer(&layer);
        Lab {
            dir,
            prefix,
            runtime,
            layers: vec![layer],
            pins: Mutex::new(Vec::new()),
        }
    }

    /// A request for `sh -c script` with `security`, PATH=/bin, cwd `/`, hostname `probe`,
    /// a new network namespace and nothing else; tests change fields as they need.
    pub fn request<'a>(
        &'a self,
        id: &'a str,
        script: &str,
        security: SecurityConfig,
    ) -> ContainerRequest<'a> {
        ContainerRequest {
            id,
            hostname: "probe",
            layers: &self.layers,
            process: ProcessSpec {
                args: vec!["sh".into(), "-c".into(), script.into()],
                env: vec!["PATH=/bin".into()],
                cwd: "/".into(),
            },
            limits: Limits::default(),
            network: NetworkNamespace::New,
            etc_files: vec![],
            log: LogConfig::default(),
            mounts: vec![],
            devices: vec![],
            unmasked: false,
            readonly_rootfs: false,
            security,
        }
    }

    /// Removes a finished (or killed) container's cgroup and dirs; its shim may need a
    /// moment to go after the container's end.
    pub fn remove(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(errs) = self.runtime.remove(id) {
            assert!(Instant::now() < deadline, "remove container {id}: {errs:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new network namespace pinned under the lab's dir, removed when the lab is dropped.
    pub fn netns(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join("netns").join(name);
        netns::create(&path).unwrap_or_else(|e| panic!("create netns {}: {e}", path.display()));
        self.pins.lock().expect("pins").push(path.clone());
        path
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Whatever a failed test left running in its containers goes first.
        for dir in cgroup_dirs_with(&self.prefix) {
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for d in cgroup_dirs_with(&self.prefix) {
                let _ = std::fs::remove_dir(&d);
            }
            if cgroup_dirs_with(&self.prefix).is_empty() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut pin_errors = Vec::new();
        for pin in self.pins.lock().map(|p| p.clone()).unwrap_or_default() {
            if let Err(e) = netns::remove(&pin) {
                pin_errors.push(format!("remove netns pin {}: {e}", pin.display()));
            }
        }
        // Shims exit once their container is gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut left = leaks(&self.prefix, self.dir.path());
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            left = leaks(&self.prefix, self.dir.path());
        }
        left.extend(pin_errors);
        if !std::thread::panicking() {
            assert!(left.is_empty(), "left on the host: {left:#?}");
        }
    }
}

/// busybox with its applets, the test's passwd and group, a world-writable /tmp.
pub fn build_busybox_layer(root: &Path) {
    for d in ["bin", "etc", "tmp", "mnt", "root", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir in layer");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|a| *a != "busybox")
    {
        symlink("busybox", root.join("bin").join(applet)).expect("applet link");
    }
    std::fs::write(root.join("etc/passwd"), PASSWD).expect("write passwd");
    std::fs::write(root.join("etc/group"), GROUP).expect("write group");
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod /tmp");
}

/// stdout and stderr of a container, from its JSON-lines log.
pub fn read_log(path: &Path) -> (String, String) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (mut out, mut err) = (String::new(), String::new());
    for line in text.lines() {
        let rec: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("log line {line:?}: {e}"));
        let log = rec["log"].as_str().unwrap_or_default();
        match rec["stream"].as_str() {
            Some("stdout") => out.push_str(log),
            _ => err.push_str(log),
        }
    }
    (out, err)
}

/// `Key:\tvalue` lines of /proc/PID/status.
pub fn status_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}
