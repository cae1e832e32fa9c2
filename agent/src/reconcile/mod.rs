//! The control loop: load the manifests, read the records, plan, dispatch actions. Level
//! triggered — every pass starts from the full desired and recorded state — and woken by file
//! events, container exits, finished actions, due restarts and a periodic resync.

pub mod desired;
pub mod diff;
mod execute;
pub mod last_good;
pub mod last_load;
pub mod mounts;
pub mod networks;
pub mod plan;
pub mod preview;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_engine::images::{ImageStore, RegistryConfig};
use berth_engine::runtime::{Runtime, ShimWatch};
use berth_engine::state::StateDb;
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::status::LiveStatus;
use last_load::LastLoad;

/// Why a pass runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    ManifestsChanged,
    /// A manifest file was closed after writing or renamed into place: complete.
    ManifestsWritten,
    ContainerExited(String),
    ActionDone(String),
    Periodic,
}

/// Resync at least this often, to see drift and retry failures.
const RESYNC: Duration = Duration::from_secs(30);
/// File events come in bursts (editors write, rename, chmod): wait for the burst to end.
/// Short, because it adds to every start; a file caught half-written fails to load and is
/// frozen until the next event, which the rest of the burst delivers.
const DEBOUNCE: Duration = Duration::from_millis(10);

pub struct Reconciler {
    pub manifests: std::path::PathBuf,
    pub registries: RegistryConfig,
    pub db: Arc<StateDb>,
    pub images: Arc<ImageStore>,
    pub runtime: Arc<Runtime>,
    pub live: Arc<LiveStatus>,
    pub metrics: Arc<Metrics>,
    triggers: mpsc::UnboundedSender<Trigger>,
    busy: Mutex<BTreeSet<String>>,
    not_before: Mutex<BTreeMap<String, u64>>,
    last_problems: Mutex<Vec<String>>,
    /// What the last pass loaded, shared with the API.
    pub last_load: Arc<LastLoad>,
    /// Host paths (and devices) manifests may mount; none by default.
    pub allowed_host_paths: Vec<std::path::PathBuf>,
    /// `<stateDir>/volumes`: named volumes.
    pub volumes_dir: std::path::PathBuf,
    /// Networking (bridges, leases, ports); None: every container gets an empty namespace.
    pub networks: Option<networks::Networks>,
}

pub fn now_unix() -> u64 {
    berth_engine::runtime::exit::now_unix()
}

