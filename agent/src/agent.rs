//! `berth agent`: wires the state db, the engine, the reconciler, the watcher and the API
//! together, and stops cleanly on SIGTERM/SIGINT — leaving every container running.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_engine::cgroups::CgroupManager;
use berth_engine::images::ImageStore;
use berth_engine::runtime::Runtime;
use berth_engine::state::StateDb;
use nix::fcntl::{Flock, FlockArg};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::api::{self, ApiState};
use crate::config::AgentConfig;
use crate::metrics::Metrics;
use crate::reconcile::health::HealthBoard;
use crate::reconcile::host::HostEngine;
use crate::reconcile::plan::PlanConfig;
use crate::reconcile::{Clock, ReconcileConfig, Reconciler};
use crate::status::LiveStatus;

fn private_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("create directory {}", path.display()))
}

/// How long a new agent waits for the state dir's lock. A lock is held by its open file,
/// which a child the last agent was starting shares until that child's exec: after a crash
/// the lock can outlive the agent for a moment.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// One agent per state dir: two would fight over the same containers.
async fn lock_state_dir(state_dir: &Path) -> anyhow::Result<Flock<std::fs::File>> {
    let lock_path = state_dir.join("agent.lock");
    let started = tokio::time::Instant::now();
    let deadline = started + LOCK_WAIT;
    let mut waited = false;
    loop {
        let file = std::fs::File::create(&lock_path)
            .with_context(|| format!("open {}", lock_path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                if waited {
                    tracing::info!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "state dir locked"
                    );
                }
                return Ok(lock);
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if tokio::time::Instant::now() < deadline => {
                if !waited {
                    tracing::info!(path = %lock_path.display(), "the state dir is locked; waiting for it (a previous agent's process may be exiting)");
                    waited = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err((_, e)) => anyhow::bail!(
                "lock {}: {e} (hint: another berth agent uses this state dir)",
                lock_path.display()
            ),
        }
    }
}

pub async fn run(cfg: AgentConfig) -> anyhow::Result<()> {
    private_dir(&cfg.state_dir)?;
    private_dir(&cfg.run_dir)?;
    let _lock = lock_state_dir(&cfg.state_dir).await?;

    let db = Arc::new(StateDb::open(&cfg.state_dir)?);
    let images = Arc::new(ImageStore::open(&cfg.state_dir)?.with_auth(cfg.registry_auth.clone()));
    let cgroups = CgroupManager::detect(Path::new("/sys/fs/cgroup"), &cfg.cgroup_parent)?;
    tracing::info!(mode = ?cgroups.mode(), parent = %cfg.cgroup_parent, "cgroups detected");
    let exe = std::env::current_exe().context("find the berth binary for shims")?;
    let runtime = Arc::new(Runtime::new(&cfg.state_dir, &cfg.run_dir, cgroups, exe));
    let live = Arc::new(LiveStatus::default());
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(HealthBoard::default());
    let notifier = Arc::new(crate::service::Notifier::from_env());
    let events = crate::events::Events::new(db.clone());

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| {
            format!(
                "listen on {} (hint: set --listen to a free address)",
                cfg.listen
            )
        })?;
    tracing::info!(addr = %cfg.listen, "status api listening");
    let layout = crate::source::snapshot::Layout::new(&cfg.state_dir);
    let source_status = Arc::new(crate::source::status::SharedStatus::new(
        match &cfg.source {
            Some(git) => crate::source::sync::GitSync::initial_status(git, &layout, &db),
            None => crate::source::status::SourceStatus {
                kind: "directory",
                path: Some(cfg.manifests.clone()),
                ..Default::default()
            },
        },
    ));
    let last_load = Arc::new(crate::reconcile::last_load::LastLoad::new(
        match &cfg.source {
            Some(_) => layout.current_link(),
            None => cfg.manifests.clone(),
        },
    ));
    let network_manager =
        berth_engine::network::NetworkManager::new(cfg.networks.clone(), db.clone());
    let app = api::router(Arc::new(ApiState {
        db: db.clone(),
        live: live.clone(),
        metrics: metrics.clone(),
        containers_dir: cfg.state_dir.join("containers"),
        last_load: last_load.clone(),
        health: health.clone(),
        allow_empty: cfg.allow_empty,
        volumes_dir: cfg.state_dir.join("volumes"),
        source: source_status.clone(),
        events: events.clone(),
        usage: Arc::new(crate::usage::Usage {
            runtime: runtime.clone(),
            networks: Some(network_manager.clone()),
        }),
    }))
    .merge(api::images::router(Arc::new(api::images::ImagesApi {
        images: images.clone(),
        db: db.clone(),
        live: live.clone(),
    })));
    // The TCP listener, behind its access rules; the unix socket, for root and the berth
    // group, serves everything.
    let socket_path = cfg.run_dir.join("berth.sock");
    let tcp_app = app.clone().layer(axum::middleware::from_fn_with_state(
        Arc::new(api::access::TcpAccess {
            token: cfg
                .api_token_file
                .as_deref()
                .map(api::access::read_token)
                .transpose()?,
            socket: socket_path.clone(),
        }),
        api::access::tcp_gate,
    ));
    let unix_listener = bind_socket(&socket_path)?;
    tracing::info!(socket = %socket_path.display(), "status api on the unix socket");
    let mut api_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, tcp_app)
            .with_graceful_shutdown(async move {
                let _ = api_shutdown.changed().await;
            })
            .await
    });
    let mut socket_shutdown = shutdown_rx.clone();
    let socket_server = tokio::spawn(async move {
        axum::serve(unix_listener, app)
            .with_graceful_shutdown(async move {
                let _ = socket_shutdown.changed().await;
            })
            .await
    });

    let (tx, rx) = mpsc::unbounded_channel();
    let engine = Arc::new(HostEngine {
        images: images.clone(),
        registries: cfg.registries.clone(),
        runtime,
        networks: Some(network_manager),
        volumes_dir: cfg.state_dir.join("volumes"),
        allowed_host_paths: cfg.allowed_host_paths.clone(),
        live: live.clone(),
        metrics: metrics.clone(),
    });
    let policy = crate::policy::HostPolicy {
        allowed_host_paths: Some(cfg.allowed_host_paths.clone()),
    };
    // Manifests from git (a sync task, SIGHUP syncs now) or the directory (a watcher,
    // SIGHUP loads it again).
    let sync_now = Arc::new(tokio::sync::Notify::new());
    let mut _watcher = None;
    let (loader, git_sync): (crate::reconcile::Loader, _) = match &cfg.source {
        Some(git) => {
            metrics.register_source();
            tracing::info!(url = %git.url, reference = %git.reference, paths = ?git.paths, "manifests from git");
            let sync = crate::source::sync::GitSync {
                source: git.clone(),
                layout,
                policy,
                status: source_status,
                metrics: metrics.clone(),
                db: db.clone(),
                exe: std::env::current_exe().context("find the berth binary for fetches")?,
                events: events.clone(),
            };
            let loader = sync.loader();
            let task = sync.run(tx.clone(), sync_now.clone(), shutdown_rx.clone());
            (loader, Some(task))
        }
        None => {
            _watcher = Some(
                crate::watcher::watch(&cfg.manifests, tx.clone())
                    .context("start the manifest watcher")?,
            );
            tracing::info!(dir = %cfg.manifests.display(), "watching manifests");
            let dir = cfg.manifests.clone();
            let loader: crate::reconcile::Loader =
                Arc::new(move || crate::policy::load_dir(&dir, &policy));
            (loader, None)
        }
    };
    let git_task = git_sync.map(tokio::spawn);
    let reconciler = Arc::new(
        Reconciler::new(
            engine,
            db.clone(),
            live,
            metrics.clone(),
            last_load,
            health,
            ReconcileConfig {
                plan: PlanConfig {
                    backoff: cfg.restart_backoff,
                    default_network: cfg.default_network,
                    ..PlanConfig::default()
                },
                allow_empty: cfg.allow_empty,
                parallel: cfg.parallel_actions,
                resync: cfg.resync_interval,
                ..ReconcileConfig::default()
            },
            Clock::system(),
            loader,
            notifier.clone(),
        )
        .with_events(events),
    );
    let housekeeping = tokio::spawn(crate::image_gc::run(
        images,
        db,
        metrics,
        cfg.images.clone(),
        shutdown_rx.clone(),
    ));
    let hup_triggers = tx.clone();
    let control = tokio::spawn(reconciler.run(tx, rx, shutdown_rx));

    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("install SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping the agent"); break }
            _ = int.recv() => { tracing::info!("SIGINT: stopping the agent"); break }
            _ = hup.recv() => {
                if git_task.is_some() {
                    sync_now.notify_one();
                } else {
                    tracing::info!("SIGHUP: loading the manifest directory now");
                    let _ = hup_triggers.send(crate::reconcile::Trigger::ManifestsWritten);
                }
            }
        }
    }
    notifier.stopping();
    let _ = shutdown_tx.send(true);
    let _ = control.await;
    let _ = housekeeping.await;
    if let Some(task) = git_task {
        let _ = task.await;
    }
    for server in [server, socket_server] {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "status api"),
            Err(e) => tracing::warn!(error = %e, "status api task"),
        }
    }
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("agent stopped; containers keep running");
    Ok(())
}

/// Binds the API's unix socket: mode 0660, group `berth` when that group exists (root's
/// otherwise). A socket left by an agent that died is replaced; the state dir's lock keeps a
/// second agent from getting here.
fn bind_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("remove the old socket {}", path.display()))?,
        Ok(_) => anyhow::bail!(
            "{} exists and is not a socket (hint: move it away; berth serves its API there)",
            path.display()
        ),
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("listen on the unix socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", path.display()))?;
    if let Ok(Some(group)) = nix::unistd::Group::from_name("berth") {
        nix::unistd::chown(path, None, Some(group.gid))
            .with_context(|| format!("chown {} to group berth", path.display()))?;
    }
    Ok(listener)
}
