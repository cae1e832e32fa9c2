//! Carrying out one planned action against the engine, recording every step in the state db
//! so a crash at any point leaves a record the next pass can finish from.

use std::sync::Arc;
use std::time::Duration;

use berth_engine::cgroups::Limits;
use berth_engine::images::{Image, PullProgress};
use berth_engine::runtime::logs::LogConfig;
use berth_engine::runtime::security::SecurityConfig;
use berth_engine::runtime::{resolve_process, ContainerRequest, ImageDefaults, ProcessOverrides};
use berth_engine::state::ContainerRecord;
use berth_spec::{ContainerSpec, PullPolicy};

use super::desired::DesiredContainer;
use super::plan::Action;
use super::{now_unix, Reconciler, Trigger};
use crate::status::PullStatus;

/// Retry delay after a failed action (pull, start, stop).
const RETRY_AFTER: u64 = 5;

impl Reconciler {
    pub(super) async fn execute(self: Arc<Self>, action: Action) {
        let name = action.name().to_string();
        let verb = action.verb();
        tracing::info!(container = %name, action = verb, "{verb} container");
        let result = match action {
            Action::Create(d) => self.create(&d, 0, None).await,
            Action::Recreate { desired, old } => self.recreate(&desired, old).await,
            Action::Restart { desired, old } => self.restart(&desired, old).await,
            Action::Remove(old) => self.remove(old).await,
        };
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .actions_total
            .with_label_values(&[verb, outcome])
            .inc();
        {
            let mut nb = self.not_before.lock().unwrap_or_else(|p| p.into_inner());
            match &result {
                Ok(()) => {
                    nb.remove(&name);
                }
                Err(e) => {
                    tracing::warn!(container = %name, action = verb, error = %e, "{verb} failed; will retry");
                    nb.insert(name.clone(), now_unix() + RETRY_AFTER);
                }
            }
        }
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
        self.trigger(Trigger::ActionDone(name));
    }

    fn put(&self, r: &ContainerRecord) {
        if let Err(e) = self.db.put_container(r) {
            tracing::error!(container = %r.name, error = %e, "write container record");
        }
    }

    async fn create(
        self: &Arc<Self>,
        d: &DesiredContainer,
        restart_count: u32,
        image: Option<Image>,
    ) -> Result<(), String> {
        let mut rec = ContainerRecord {
            name: d.name.clone(),
            id: format!("{}-{}", d.name, random_suffix()),
            source_file: d.source_file.clone(),
            spec_hash: d.hash.clone(),
            spec_json: serde_json::to_string(&d.spec).unwrap_or_default(),
            image: d.spec.image.clone(),
            image_digest: None,
            state: "pulling".into(),
            shim_pid: None,
            shim_start_time: None,
            init_pid: None,
            exit_code: None,
            restart_count,
            message: None,
            created_at: now_unix(),
            started_at: None,
            finished_at: None,
            reason: None,
        };
        // An image already in the store spares the "pulling" record (one fsync less per start).
        let image = match image {
            Some(i) => Some(i),
            None if d.spec.image_pull_policy != PullPolicy::Always => {
                self.images.lookup(&d.spec.image).ok().flatten()
            }
            None => None,
        };
        if let Some(i) = &image {
            rec.image_digest = Some(i.digest.clone());
            rec.state = "created".into();
        }
        self.put(&rec);
        let image = match image {
            Some(i) => i,
            None => match self.ensure_image(d).await {
                Ok(i) => i,
                Err(e) => {
                    rec.state = "failed".into();
                    rec.message = Some(e.clone());
                    rec.finished_at = Some(now_unix());
                    self.put(&rec);
                    return Err(e);
                }
            },
        };
        if rec.state != "created" {
            rec.image_digest = Some(image.digest.clone());
            rec.state = "created".into();
            self.put(&rec);
        }
        self.start(rec, d, &image).await
    }

    async fn recreate(
        self: &Arc<Self>,
        d: &DesiredContainer,
        mut old: ContainerRecord,
    ) -> Result<(), String> {
        // The new image is pulled and verified before the old container stops.
        let image = match self.ensure_image(d).await {
            Ok(i) => i,
            Err(e) => {
                if old.state == "running" {
                    old.message = Some(format!(
                        "update held back, old container keeps running: {e}"
                    ));
                    self.put(&old);
                } else {
                    old.state = "failed".into();
                    old.image_digest = None;
                    old.message = Some(e.clone());
                    old.finished_at = Some(now_unix());
                    old.spec_hash = d.hash.clone();
                    self.put(&old);
                }
                return Err(e);
            }
        };
        self.stop_and_remove(&old).await?;
        self.create(d, 0, Some(image)).await
    }

    async fn restart(
        self: &Arc<Self>,
        d: &DesiredContainer,
        mut old: ContainerRecord,
    ) -> Result<(), String> {
        let image = match self.ensure_image(d).await {
            Ok(i) => i,
            Err(e) => {
                old.state = "failed".into();
                old.message = Some(e.clone());
                old.finished_at = Some(now_unix());
                self.put(&old);
                return Err(e);
            }
        };
        old.restart_count += 1;
        old.image_digest = Some(image.digest.clone());
        self.start(old, d, &image).await
    }

    async fn remove(self: &Arc<Self>, old: ContainerRecord) -> Result<(), String> {
        self.stop_and_remove(&old).await?;
        self.db
            .delete_container(&old.name)
            .map_err(|e| e.to_string())?;
        tracing::info!(container = %old.name, "container removed");
        Ok(())
    }

