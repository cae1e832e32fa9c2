//! Running containers: the agent side ([`Runtime`]: dirs, cgroups, spawning and stopping
//! shims) and the shim side ([`shim::main`], [`init`]) that creates the container itself.

pub mod atomic;
pub mod config;
pub mod exit;
pub mod init;
pub mod logs;
pub mod mounts;
pub mod process;
pub mod security;
pub mod shim;
pub mod watch;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cgroups::{CgroupManager, Limits};
pub use config::{NetworkNamespace, ShimConfig};
pub use exit::ExitRecord;
pub use process::{resolve as resolve_process, ImageDefaults, ProcessOverrides, ProcessSpec};
pub use watch::ShimWatch;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup for container {id}: {message}")]
    Cgroup { id: String, message: String },
    #[error(
        "start shim {exe}: {source} (hint: the agent must be able to re-execute its own binary)"
    )]
    SpawnShim {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error("shim for container {id} exited without reporting (see {log})")]
    ShimSilent { id: String, log: PathBuf },
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RuntimeError + 'a {
    move |source| RuntimeError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One container to start.
pub struct ContainerRequest<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    /// Image layer dirs, lowest first.
    pub layers: &'a [PathBuf],
    pub process: ProcessSpec,
    pub limits: Limits,
    pub network: NetworkNamespace,
    /// (host file, path in the container): resolv.conf, hosts, hostname.
    pub etc_files: Vec<(PathBuf, String)>,
    pub log: logs::LogConfig,
    pub mounts: Vec<mounts::MountConfig>,
    pub devices: Vec<mounts::DeviceConfig>,
    /// Docker's masked and read-only paths apply unless this is set (privileged).
    pub unmasked: bool,
    pub readonly_rootfs: bool,
    /// Capabilities, seccomp, user, rlimits, sysctls.
    pub security: security::SecurityConfig,
}

/// A container whose process runs.
pub struct Started {
    pub shim_pid: i32,
    pub shim_start_time: u64,
    pub init_pid: i32,
    pub watch: ShimWatch,
}

pub struct Runtime {
    state_dir: PathBuf,
    run_dir: PathBuf,
    cgroups: CgroupManager,
    exe: PathBuf,
}

impl Runtime {
    /// `exe` is the berth binary that provides `berth shim`.
    pub fn new(state_dir: &Path, run_dir: &Path, cgroups: CgroupManager, exe: PathBuf) -> Runtime {
        Runtime {
            state_dir: state_dir.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            cgroups,
            exe,
        }
    }

    pub fn cgroups(&self) -> &CgroupManager {
        &self.cgroups
    }

    /// The berth binary the runtime re-executes (`berth shim`, `berth exec-probe`).
    pub(crate) fn exe(&self) -> &Path {
        &self.exe
    }

