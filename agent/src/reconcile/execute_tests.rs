//! The executor against the fake engine and a real state db: which host calls each action
//! makes, in which order, and what it records.

use std::sync::Arc;

use berth_engine::state::{ContainerState, Reason, StateDb};
use tokio::sync::mpsc;

use super::*;
use crate::reconcile::desired::Origin;
use crate::reconcile::fake::{image, Call, FakeEngine};
use crate::reconcile::Clock;

struct Lab {
    fake: Arc<FakeEngine>,
    ctx: ExecCtx<FakeEngine>,
    _dir: tempfile::TempDir,
    _triggers: mpsc::UnboundedReceiver<Trigger>,
}

fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::tokio(1_000_000);
    let fake = FakeEngine::new(clock.clone());
    let (tx, rx) = mpsc::unbounded_channel();
    let ctx = ExecCtx {
        engine: fake.clone(),
        db: Arc::new(StateDb::open(dir.path()).unwrap()),
        clock,
        backoff: Backoff::default(),
        triggers: tx,
    };
    Lab {
        fake,
        ctx,
        _dir: dir,
        _triggers: rx,
    }
}

fn target(name: &str, hash: &str, yaml: &str) -> DesiredContainer {
    DesiredContainer {
        name: name.into(),
        spec: serde_yaml::from_str(&format!("image: busybox:1\n{yaml}")).unwrap(),
        hash: hash.into(),
        runtime_hash: format!("run-{hash}"),
        source_file: "/m/a.yaml".into(),
        origin: Origin::Loaded,
        rejected: None,
    }
}

impl Lab {
    fn record(&self, name: &str) -> ContainerRecord {
        self.ctx.db.get_container(name).unwrap().expect("a record")
    }

    async fn run(&self, a: Action) -> Outcome {
        execute(&self.ctx, a).await
    }

    /// Creates `name` on image `busybox:1` (served with digest `a…`) and clears the calls.
    async fn created(&self, name: &str, hash: &str, yaml: &str) -> ContainerRecord {
        self.fake.serve("busybox:1", 'a');
        assert_eq!(
            self.run(Action::Create(target(name, hash, yaml))).await,
            Outcome::Done
        );
        self.fake.take_calls();
        self.record(name)
    }
}

#[tokio::test(start_paused = true)]
async fn create_pulls_once_starts_and_records_the_revision() {
    let l = lab();
    l.fake.serve("busybox:1", 'a');
    let out = l.run(Action::Create(target("web", "h1", ""))).await;
    assert_eq!(out, Outcome::Done);
    let digest = format!("sha256:{}", "a".repeat(64));
    assert_eq!(
        l.fake.calls(),
        [
            Call::Pull("busybox:1".into()),
            Call::Start("web".into(), digest.clone())
        ]
    );
    let r = l.record("web");
    assert_eq!(
        (
            r.state,
            r.spec_hash.as_str(),
            r.runtime_hash.as_deref(),
            r.image_digest.as_deref(),
            r.ever_ran,
            r.restart_count
        ),
        (
            ContainerState::Running,
            "h1",
            Some("run-h1"),
            Some(digest.as_str()),
            true,
            0
        )
    );
    assert!(r.id.starts_with("web-") && r.id.len() == 12, "{}", r.id);
    assert_eq!(r.started_at_ms, Some(1_000_000));
    // The image is local now: a second container does not pull.
    l.fake.take_calls();
    l.run(Action::Create(target("api", "h2", ""))).await;
    assert_eq!(
        l.fake.calls(),
        [Call::Start("api".into(), digest)],
        "no pull"
    );
}

#[tokio::test(start_paused = true)]
async fn failed_setup_and_failed_starts_are_recorded_with_their_reason() {
    let l = lab();
    let out = l.run(Action::Create(target("ghost", "h", ""))).await;
    assert_eq!(
        out,
        Outcome::Recorded("pull busybox:1: manifest unknown".into())
    );
    let r = l.record("ghost");
    assert_eq!(
        (r.state, r.reason, r.message.as_deref(), r.ever_ran),
        (
            ContainerState::Failed,
            Some(Reason::SetupError),
            Some("pull busybox:1: manifest unknown"),
            false
        )
    );

    l.fake.serve("busybox:1", 'a');
    for (err, reason) in [
        (
            StartError::Process("exec /bin/nope: no such file".into()),
            Reason::StartError,
        ),
        (
            StartError::Setup("network default is not ready".into()),
            Reason::SetupError,
        ),
    ] {
        l.fake.state().start_errors.insert("x".into(), err.clone());
        let out = l.run(Action::Create(target("x", "h", ""))).await;
        assert_eq!(out, Outcome::Recorded(err.to_string()));
        let r = l.record("x");
        assert_eq!((r.state, r.reason), (ContainerState::Failed, Some(reason)));
    }
}

