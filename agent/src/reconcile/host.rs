//! The real [`Engine`]: berth's image store, runtime, network manager and volumes dir.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_engine::cgroups::Limits;
use berth_engine::health;
use berth_engine::images::{Image, ImageStore, PullProgress, RegistryConfig};
use berth_engine::network::{AttachRequest, NetworkDef, NetworkError, NetworkManager};
use berth_engine::runtime::logs::LogConfig;
use berth_engine::runtime::security::SecurityConfig;
use berth_engine::runtime::{
    resolve_process, ContainerRequest, ExitRecord, ImageDefaults, NetworkNamespace,
    ProcessOverrides, Runtime, RuntimeError, ShimWatch,
};
use berth_engine::state::ContainerRecord;
use berth_spec::{ContainerSpec, NetworkMode, Probe};

use super::engine::{CgroupUse, Engine, ExitWatch, ProbeResult, ProbeTarget, StartError, Started};
use crate::metrics::Metrics;
use crate::status::{LiveStatus, PullStatus};

pub struct HostEngine {
    pub images: Arc<ImageStore>,
    pub registries: RegistryConfig,
    pub runtime: Arc<Runtime>,
    /// None: every container gets an empty network namespace (tests without networking).
    pub networks: Option<NetworkManager>,
    /// `<stateDir>/volumes`.
    pub volumes_dir: PathBuf,
    /// Host paths (and devices) manifests may mount; none by default.
    pub allowed_host_paths: Vec<PathBuf>,
    pub live: Arc<LiveStatus>,
    pub metrics: Arc<Metrics>,
}

