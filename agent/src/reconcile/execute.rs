//! Carrying out one planned action with an [`Engine`], recording every step in the state db
//! so that a crash at any point leaves a record the next pass can finish from. Records are
//! written only here, and the executor runs one action per object at a time, so no two
//! writers race on a record.

use std::sync::Arc;

use berth_engine::images::{pinned_reference, Image};
use berth_engine::state::{
    ContainerRecord, ContainerState, Reason, Revision, Rollout, StateDb, VolumeRecord,
};
use berth_spec::{ContainerSpec, PullPolicy, UpdateStrategy};
use tokio::sync::mpsc::UnboundedSender;

use super::action::{Action, RecreateReason};
use super::backoff::Backoff;
use super::desired::{DesiredContainer, DesiredVolume};
use super::engine::{Engine, ExitWatch, StartError};
use super::plan::recorded_spec;
use super::{Clock, Trigger};

/// How an action ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// It failed, and the failure is in the container's record (state `failed`, with the
    /// back-off there).
    Recorded(String),
    /// It failed and left the records as they were: retry with back-off.
    Retry(String),
}

/// What actions work with.
pub struct ExecCtx<E: Engine> {
    pub engine: Arc<E>,
    pub db: Arc<StateDb>,
    pub clock: Clock,
    pub backoff: Backoff,
    pub triggers: UnboundedSender<Trigger>,
}

impl<E: Engine> ExecCtx<E> {
    fn put(&self, r: &ContainerRecord) -> Result<(), String> {
        self.db
            .put_container(r)
            .map_err(|e| format!("record container {}: {e}", r.name))
    }

    /// Wakes the loop when the container's shim exits.
    pub fn follow(&self, name: &str, exit: ExitWatch) {
        let triggers = self.triggers.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            exit.await;
            // The loop is gone only during shutdown.
            let _ = triggers.send(Trigger::ContainerExited(name));
        });
    }
}

pub async fn execute<E: Engine>(ctx: &ExecCtx<E>, action: Action) -> Outcome {
    match run(ctx, action).await {
        Ok(o) => o,
        Err(e) => Outcome::Retry(e),
    }
}

async fn run<E: Engine>(ctx: &ExecCtx<E>, action: Action) -> Result<Outcome, String> {
    let e = &ctx.engine;
    match action {
        Action::EnsureNetwork(def) => e.ensure_network(def).await.map(|()| Outcome::Done),
        Action::RebuildNetwork { def, holders } => rebuild_network(ctx, def, holders).await,
        Action::RepairNetworks(defs) => e.repair_networks(defs).await.map(|()| Outcome::Done),
        Action::RemoveNetwork(name) => e.remove_network(&name).await.map(|()| Outcome::Done),
        Action::EnsureVolume(v) => ensure_volume(ctx, &v),
        Action::RetainVolume(mut r) => {
            r.retained = true;
            tracing::info!(volume = %r.name, "manifest gone, volume retained (reclaimPolicy: Retain)");
            put_volume(ctx, &r)
        }
        Action::RemoveVolume(r) => {
            e.delete_volume(&r.name)?;
            ctx.db
                .delete_volume(&r.name)
                .map_err(|e| format!("forget volume {}: {e}", r.name))?;
            tracing::info!(volume = %r.name, "volume deleted (reclaimPolicy: Delete)");
            Ok(Outcome::Done)
        }
        Action::Create(t) => create(ctx, &t, None, 0).await,
        Action::Recreate {
            target,
            old,
            reason,
            previous,
        } => recreate(ctx, &target, old, reason, previous).await,
        Action::Restart { target, old } => restart(ctx, &target, old).await,
        Action::Rollback {
            old,
            to,
            rejected,
            why,
        } => rollback(ctx, old, to, rejected, why).await,
        Action::Promote(mut r) => {
            tracing::info!(container = %r.name, revision = %super::plan::short(&r.spec_hash), "update is ready");
            r.rollout = None;
            ctx.put(&r).map(|()| Outcome::Done)
        }
        Action::Refresh { target, mut old } => {
            set_revision(&mut old, &target);
            ctx.put(&old).map(|()| Outcome::Done)
        }
        Action::Stop {
            old,
            reason,
            message,
        } => {
            tracing::warn!(container = %old.name, %message, "stopping container");
            e.stop(&old, &recorded_spec(&old)).await;
            finish(ctx, old, Some(reason), Some(message))
        }
        Action::RecordExit(old) => record_exit(ctx, old).await,
        Action::Reap(r) => {
            tracing::warn!(container = %r.name, id = %r.id, pids = ?e.cgroup_pids(&r.id), "processes left in the cgroup of a container that does not run: killing them");
            e.kill(&r.id).await.map(|()| Outcome::Done)
        }
        Action::ReleaseNetworks(r) => {
            e.detach(&r.id).await?;
            tracing::info!(container = %r.name, "finished container released its network addresses");
            Ok(Outcome::Done)
        }
        Action::Remove(old) => {
            stop_and_remove(ctx, &old).await?;
            ctx.db
                .delete_container(&old.name)
                .map_err(|e| format!("forget container {}: {e}", old.name))?;
            tracing::info!(container = %old.name, "container removed");
            Ok(Outcome::Done)
        }
        Action::KillStray(s) => {
            tracing::warn!(cgroup = %s.cgroup, pids = ?s.pids, "killing processes berth has no record of under its cgroup parent");
            e.kill_stray(&s.cgroup).await.map(|()| Outcome::Done)
        }
        Action::ReleaseOrphan(id) => {
            tracing::warn!(id = %id, "removing the network wiring of a container berth has no record of");
            e.detach(&id).await.map(|()| Outcome::Done)
        }
    }
}