impl Reconciler {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        manifests: std::path::PathBuf,
        registries: RegistryConfig,
        db: Arc<StateDb>,
        images: Arc<ImageStore>,
        runtime: Arc<Runtime>,
        live: Arc<LiveStatus>,
        metrics: Arc<Metrics>,
        triggers: mpsc::UnboundedSender<Trigger>,
    ) -> Reconciler {
        let last_load = Arc::new(LastLoad::new(manifests.clone()));
        Reconciler {
            manifests,
            registries,
            db,
            images,
            runtime,
            live,
            metrics,
            triggers,
            busy: Mutex::default(),
            not_before: Mutex::default(),
            last_problems: Mutex::default(),
            last_load,
            allowed_host_paths: Vec::new(),
            volumes_dir: std::path::PathBuf::new(),
            networks: None,
        }
    }

    fn trigger(&self, t: Trigger) {
        // The loop is gone only during shutdown; nothing is lost then.
        let _ = self.triggers.send(t);
    }

    /// Runs passes until `shutdown` turns true. Containers keep running after it returns.
    pub async fn run(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Trigger>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.adopt();
        let mut next = Duration::ZERO;
        loop {
            let reason = tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                t = rx.recv() => match t {
                    Some(t) => t,
                    None => break,
                },
                _ = tokio::time::sleep(next) => Trigger::Periodic,
            };
            if reason == Trigger::ManifestsChanged {
                tokio::time::sleep(DEBOUNCE).await;
            }
            // Everything queued is covered by this one level-triggered pass.
            while rx.try_recv().is_ok() {}
            next = self.pass(&reason).await;
        }
        tracing::info!("reconciler stopped; containers keep running");
    }

    /// One pass. Returns how long to sleep before the next periodic one.
    async fn pass(self: &Arc<Self>, reason: &Trigger) -> Duration {
        let started = Instant::now();
        let span = tracing::debug_span!("pass", ?reason);
        let _enter = span.enter();
        let dir = self.manifests.clone();
        let policy = crate::policy::HostPolicy {
            allowed_host_paths: Some(self.allowed_host_paths.clone()),
        };
        let load = match tokio::task::spawn_blocking(move || crate::policy::load_dir(&dir, &policy))
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "manifest loader panicked");
                self.metrics
                    .reconcile_total
                    .with_label_values(&["error"])
                    .inc();
                return RESYNC;
            }
        };
        self.report_problems(&load);
        let desired = self.desired_state(&load);
        self.live
            .set_manifest_errors(desired.manifest_errors.clone(), desired.file_errors.clone());
        // Networks first: containers attach to them, and a rebuilt one marks its containers.
        self.sync_networks(&desired).await;

        let records = match self.db.list_containers() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "read container records");
                self.metrics
                    .reconcile_total
                    .with_label_values(&["error"])
                    .inc();
                return Duration::from_secs(1);
            }
        };
        let busy = self.busy.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.release_finished(&desired, &records, &busy).await;
        let now = now_unix();
        let actions = {
            let busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            let not_before = self.not_before.lock().unwrap_or_else(|p| p.into_inner());
            plan::plan(&desired, &records, &busy, &not_before, now)
        };
        for action in actions {
            self.busy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(action.name().to_string());
            tokio::spawn(self.clone().execute(action));
        }

        let mut states: BTreeMap<&str, i64> = ["pulling", "created", "running", "exited", "failed"]
            .iter()
            .map(|s| (*s, 0))
            .collect();
        for r in &records {
            *states.entry(r.state.as_str()).or_default() += 1;
        }
        for (state, n) in states {
            self.metrics.containers.with_label_values(&[state]).set(n);
        }
        let result = if load.problems.is_empty() {
            "ok"
        } else {
            "error"
        };
        self.metrics
            .reconcile_total
            .with_label_values(&[result])
            .inc();
        self.metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());

        // Wake up for the next due restart or retry, else resync.
        let retry = self
            .not_before
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .min()
            .copied();
        let due = [plan::next_due(&desired, &records), retry]
            .into_iter()
            .flatten()
            .min();
        match due {
            Some(t) if t <= now => Duration::from_millis(250),
            Some(t) => Duration::from_secs(t - now).min(RESYNC),
            None => RESYNC,
        }
    }

    /// Logs manifest problems when they change, not on every pass; sets the error metric.
    fn report_problems(&self, load: &berth_spec::LoadResult) {
        let lines: Vec<String> = load.problems.iter().map(|p| p.to_string()).collect();
        let mut last = self.last_problems.lock().unwrap_or_else(|p| p.into_inner());
        if *last != lines {
            for l in &lines {
                tracing::warn!(problem = %l, "manifest does not load; its objects keep their last good version");
            }
            if lines.is_empty() && !last.is_empty() {
                tracing::info!("all manifests load again");
            }
            *last = lines;
        }
        self.metrics.manifest_errors.reset();
        for f in &load.files {
            if f.error.is_some() {
                self.metrics
                    .manifest_errors
                    .with_label_values(&[&f.path.display().to_string()])
                    .set(1);
            }
        }
    }

    /// After an agent restart: follow every shim that still runs; settle the others.
    fn adopt(self: &Arc<Self>) {
        let records = match self.db.list_containers() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "read container records to adopt");
                return;
            }
        };
        for mut r in records.into_iter().filter(|r| r.state == "running") {
            let watch = match (r.shim_pid, r.shim_start_time) {
                (Some(pid), Some(start)) => ShimWatch::adopt(pid, start),
                _ => None,
            };
            match watch {
                Some(w) => {
                    tracing::info!(container = %r.name, pid = ?r.init_pid, "adopted running container");
                    self.clone().monitor(r.name.clone(), r.id.clone(), w);
                }
                None => {
                    // The shim is gone: the exit record says how the container ended, if it did.
                    let cgroup = self.runtime.cgroups().open(&r.id);
                    if cgroup.pids().map(|p| !p.is_empty()).unwrap_or(false) {
                        let _ = cgroup.kill_all();
                    }
                    let exit = self.runtime.exit_record(&r.id);
                    r.state = "exited".into();
                    r.exit_code = exit.as_ref().map(|e| e.exit_code);
                    r.finished_at = Some(
                        exit.as_ref()
                            .map(|e| e.finished_at)
                            .unwrap_or_else(now_unix),
                    );
                    if exit.is_none() {
                        r.message = Some("the container's shim was gone when the agent started; container stopped".into());
                    }
                    tracing::warn!(container = %r.name, "container ended while the agent was away");
                    if let Err(e) = self.db.put_container(&r) {
                        tracing::error!(container = %r.name, error = %e, "record container exit");
                    }
                }
            }
        }
    }

    /// Follows a shim; when it exits, records how the container ended and wakes the loop.
    fn monitor(self: Arc<Self>, name: String, id: String, watch: ShimWatch) {
        tokio::spawn(async move {
            watch.wait().await;
            let exit = self.runtime.exit_record(&id);
            match self.db.get_container(&name) {
                Ok(Some(mut r)) if r.id == id && r.state == "running" => {
                    r.state = match exit.as_ref().and_then(|e| e.error.as_ref()) {
                        Some(_) => "failed".into(),
                        None => "exited".into(),
                    };
                    r.exit_code = exit.as_ref().map(|e| e.exit_code);
                    r.finished_at = Some(
                        exit.as_ref()
                            .map(|e| e.finished_at)
                            .unwrap_or_else(now_unix),
                    );
                    r.message = exit.and_then(|e| e.error);
                    // The cgroup is fresh for every start, so any OOM kill it counts is this run's.
                    let oom = self
                        .runtime
                        .cgroups()
                        .open(&id)
                        .oom_kill_count()
                        .unwrap_or(0)
                        > 0;
                    r.reason = Some(
                        match (oom, r.exit_code) {
                            (true, _) => "OOMKilled",
                            (false, Some(0)) => "Completed",
                            _ => "Error",
                        }
                        .to_string(),
                    );
                    tracing::info!(container = %name, exit_code = ?r.exit_code, reason = ?r.reason, "container exited");
                    if let Err(e) = self.db.put_container(&r) {
                        tracing::error!(container = %name, error = %e, "record container exit");
                    }
                }
                Ok(_) => {} // Stopped on purpose and already replaced or removed.
                Err(e) => tracing::error!(container = %name, error = %e, "read container record"),
            }
            self.trigger(Trigger::ContainerExited(name));
        });
    }
}