fn joined(errs: &[NetworkError]) -> String {
    errs.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The cgroup limits a spec asks for.
pub fn limits(spec: &ContainerSpec) -> Limits {
    Limits {
        memory_bytes: spec.resources.memory.as_ref().map(|m| m.bytes()),
        cpu_millis: spec.resources.cpus.as_ref().map(|c| c.millis()),
        pids: spec.resources.pids,
    }
}

/// Whether the process `pid` that started at `start` still runs (a zombie does not).
fn alive(pid: i32, start: u64) -> bool {
    berth_engine::sys::process::is_running(pid, start)
}

impl HostEngine {
    /// Wires the container before its start: its namespace and the etc files to mount.
    async fn attach(
        &self,
        rec: &ContainerRecord,
        spec: &ContainerSpec,
    ) -> Result<(NetworkNamespace, Vec<(PathBuf, String)>), String> {
        let Some(nets) = &self.networks else {
            let ns = match spec.network_mode {
                NetworkMode::Host => NetworkNamespace::Host,
                _ => NetworkNamespace::New,
            };
            return Ok((ns, Vec::new()));
        };
        let req = AttachRequest {
            id: rec.id.clone(),
            name: rec.name.clone(),
            hostname: spec.hostname.clone().unwrap_or_else(|| rec.name.clone()),
            mode: spec.network_mode,
            networks: spec.networks.clone(),
            ports: spec.ports.clone(),
            dir: self.runtime.container_dir(&rec.id),
        };
        let a = nets.attach(req).await.map_err(|e| e.to_string())?;
        Ok((a.namespace, a.etc_files))
    }

    /// Waits (bounded) until the recorded shim of `rec` has exited, so its exit record is
    /// written when the caller reads it.
    async fn shim_gone(&self, rec: &ContainerRecord) {
        let (Some(pid), Some(start)) = (rec.shim_pid, rec.shim_start_time) else {
            return;
        };
        for _ in 0..100 {
            if !alive(pid, start) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(container = %rec.name, shim = pid, "the shim did not exit within 2s of its container");
    }
}

impl Engine for HostEngine {
    fn lookup_image(&self, reference: &str) -> Result<Option<Image>, String> {
        self.images.lookup(reference).map_err(|e| e.to_string())
    }

    async fn pull_image(&self, name: &str, reference: &str) -> Result<Image, String> {
        let live = self.live.clone();
        let downloaded = std::sync::atomic::AtomicU64::new(0);
        let progress = |p: PullProgress| {
            downloaded.store(p.downloaded_bytes, std::sync::atomic::Ordering::Relaxed);
            live.set_pull(
                name,
                Some(PullStatus {
                    done_bytes: p.done_bytes,
                    total_bytes: p.total_bytes,
                }),
            );
        };
        tracing::info!(container = %name, image = %reference, "pulling image");
        let started = std::time::Instant::now();
        let result = self
            .images
            .pull(reference, &self.registries, &progress)
            .await;
        let downloaded = downloaded.load(std::sync::atomic::Ordering::Relaxed);
        self.metrics
            .observe_pull(started.elapsed().as_secs_f64(), result.is_ok(), downloaded);
        self.live.set_pull(name, None);
        let image = result.map_err(|e| e.to_string())?;
        tracing::info!(container = %name, image = %image.reference, digest = %image.digest, "image ready");
        Ok(image)
    }

    async fn start(
        &self,
        rec: &ContainerRecord,
        spec: &ContainerSpec,
        image: &Image,
    ) -> Result<Started, StartError> {
        let process = resolve_process(
            &ProcessOverrides {
                command: spec.command.as_deref(),
                args: spec.args.as_deref(),
                env: &spec.env,
                working_dir: spec.working_dir.as_deref(),
            },
            &ImageDefaults {
                entrypoint: &image.config.entrypoint,
                cmd: &image.config.cmd,
                env: &image.config.env,
                working_dir: image.config.working_dir.as_deref(),
            },
        )
        .map_err(|e| StartError::Process(e.to_string()))?;
        let mounts =
            super::mounts::container_mounts(spec, &self.volumes_dir, &self.allowed_host_paths)
                .map_err(StartError::Setup)?;
        // The network namespace is wired (and the etc files written) before the start.
        let (network, etc_files) = self.attach(rec, spec).await.map_err(StartError::Setup)?;
        let started = self
            .runtime
            .start(ContainerRequest {
                id: &rec.id,
                hostname: spec.hostname.as_deref().unwrap_or(&rec.name),
                layers: &image.layers,
                process,
                limits: limits(spec),
                network,
                log: LogConfig {
                    max_size: spec.logging.max_size.bytes(),
                    max_files: spec.logging.max_files,
                },
                security: SecurityConfig::from_spec(spec, image.config.user.as_deref()),
                mounts: mounts.mounts,
                devices: mounts.devices,
                unmasked: spec.security.privileged,
                readonly_rootfs: spec.security.read_only_root_filesystem,
                etc_files,
            })
            .await
            .map_err(|e| match e {
                // What the shim reports is the process's own failure.
                RuntimeError::Setup(msg) => StartError::Process(msg),
                other => StartError::Setup(other.to_string()),
            })?;
        Ok(Started {
            shim_pid: started.shim_pid,
            shim_start_time: started.shim_start_time,
            init_pid: started.init_pid,
            exit: Box::pin(started.watch.wait()),
        })
    }

    async fn stop(&self, rec: &ContainerRecord, spec: &ContainerSpec) {
        self.runtime
            .stop(
                &rec.id,
                rec.init_pid.unwrap_or(0),
                spec.stop_signal.number(),
                spec.stop_timeout.get(),
            )
            .await;
        // A container whose processes were moved out of its cgroup still has its shim: its
        // init (the shim's child, pid 1 of its namespace) takes the whole namespace with it.
        if let (Some(shim), Some(start), Some(init)) =
            (rec.shim_pid, rec.shim_start_time, rec.init_pid)
        {
            let child_of_shim =
                berth_engine::sys::process::parent_pid(init).is_ok_and(|p| p == shim);
            if alive(shim, start) && child_of_shim {
                tracing::warn!(container = %rec.name, pid = init, "the container's init is outside its cgroup: killing it");
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(init),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        self.shim_gone(rec).await;
    }

    async fn remove(&self, id: &str) -> Result<(), String> {
        // The shim reaps the init a moment after the cgroup empties; rmdir may need a retry.
        let mut last = Vec::new();
        for _ in 0..50 {
            match self.runtime.remove(id) {
                Ok(()) => return self.detach(id).await,
                Err(errs) => last = errs,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("remove container {id}: {}", last.join("; ")))
    }

    async fn kill(&self, id: &str) -> Result<(), String> {
        let cgroup = self.runtime.cgroups().open(id);
        if cgroup.pids().map(|p| p.is_empty()).unwrap_or(true) {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || cgroup.kill_all())
            .await
            .map_err(|e| format!("kill container {id}: {e}"))?
            .map_err(|e| format!("kill container {id}: {e}"))
    }

    fn exit_record(&self, id: &str) -> Option<ExitRecord> {
        self.runtime.exit_record(id)
    }

    fn oom_killed(&self, id: &str) -> bool {
        // The cgroup is fresh for every start, so any OOM kill it counts is this run's.
        self.runtime
            .cgroups()
            .open(id)
            .oom_kill_count()
            .unwrap_or(0)
            > 0
    }

    fn watch(&self, rec: &ContainerRecord) -> Option<ExitWatch> {
        let w = ShimWatch::adopt(rec.shim_pid?, rec.shim_start_time?)?;
        Some(Box::pin(w.wait()))
    }

    fn shim_alive(&self, rec: &ContainerRecord) -> bool {
        match (rec.shim_pid, rec.shim_start_time) {
            (Some(pid), Some(start)) => alive(pid, start),
            _ => false,
        }
    }

    fn cgroup_intact(&self, id: &str) -> bool {
        self.runtime
            .cgroups()
            .open(id)
            .paths()
            .iter()
            .all(|p| p.is_dir())
    }

    fn cgroup_pids(&self, id: &str) -> Vec<i32> {
        self.runtime.cgroups().open(id).pids().unwrap_or_default()
    }

    fn cgroups(&self) -> Result<Vec<CgroupUse>, String> {
        let cg = self.runtime.cgroups();
        let mut out = Vec::new();
        for name in cg.children().map_err(|e| e.to_string())? {
            // The shims' own cgroup: each shim is known through its container's record.
            if name == berth_engine::cgroups::SHIMS {
                continue;
            }
            let pids = cg.open(&name).pids().unwrap_or_default();
            out.push(CgroupUse { name, pids });
        }
        out.push(CgroupUse {
            name: ".".into(),
            pids: cg.parent_pids().map_err(|e| e.to_string())?,
        });
        Ok(out)
    }

    async fn kill_stray(&self, cgroup: &str) -> Result<(), String> {
        if cgroup == "." {
            // Processes in berth's parent cgroup itself: no container's, so none to keep.
            for pid in self.runtime.cgroups().parent_pids().unwrap_or_default() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Ok(());
        }
        self.kill(cgroup).await?;
        self.runtime
            .cgroups()
            .open(cgroup)
            .remove()
            .map_err(|errs| {
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
    }

    fn netns_ids(&self) -> Vec<String> {
        self.networks
            .as_ref()
            .map(|n| n.pinned_ids())
            .unwrap_or_default()
    }

    async fn missing_links(&self, interfaces: BTreeSet<String>) -> BTreeSet<String> {
        let Some(nets) = &self.networks else {
            return BTreeSet::new();
        };
        match nets.missing_links(interfaces).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "list the host's links");
                BTreeSet::new()
            }
        }
    }

    async fn ensure_network(&self, def: NetworkDef) -> Result<(), String> {
        let Some(nets) = &self.networks else {
            return Ok(());
        };
        nets.ensure(def)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn remove_network(&self, name: &str) -> Result<(), String> {
        let Some(nets) = &self.networks else {
            return Ok(());
        };
        nets.remove(name).await.map_err(|errs| joined(&errs))
    }

    async fn repair_networks(&self, defs: Vec<NetworkDef>) -> Result<(), String> {
        let Some(nets) = &self.networks else {
            return Ok(());
        };
        let mut errors = Vec::new();
        for def in defs {
            if let Err(e) = nets.ensure(def).await {
                errors.push(e.to_string());
            }
        }
        if let Err(e) = nets.sync_firewall().await {
            errors.push(e.to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    async fn detach(&self, id: &str) -> Result<(), String> {
        let Some(nets) = &self.networks else {
            return Ok(());
        };
        nets.detach(id)
            .await
            .map_err(|errs| format!("detach container {id} from its networks: {}", joined(&errs)))
    }

    fn create_volume(&self, name: &str) -> Result<(), String> {
        let (data, _) = super::mounts::volume_paths(&self.volumes_dir, name);
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&data)
            .map_err(|e| format!("create volume {name} at {}: {e}", data.display()))
    }

    fn delete_volume(&self, name: &str) -> Result<(), String> {
        let dir = self.volumes_dir.join(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("delete volume {name} at {}: {e}", dir.display())),
        }
    }

    async fn probe(&self, target: &ProbeTarget, probe: &Probe, timeout: Duration) -> ProbeResult {
        let result = match probe {
            Probe::Exec(cmd) => {
                self.runtime
                    .exec_probe(&target.id, target.init_pid, cmd, timeout)
                    .await
            }
            Probe::Tcp(t) => match self.runtime.net_target(&target.id, target.init_pid) {
                Ok(net) => health::tcp_probe(net, t.port, timeout).await,
                Err(e) => Err(e),
            },
            Probe::Http(h) => match self.runtime.net_target(&target.id, target.init_pid) {
                Ok(net) => health::http_probe(net, h.port, &h.path, timeout).await,
                Err(e) => Err(e),
            },
        };
        // berth's own failure to probe is a failed probe too, with berth's reason as output.
        result.unwrap_or_else(|e| ProbeResult {
            healthy: false,
            output: format!("berth could not run the probe: {e}"),
            exit_code: None,
        })
    }
}