fn put_volume<E: Engine>(ctx: &ExecCtx<E>, r: &VolumeRecord) -> Result<Outcome, String> {
    ctx.db
        .put_volume(r)
        .map_err(|e| format!("record volume {}: {e}", r.name))?;
    Ok(Outcome::Done)
}

fn ensure_volume<E: Engine>(ctx: &ExecCtx<E>, v: &DesiredVolume) -> Result<Outcome, String> {
    let existing = ctx
        .db
        .get_volume(&v.name)
        .map_err(|e| format!("read volume {}: {e}", v.name))?;
    ctx.engine.create_volume(&v.name)?;
    if existing.is_none() {
        tracing::info!(volume = %v.name, "volume created");
    }
    put_volume(
        ctx,
        &VolumeRecord {
            name: v.name.clone(),
            spec_hash: v.hash.clone(),
            reclaim_policy: v.spec.reclaim_policy.as_str().to_string(),
            source_file: v.source_file.clone(),
            retained: false,
            created_at_ms: existing.map_or(ctx.clock.now_ms(), |r| r.created_at_ms),
        },
    )
}

/// Makes `rec` run revision `t` (its spec, hashes and file).
fn set_revision(rec: &mut ContainerRecord, t: &DesiredContainer) {
    rec.spec_hash = t.hash.clone();
    rec.runtime_hash = Some(t.runtime_hash.clone());
    rec.spec_json = serde_json::to_string(&t.spec).expect("a container spec serializes");
    rec.source_file = t.source_file.clone();
    rec.image = t.spec.image.clone();
    rec.rejected_hash = t.rejected.clone();
}