#[tokio::test(start_paused = true)]
async fn an_update_pulls_before_it_stops_the_old_container() {
    let l = lab();
    let old = l.created("web", "h1", "").await;
    l.fake.serve("busybox:2", 'b');
    let t = target("web", "h2", "").with_image("busybox:2");
    let out = l
        .run(Action::Recreate {
            target: t,
            old: old.clone(),
            reason: RecreateReason::SpecChanged,
            previous: Some(super::super::plan::revision_of(&old)),
        })
        .await;
    assert_eq!(out, Outcome::Done);
    let digest_b = format!("sha256:{}", "b".repeat(64));
    assert_eq!(
        l.fake.calls(),
        [
            Call::Pull("busybox:2".into()),
            Call::Stop("web".into()),
            Call::Remove(old.id.clone()),
            Call::Start("web".into(), digest_b),
        ]
    );
    let r = l.record("web");
    assert_ne!(r.id, old.id, "a new container");
    assert_eq!(r.spec_hash, "h2");
    let ro = r.rollout.expect("a rollout to judge");
    assert_eq!(ro.previous.spec_hash, "h1");
    assert_eq!(ro.previous.image_digest, old.image_digest);
}

#[tokio::test(start_paused = true)]
async fn an_update_that_cannot_pull_keeps_the_old_container_running() {
    let l = lab();
    let old = l.created("web", "h1", "").await;
    let t = target("web", "h2", "").with_image("busybox:9");
    let out = l
        .run(Action::Recreate {
            target: t,
            old: old.clone(),
            reason: RecreateReason::SpecChanged,
            previous: None,
        })
        .await;
    assert_eq!(
        out,
        Outcome::Retry("pull busybox:9: manifest unknown".into())
    );
    assert_eq!(
        l.fake.calls(),
        [Call::Pull("busybox:9".into())],
        "nothing stopped"
    );
    let r = l.record("web");
    assert_eq!(
        (r.id.as_str(), r.state),
        (old.id.as_str(), ContainerState::Running)
    );
    assert_eq!(
        r.message.as_deref(),
        Some("update held back, the running container is kept: pull busybox:9: manifest unknown")
    );
}