    /// Persistent dir of a container: overlay upper and work dirs, the mount point, logs.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join("containers").join(id)
    }

    /// Volatile dir of a container: the shim's config, log and the exit record.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.run_dir.join("containers").join(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("container.log")
    }

    pub fn exit_record(&self, id: &str) -> Option<ExitRecord> {
        ExitRecord::read(&self.bundle_dir(id).join("exit.json"))
            .ok()
            .flatten()
    }

    /// Creates the container's dirs and cgroup, then starts its shim and waits until the
    /// process runs or its setup failed (the error is the child's own message).
    pub async fn start(&self, req: ContainerRequest<'_>) -> Result<Started> {
        let dir = self.container_dir(req.id);
        let bundle = self.bundle_dir(req.id);
        for d in [
            dir.join("upper"),
            dir.join("work"),
            dir.join("rootfs"),
            bundle.clone(),
        ] {
            std::fs::create_dir_all(&d).map_err(io_err("create dir", &d))?;
        }
        let exit_path = bundle.join("exit.json");
        match std::fs::remove_file(&exit_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove stale exit record", &exit_path)(e)),
        }
        // A restart gets a fresh cgroup, so counters such as OOM kills describe this run only.
        let previous = self.cgroups.open(req.id);
        if previous.paths().iter().any(|p| p.exists()) {
            if let Err(errs) = previous.remove() {
                tracing::debug!(id = req.id, errors = ?errs, "remove previous cgroup");
            }
        }
        let cgroup =
            self.cgroups
                .create(req.id, &req.limits)
                .map_err(|e| RuntimeError::Cgroup {
                    id: req.id.to_string(),
                    message: e.to_string(),
                })?;
        if !req.unmasked {
            let mut rules = crate::cgroups::default_device_rules();
            for d in &req.devices {
                rules.push(mounts::device_rule(d).map_err(RuntimeError::Setup)?);
            }
            cgroup
                .set_devices(&rules)
                .map_err(|e| RuntimeError::Cgroup {
                    id: req.id.to_string(),
                    message: e.to_string(),
                })?;
        }
        let layers = self.short_layer_links(req.layers)?;
        let shim_cgroups = self.cgroups.shim_dirs().map_err(|e| RuntimeError::Cgroup {
            id: crate::cgroups::SHIMS.to_string(),
            message: e.to_string(),
        })?;
        let cfg = ShimConfig {
            shim_cgroups,
            id: req.id.to_string(),
            layers,
            upper: dir.join("upper"),
            work: dir.join("work"),
            rootfs: dir.join("rootfs"),
            args: req.process.args,
            env: req.process.env,
            cwd: req.process.cwd,
            hostname: req.hostname.to_string(),
            cgroups: cgroup.paths().to_vec(),
            log_path: self.log_path(req.id),
            exit_path,
            network: req.network,
            etc_files: req.etc_files,
            log: req.log,
            mounts: req.mounts,
            devices: req.devices,
            masked_paths: if req.unmasked {
                vec![]
            } else {
                mounts::MASKED_PATHS.iter().map(|p| p.to_string()).collect()
            },
            readonly_paths: if req.unmasked {
                vec![]
            } else {
                mounts::READONLY_PATHS
                    .iter()
                    .map(|p| p.to_string())
                    .collect()
            },
            readonly_rootfs: req.readonly_rootfs,
            security: req.security,
        };
        cfg.write(&bundle)
            .map_err(io_err("write shim config", &bundle))?;

        let shim_log = bundle.join("shim.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&shim_log)
            .map_err(io_err("open shim log", &shim_log))?;
        let mut child = tokio::process::Command::new(&self.exe)
            .arg("shim")
            .arg(&bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            // Its own process group: a Ctrl-C meant for the agent must not reach containers.
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| RuntimeError::SpawnShim {
                exe: self.exe.clone(),
                source,
            })?;
        let shim_pid = child.id().unwrap_or(0) as i32;
        let shim_start_time = crate::sys::process::start_time(shim_pid).unwrap_or(0);

        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let mut reader = BufReader::new(out);
            let _ = reader.read_line(&mut line).await;
        }
        let line = line.trim_end();
        if let Some(pid) = line
            .strip_prefix("started ")
            .and_then(|p| p.parse::<i32>().ok())
        {
            return Ok(Started {
                shim_pid,
                shim_start_time,
                init_pid: pid,
                watch: ShimWatch::Child(child),
            });
        }
        let _ = child.wait().await;
        if let Err(errs) = cgroup.remove() {
            tracing::warn!(id = req.id, errors = ?errs, "remove cgroup after failed start");
        }
        match line.strip_prefix("error ") {
            Some(msg) => Err(RuntimeError::Setup(msg.to_string())),
            None => Err(RuntimeError::ShimSilent {
                id: req.id.to_string(),
                log: shim_log,
            }),
        }
    }

    /// overlayfs takes its options in one page, so 64-hex layer dir names fit only ~60
    /// layers. Like Docker's `l/` dir, each layer gets a short symlink in one directory
    /// (`<stateDir>/l/<12 hex>`), which the init passes relative to that directory: 13 bytes
    /// a layer, 300 layers in a page.
    fn short_layer_links(&self, layers: &[PathBuf]) -> Result<Vec<PathBuf>> {
        let dir = self.state_dir.join("l");
        std::fs::create_dir_all(&dir).map_err(io_err("create layer links dir", &dir))?;
        let mut out = Vec::with_capacity(layers.len());
        for layer in layers {
            let name = layer
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // Grown until unique: a prefix another layer already links to is skipped.
            let mut len = name.len().min(12);
            let link = loop {
                let link = dir.join(&name[..len]);
                match std::fs::read_link(&link) {
                    Ok(target) if target == *layer => break link,
                    Ok(_) if len < name.len() => len += 4.min(name.len() - len),
                    Ok(_) => {
                        return Err(RuntimeError::Setup(format!(
                            "layer link {} is taken",
                            link.display()
                        )))
                    }
                    Err(_) => {
                        let tmp = dir.join(format!(".{}.{}", &name[..len], std::process::id()));
                        let _ = std::fs::remove_file(&tmp);
                        std::os::unix::fs::symlink(layer, &tmp)
                            .map_err(io_err("create layer link", &tmp))?;
                        std::fs::rename(&tmp, &link).map_err(io_err("create layer link", &link))?;
                        break link;
                    }
                }
            };
            out.push(link);
        }
        Ok(out)
    }

    /// Sends `signal` to the container's init, waits up to `timeout` for the container to
    /// end, then kills whatever is left in its cgroup.
    pub async fn stop(&self, id: &str, init_pid: i32, signal: i32, timeout: Duration) {
        let cgroup = self.cgroups.open(id);
        let running =
            |cg: &crate::cgroups::Cgroup| cg.pids().map(|p| !p.is_empty()).unwrap_or(false);
        // Only signal the pid while it is still in this container's cgroup: never a recycled pid.
        if cgroup
            .pids()
            .map(|p| p.contains(&init_pid))
            .unwrap_or(false)
        {
            if let Ok(sig) = Signal::try_from(signal) {
                let _ = kill(Pid::from_raw(init_pid), sig);
            }
        }
        let deadline = Instant::now() + timeout;
        while running(&cgroup) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if running(&cgroup) {
            tracing::info!(id, "stop timeout passed, sending SIGKILL");
            if let Err(e) = cgroup.kill_all() {
                tracing::warn!(id, error = %e, "kill container processes");
            }
        }
    }

    /// Removes what the container left on the host: cgroup, dirs. Tries every step.
    pub fn remove(&self, id: &str) -> std::result::Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if let Err(errs) = self.cgroups.open(id).remove() {
            errors.extend(errs.into_iter().map(|e| e.to_string()));
        }
        for d in [self.container_dir(id), self.bundle_dir(id)] {
            match std::fs::remove_dir_all(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => errors.push(format!("remove {}: {e}", d.display())),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}