    /// Starts the container of `rec` (new or restarted) and records the outcome.
    async fn start(
        self: &Arc<Self>,
        mut rec: ContainerRecord,
        d: &DesiredContainer,
        image: &Image,
    ) -> Result<(), String> {
        let spec = &d.spec;
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
        );
        let mounts =
            super::mounts::container_mounts(spec, &self.volumes_dir, &self.allowed_host_paths);
        // The network namespace is wired (and the etc files written) before the start.
        let network = match (&process, &mounts) {
            (Ok(_), Ok(_)) => self.attach_networks(&rec, d).await,
            _ => Err(String::new()),
        };
        let started = match (process, mounts, network) {
            (Err(e), _, _) => Err(e.to_string()),
            (_, Err(e), _) => Err(e),
            (_, _, Err(e)) => Err(e),
            (Ok(process), Ok(mounts), Ok((network, etc_files))) => self
                .runtime
                .start(ContainerRequest {
                    id: &rec.id,
                    hostname: spec.hostname.as_deref().unwrap_or(&d.name),
                    layers: &image.layers,
                    process,
                    limits: limits(spec),
                    network,
                    log: LogConfig {
                        max_size: spec.logging.max_size.bytes(),
                        max_files: spec.logging.max_files,
                    },
                    security: SecurityConfig::from_spec(spec),
                    mounts: mounts.mounts,
                    devices: mounts.devices,
                    unmasked: spec.security.privileged,
                    readonly_rootfs: spec.security.read_only_root_filesystem,
                    etc_files,
                })
                .await
                .map_err(|e| e.to_string()),
        };
        match started {
            Ok(s) => {
                rec.state = "running".into();
                rec.shim_pid = Some(s.shim_pid);
                rec.shim_start_time = Some(s.shim_start_time);
                rec.init_pid = Some(s.init_pid);
                rec.exit_code = None;
                rec.reason = None;
                rec.message = None;
                rec.started_at = Some(now_unix());
                rec.finished_at = None;
                self.put(&rec);
                tracing::info!(container = %rec.name, id = %rec.id, pid = s.init_pid, "container running");
                self.clone()
                    .monitor(rec.name.clone(), rec.id.clone(), s.watch);
                Ok(())
            }
            Err(e) => {
                rec.state = "failed".into();
                rec.init_pid = None;
                rec.exit_code = None;
                rec.message = Some(e.clone());
                rec.finished_at = Some(now_unix());
                self.put(&rec);
                Err(e)
            }
        }
    }

    /// Stops whatever still runs of a recorded container and removes its host objects.
    async fn stop_and_remove(&self, old: &ContainerRecord) -> Result<(), String> {
        // A record from an older format still stops with the manifest defaults.
        let spec: ContainerSpec = serde_json::from_str(&old.spec_json)
            .unwrap_or_else(|_| ContainerSpec::new(old.image.clone()));
        let (signal, timeout) = (spec.stop_signal.number(), spec.stop_timeout.get());
        self.runtime
            .stop(&old.id, old.init_pid.unwrap_or(0), signal, timeout)
            .await;
        // The shim reaps the init a moment after the cgroup empties; rmdir may need a retry.
        let mut last = Vec::new();
        for _ in 0..50 {
            match self.runtime.remove(&old.id) {
                Ok(()) => return self.detach_networks(&old.id).await,
                Err(errs) => last = errs,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("remove container {}: {}", old.id, last.join("; ")))
    }

    async fn ensure_image(&self, d: &DesiredContainer) -> Result<Image, String> {
        let reference = &d.spec.image;
        let local = || self.images.lookup(reference).map_err(|e| e.to_string());
        match d.spec.image_pull_policy {
            PullPolicy::Never => local()?.ok_or_else(|| {
                format!("image {reference} is not present and imagePullPolicy is Never (hint: load it or set IfNotPresent)")
            }),
            PullPolicy::IfNotPresent => match local()? {
                Some(i) => Ok(i),
                None => self.pull(d).await,
            },
            PullPolicy::Always => self.pull(d).await,
        }
    }

    async fn pull(&self, d: &DesiredContainer) -> Result<Image, String> {
        let live = self.live.clone();
        let name = d.name.clone();
        let downloaded = std::sync::atomic::AtomicU64::new(0);
        let progress = |p: PullProgress| {
            downloaded.store(p.downloaded_bytes, std::sync::atomic::Ordering::Relaxed);
            live.set_pull(
                &name,
                Some(PullStatus {
                    done_bytes: p.done_bytes,
                    total_bytes: p.total_bytes,
                }),
            );
        };
        tracing::info!(container = %d.name, image = %d.spec.image, "pulling image");
        let started = std::time::Instant::now();
        let result = self
            .images
            .pull(&d.spec.image, &self.registries, &progress)
            .await;
        let downloaded = downloaded.load(std::sync::atomic::Ordering::Relaxed);
        self.metrics
            .observe_pull(started.elapsed().as_secs_f64(), result.is_ok(), downloaded);
        self.live.set_pull(&d.name, None);
        let image = result.map_err(|e| e.to_string())?;
        tracing::info!(container = %d.name, image = %image.reference, digest = %image.digest, "image ready");
        Ok(image)
    }
}

fn limits(spec: &ContainerSpec) -> Limits {
    Limits {
        memory_bytes: spec.resources.memory.as_ref().map(|m| m.bytes()),
        cpu_millis: spec.resources.cpus.as_ref().map(|c| c.millis()),
        pids: spec.resources.pids,
    }
}

/// 8 hex digits from the kernel's random pool: container ids must not repeat across restarts.
fn random_suffix() -> String {
    let mut buf = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    hex_string(&buf)
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