#[tokio::test(start_paused = true)]
async fn kill_then_download_frees_the_old_container_first() {
    let l = lab();
    let old = l.created("web", "h1", "").await;
    l.fake.serve("busybox:2", 'b');
    let t = target("web", "h2", "update: {strategy: KillThenDownload}").with_image("busybox:2");
    l.run(Action::Recreate {
        target: t,
        old: old.clone(),
        reason: RecreateReason::SpecChanged,
        previous: None,
    })
    .await;
    assert_eq!(
        l.fake.calls(),
        [
            Call::Stop("web".into()),
            Call::Remove(old.id),
            Call::Pull("busybox:2".into()),
            Call::Start("web".into(), format!("sha256:{}", "b".repeat(64))),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_kills_what_is_left_first_and_counts() {
    let l = lab();
    let r = l.created("web", "h1", "").await;
    // The shim died with the container still running: a restart must not make a second copy.
    l.fake.kill_shim(&r.id);
    let out = l.run(Action::RecordExit(r.clone())).await;
    assert_eq!(out, Outcome::Done);
    assert_eq!(l.fake.take_calls(), [Call::Kill(r.id.clone())]);
    let ended = l.record("web");
    assert_eq!(
        (ended.state, ended.reason),
        (ContainerState::Exited, Some(Reason::ShimLost))
    );
    assert!(l.fake.running().is_empty(), "nothing of it runs");

    let out = l
        .run(Action::Restart {
            target: target("web", "h1", ""),
            old: ended,
        })
        .await;
    assert_eq!(out, Outcome::Done);
    let r2 = l.record("web");
    assert_eq!(
        (
            r2.id.as_str(),
            r2.restart_count,
            r2.backoff_streak,
            r2.state
        ),
        (r.id.as_str(), 1, 1, ContainerState::Running)
    );
    assert_eq!(l.fake.running().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn exits_are_recorded_as_the_shim_wrote_them() {
    for (code, oom, want) in [
        (0, false, Reason::Completed),
        (3, false, Reason::Error),
        (137, true, Reason::OOMKilled),
    ] {
        let l = lab();
        let r = l.created("job", "h", "").await;
        if oom {
            l.fake.state().oom.insert(r.id.clone());
        }
        l.fake.exit(&r.id, code);
        assert_eq!(l.run(Action::RecordExit(r)).await, Outcome::Done);
        let e = l.record("job");
        assert_eq!(
            (e.state, e.exit_code, e.reason),
            (ContainerState::Exited, Some(code), Some(want))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_rollback_runs_the_exact_previous_image_and_remembers_the_verdict() {
    let l = lab();
    let old = l.created("web", "h1", "").await;
    let previous = super::super::plan::revision_of(&old);
    // The tag moved on; only the pinned digest finds the image that ran.
    let pinned = format!("docker.io/library/busybox@sha256:{}", "a".repeat(64));
    l.fake
        .state()
        .images
        .insert(pinned.clone(), image(&pinned, 'a'));
    l.fake.serve("busybox:2", 'b');
    let new = target("web", "h2", "").with_image("busybox:2");
    l.run(Action::Recreate {
        target: new,
        old,
        reason: RecreateReason::SpecChanged,
        previous: Some(previous.clone()),
    })
    .await;
    let bad = l.record("web");
    l.fake.take_calls();
    let out = l
        .run(Action::Rollback {
            old: bad.clone(),
            to: previous,
            rejected: "h2".into(),
            why: "update to revision h2 … rolled back".into(),
        })
        .await;
    assert_eq!(out, Outcome::Done);
    assert_eq!(
        l.fake.calls(),
        [
            Call::Stop("web".into()),
            Call::Remove(bad.id.clone()),
            Call::Start("web".into(), format!("sha256:{}", "a".repeat(64))),
        ]
    );
    let r = l.record("web");
    assert_eq!(
        (
            r.spec_hash.as_str(),
            r.rejected_hash.as_deref(),
            r.reason,
            r.message.as_deref(),
            r.rollout.is_none()
        ),
        (
            "h1",
            Some("h2"),
            Some(Reason::RolledBack),
            Some("update to revision h2 … rolled back"),
            true
        )
    );
}

#[tokio::test(start_paused = true)]
async fn remove_stops_removes_and_forgets() {
    let l = lab();
    let r = l.created("web", "h", "").await;
    assert_eq!(l.run(Action::Remove(r.clone())).await, Outcome::Done);
    assert_eq!(
        l.fake.calls(),
        [Call::Stop("web".into()), Call::Remove(r.id)]
    );
    assert_eq!(l.ctx.db.get_container("web").unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_rebuilt_network_takes_its_containers_down_first() {
    let l = lab();
    let r = l.created("web", "h", "").await;
    let def = berth_engine::network::NetworkDef {
        name: "front".into(),
        spec: Default::default(),
        hash: "n2".into(),
        source_file: String::new(),
    };
    let out = l
        .run(Action::RebuildNetwork {
            def,
            holders: vec![r.clone()],
        })
        .await;
    assert_eq!(out, Outcome::Done);
    assert_eq!(
        l.fake.calls(),
        [
            Call::Stop("web".into()),
            Call::Remove(r.id),
            Call::EnsureNetwork("front".into())
        ]
    );
    let after = l.record("web");
    assert_eq!(
        (after.state, after.reason),
        (ContainerState::Exited, Some(Reason::NetworkChanged))
    );
}

#[tokio::test(start_paused = true)]
async fn volumes_are_created_recorded_retained_and_deleted() {
    let l = lab();
    let v = crate::reconcile::desired::DesiredVolume {
        name: "data".into(),
        spec: serde_yaml::from_str("reclaimPolicy: Delete").unwrap(),
        hash: "v1".into(),
        source_file: "/m/v.yaml".into(),
        origin: Origin::Loaded,
    };
    assert_eq!(l.run(Action::EnsureVolume(v)).await, Outcome::Done);
    let rec = l.ctx.db.get_volume("data").unwrap().unwrap();
    assert_eq!(
        (rec.reclaim_policy.as_str(), rec.retained, rec.created_at_ms),
        ("Delete", false, 1_000_000)
    );
    assert_eq!(
        l.run(Action::RetainVolume(rec.clone())).await,
        Outcome::Done
    );
    assert!(l.ctx.db.get_volume("data").unwrap().unwrap().retained);
    assert_eq!(l.run(Action::RemoveVolume(rec)).await, Outcome::Done);
    assert_eq!(l.ctx.db.get_volume("data").unwrap(), None);
    assert_eq!(
        l.fake.calls(),
        [
            Call::CreateVolume("data".into()),
            Call::DeleteVolume("data".into())
        ]
    );
}

impl DesiredContainer {
    fn with_image(mut self, image: &str) -> DesiredContainer {
        self.spec.image = image.into();
        self
    }
}