/// 8 hex digits from the kernel's random pool: container ids must not repeat.
fn random_suffix() -> String {
    let mut buf = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_record<E: Engine>(ctx: &ExecCtx<E>, t: &DesiredContainer) -> ContainerRecord {
    let mut rec = ContainerRecord {
        name: t.name.clone(),
        id: format!("{}-{}", t.name, random_suffix()),
        source_file: String::new(),
        spec_hash: String::new(),
        runtime_hash: None,
        spec_json: String::new(),
        image: String::new(),
        image_digest: None,
        state: ContainerState::Pulling,
        shim_pid: None,
        shim_start_time: None,
        init_pid: None,
        exit_code: None,
        restart_count: 0,
        message: None,
        created_at_ms: ctx.clock.now_ms(),
        started_at_ms: None,
        finished_at_ms: None,
        reason: None,
        backoff_streak: 0,
        ever_ran: false,
        rollout: None,
        rejected_hash: None,
    };
    set_revision(&mut rec, t);
    rec
}

/// The image of `spec`, from the store or pulled as its pull policy says.
async fn ensure_image<E: Engine>(
    ctx: &ExecCtx<E>,
    name: &str,
    spec: &ContainerSpec,
) -> Result<Image, String> {
    let reference = &spec.image;
    let local = || ctx.engine.lookup_image(reference);
    match spec.image_pull_policy {
        PullPolicy::Never => local()?.ok_or_else(|| {
            format!("image {reference} is not present and imagePullPolicy is Never (hint: load it or set IfNotPresent)")
        }),
        PullPolicy::IfNotPresent => match local()? {
            Some(i) => Ok(i),
            None => ctx.engine.pull_image(name, reference).await,
        },
        PullPolicy::Always => ctx.engine.pull_image(name, reference).await,
    }
}

/// Records a failed setup or start of `rec`; the plan retries it with back-off.
fn fail<E: Engine>(
    ctx: &ExecCtx<E>,
    mut rec: ContainerRecord,
    reason: Reason,
    error: String,
) -> Result<Outcome, String> {
    tracing::warn!(container = %rec.name, reason = %reason, error = %error, "container did not start");
    rec.state = ContainerState::Failed;
    rec.reason = Some(reason);
    rec.message = Some(error.clone());
    rec.init_pid = None;
    rec.shim_pid = None;
    rec.shim_start_time = None;
    rec.exit_code = None;
    rec.finished_at_ms = Some(ctx.clock.now_ms());
    ctx.put(&rec)?;
    Ok(Outcome::Recorded(error))
}

/// Creates a new container record for `t` and starts it. `image`: already pulled.
async fn create<E: Engine>(
    ctx: &ExecCtx<E>,
    t: &DesiredContainer,
    image: Option<Image>,
    restart_count: u32,
) -> Result<Outcome, String> {
    let mut rec = new_record(ctx, t);
    rec.restart_count = restart_count;
    create_record(ctx, rec, t, image).await
}

async fn create_record<E: Engine>(
    ctx: &ExecCtx<E>,
    mut rec: ContainerRecord,
    t: &DesiredContainer,
    image: Option<Image>,
) -> Result<Outcome, String> {
    // An image already in the store spares the "pulling" record (one fsync less per start).
    let image = match image {
        Some(i) => Some(i),
        None if t.spec.image_pull_policy != PullPolicy::Always => {
            ctx.engine.lookup_image(&t.spec.image).ok().flatten()
        }
        None => None,
    };
    if let Some(i) = &image {
        rec.image_digest = Some(i.digest.clone());
        rec.state = ContainerState::Created;
    }
    ctx.put(&rec)?;
    let image = match image {
        Some(i) => i,
        None => match ensure_image(ctx, &t.name, &t.spec).await {
            Ok(i) => i,
            Err(e) => return fail(ctx, rec, Reason::SetupError, e),
        },
    };
    if rec.state != ContainerState::Created {
        rec.image_digest = Some(image.digest.clone());
        rec.state = ContainerState::Created;
        ctx.put(&rec)?;
    }
    start(ctx, rec, &t.spec, &image).await
}

/// Starts the container of `rec` (new or restarted) and records the outcome.
async fn start<E: Engine>(
    ctx: &ExecCtx<E>,
    mut rec: ContainerRecord,
    spec: &ContainerSpec,
    image: &Image,
) -> Result<Outcome, String> {
    match ctx.engine.start(&rec, spec, image).await {
        Ok(s) => {
            rec.state = ContainerState::Running;
            rec.shim_pid = Some(s.shim_pid);
            rec.shim_start_time = Some(s.shim_start_time);
            rec.init_pid = Some(s.init_pid);
            rec.exit_code = None;
            rec.started_at_ms = Some(ctx.clock.now_ms());
            rec.finished_at_ms = None;
            let first_run = !rec.ever_ran;
            rec.ever_ran = true;
            if rec.reason != Some(Reason::RolledBack) {
                rec.reason = None;
                rec.message = None;
            }
            if let (Some(ro), true) = (&mut rec.rollout, first_run) {
                // The update is judged from its first start, not from its pull.
                ro.started_at_ms = rec.started_at_ms.unwrap_or(ro.started_at_ms);
            }
            ctx.put(&rec)?;
            tracing::info!(container = %rec.name, id = %rec.id, pid = s.init_pid, "container running");
            ctx.follow(&rec.name, s.exit);
            Ok(Outcome::Done)
        }
        Err(StartError::Setup(e)) => fail(ctx, rec, Reason::SetupError, e),
        Err(StartError::Process(e)) => fail(ctx, rec, Reason::StartError, e),
    }
}

/// Stops whatever still runs of a recorded container and removes its host objects.
/// A running container's record says `exited` from its stop on, so the status never shows a
/// stopped process as running while the rest of it is taken down.
async fn stop_and_remove<E: Engine>(ctx: &ExecCtx<E>, old: &ContainerRecord) -> Result<(), String> {
    ctx.engine.stop(old, &recorded_spec(old)).await;
    if old.state == ContainerState::Running {
        finish(ctx, old.clone(), old.reason, old.message.clone())?;
    }
    ctx.engine.remove(&old.id).await
}

async fn recreate<E: Engine>(
    ctx: &ExecCtx<E>,
    t: &DesiredContainer,
    mut old: ContainerRecord,
    reason: RecreateReason,
    previous: Option<Revision>,
) -> Result<Outcome, String> {
    tracing::info!(container = %t.name, reason = reason.as_str(), "recreating container");
    let mut image = None;
    if t.spec.update.strategy == UpdateStrategy::DownloadThenKill {
        // The new image is pulled and verified before the old container stops.
        match ensure_image(ctx, &t.name, &t.spec).await {
            Ok(i) => image = Some(i),
            Err(e) if old.state == ContainerState::Running => {
                old.message = Some(format!(
                    "update held back, the running container is kept: {e}"
                ));
                ctx.put(&old)?;
                return Ok(Outcome::Retry(e));
            }
            Err(e) => {
                stop_and_remove(ctx, &old).await?;
                let mut rec = new_record(ctx, t);
                rec.restart_count = old.restart_count;
                return fail(ctx, rec, Reason::SetupError, e);
            }
        }
    }
    stop_and_remove(ctx, &old).await?;
    let mut rec = new_record(ctx, t);
    // The same container made again keeps its history; a new revision starts its own.
    if reason != RecreateReason::SpecChanged {
        rec.restart_count = old.restart_count;
        rec.backoff_streak = old.backoff_streak;
    }
    rec.rollout = previous.map(|previous| Rollout {
        previous,
        started_at_ms: ctx.clock.now_ms(),
    });
    create_record(ctx, rec, t, image).await
}

async fn restart<E: Engine>(
    ctx: &ExecCtx<E>,
    t: &DesiredContainer,
    old: ContainerRecord,
) -> Result<Outcome, String> {
    let mut rec = old;
    // Never two copies: whatever is left of the last run goes first.
    ctx.engine.kill(&rec.id).await?;
    rec.backoff_streak = ctx.backoff.streak(&rec) + 1;
    rec.restart_count += 1;
    set_revision(&mut rec, t);
    let image = match ensure_image(ctx, &t.name, &t.spec).await {
        Ok(i) => i,
        Err(e) => return fail(ctx, rec, Reason::SetupError, e),
    };
    rec.image_digest = Some(image.digest.clone());
    tracing::info!(container = %rec.name, restarts = rec.restart_count, "restarting container");
    start(ctx, rec, &t.spec, &image).await
}

async fn rollback<E: Engine>(
    ctx: &ExecCtx<E>,
    mut old: ContainerRecord,
    to: Revision,
    rejected: String,
    why: String,
) -> Result<Outcome, String> {
    tracing::warn!(container = %old.name, %why, "rolling back");
    if old.spec_hash == to.spec_hash {
        // The update never replaced the running container: only remember the verdict.
        old.rejected_hash = Some(rejected);
        old.reason = Some(Reason::RolledBack);
        old.message = Some(why);
        old.rollout = None;
        ctx.put(&old)?;
        return Ok(Outcome::Done);
    }
    let mut spec: ContainerSpec = serde_json::from_str(&to.spec_json)
        .map_err(|e| format!("decode the previous revision of {}: {e}", old.name))?;
    // Exactly the image it ran, even if its tag has moved since.
    if let Some(pinned) = to
        .image_digest
        .as_deref()
        .and_then(|d| pinned_reference(&to.image, d))
    {
        spec.image = pinned;
    }
    let image = match ensure_image(ctx, &old.name, &spec).await {
        Ok(i) => i,
        Err(e) => return Ok(Outcome::Retry(format!("roll back {}: {e}", old.name))),
    };
    stop_and_remove(ctx, &old).await?;
    let target = DesiredContainer {
        name: old.name.clone(),
        spec: serde_json::from_str(&to.spec_json).expect("decoded above"),
        hash: to.spec_hash.clone(),
        runtime_hash: to.runtime_hash.clone().unwrap_or(to.spec_hash.clone()),
        source_file: to.source_file.clone(),
        origin: super::desired::Origin::Loaded,
        rejected: Some(rejected),
    };
    let mut rec = new_record(ctx, &target);
    rec.restart_count = old.restart_count;
    rec.reason = Some(Reason::RolledBack);
    rec.message = Some(why);
    rec.image_digest = Some(image.digest.clone());
    rec.state = ContainerState::Created;
    ctx.put(&rec)?;
    start(ctx, rec, &target.spec, &image).await
}

/// Records that the stopped container `rec` ended, as its exit record says.
fn finish<E: Engine>(
    ctx: &ExecCtx<E>,
    mut rec: ContainerRecord,
    reason: Option<Reason>,
    message: Option<String>,
) -> Result<Outcome, String> {
    let exit = ctx.engine.exit_record(&rec.id);
    rec.state = ContainerState::Exited;
    rec.exit_code = exit.as_ref().map(|e| e.exit_code);
    rec.finished_at_ms = Some(
        exit.as_ref()
            .map(|e| e.finished_ms())
            .unwrap_or_else(|| ctx.clock.now_ms()),
    );
    rec.reason = reason;
    rec.message = message;
    ctx.put(&rec)?;
    Ok(Outcome::Done)
}

async fn record_exit<E: Engine>(
    ctx: &ExecCtx<E>,
    mut rec: ContainerRecord,
) -> Result<Outcome, String> {
    let Some(exit) = ctx.engine.exit_record(&rec.id) else {
        // The shim died without a word (killed): its container may still run. Nothing of it
        // may outlive the record, or a restart would run it twice.
        ctx.engine.kill(&rec.id).await?;
        tracing::warn!(container = %rec.name, id = %rec.id, "the container's shim is gone: killed what was left of the container");
        return finish(
            ctx,
            rec,
            Some(Reason::ShimLost),
            Some("its shim died; berth killed what was left of the container".into()),
        );
    };
    // Processes its init left behind in the cgroup go too.
    ctx.engine.kill(&rec.id).await?;
    let oom = ctx.engine.oom_killed(&rec.id);
    let (state, reason) = match (&exit.error, oom, exit.exit_code) {
        (Some(_), _, _) => (ContainerState::Failed, Reason::StartError),
        (None, true, _) => (ContainerState::Exited, Reason::OOMKilled),
        (None, false, 0) => (ContainerState::Exited, Reason::Completed),
        (None, false, _) => (ContainerState::Exited, Reason::Error),
    };
    tracing::info!(container = %rec.name, exit_code = exit.exit_code, reason = %reason, "container exited");
    rec.state = state;
    rec.exit_code = Some(exit.exit_code);
    rec.finished_at_ms = Some(exit.finished_ms());
    rec.reason = Some(reason);
    rec.message = exit.error;
    ctx.put(&rec)?;
    Ok(Outcome::Done)
}

async fn rebuild_network<E: Engine>(
    ctx: &ExecCtx<E>,
    def: berth_engine::network::NetworkDef,
    holders: Vec<ContainerRecord>,
) -> Result<Outcome, String> {
    for mut h in holders {
        tracing::info!(container = %h.name, network = %def.name, "network changes: the container is made again on it");
        stop_and_remove(ctx, &h).await?;
        h.state = ContainerState::Exited;
        h.reason = Some(Reason::NetworkChanged);
        h.message = Some(format!("network {} was rebuilt", def.name));
        h.init_pid = None;
        h.shim_pid = None;
        h.shim_start_time = None;
        h.finished_at_ms = Some(ctx.clock.now_ms());
        ctx.put(&h)?;
    }
    ctx.engine.ensure_network(def).await?;
    Ok(Outcome::Done)
}

#[cfg(test)]
#[path = "execute_tests.rs"]
mod tests;
