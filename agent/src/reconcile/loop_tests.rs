//! The whole loop (load, observe, plan, execute) against the fake engine on tokio's paused
//! clock: back-off, debounce, health and rollback timing, measured in virtual time.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_engine::state::{ContainerState, Reason, StateDb};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::engine::ProbeResult;
use super::fake::{Call, FakeEngine};
use super::health::HealthBoard;
use super::*;

type Files = Arc<Mutex<Vec<(PathBuf, Vec<u8>)>>>;

struct LoopLab {
    fake: Arc<FakeEngine>,
    db: Arc<StateDb>,
    live: Arc<LiveStatus>,
    metrics: Arc<Metrics>,
    files: Files,
    tx: mpsc::UnboundedSender<Trigger>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

fn container(name: &str, yaml: &str) -> String {
    format!("apiVersion: berth/v1\nkind: Container\nmetadata: {{name: {name}}}\nspec:\n  image: busybox:1\n  networkMode: none\n{yaml}")
}

impl LoopLab {
    fn start(cfg: ReconcileConfig) -> LoopLab {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::tokio(1_000_000);
        let fake = FakeEngine::new(clock.clone());
        fake.serve("busybox:1", 'a');
        fake.serve("busybox:2", 'b');
        let db = Arc::new(StateDb::open(dir.path()).unwrap());
        let live = Arc::new(LiveStatus::default());
        let metrics = Arc::new(Metrics::new());
        let files: Files = Arc::default();
        let loaded = files.clone();
        let loader: Loader =
            Arc::new(move || berth_spec::load_files(loaded.lock().unwrap().clone()));
        let r = Arc::new(Reconciler::new(
            fake.clone(),
            db.clone(),
            live.clone(),
            metrics.clone(),
            Arc::new(LastLoad::new("/m".into())),
            Arc::new(HealthBoard::default()),
            cfg,
            clock,
            loader,
            Arc::new(crate::service::Notifier::disabled()),
        ));
        let (tx, rx) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(r.run(tx.clone(), rx, shutdown_rx));
        LoopLab {
            fake,
            db,
            live,
            metrics,
            files,
            tx,
            shutdown,
            task,
            _dir: dir,
        }
    }

    fn write(&self, file: &str, text: &str) {
        let path = PathBuf::from(format!("/m/{file}"));
        let mut files = self.files.lock().unwrap();
        files.retain(|(p, _)| *p != path);
        files.push((path, text.as_bytes().to_vec()));
        drop(files);
        self.tx.send(Trigger::ManifestsWritten).unwrap();
    }

    fn passes(&self) -> u64 {
        self.metrics
            .reconcile_total
            .with_label_values(&["ok"])
            .get()
    }

    /// Waits (virtual time) until `f` holds, checking every 10ms, at most `limit`.
    async fn until<T>(&self, limit: Duration, mut f: impl FnMut(&LoopLab) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out (virtual {limit:?})");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn state_of(&self, name: &str) -> Option<ContainerState> {
        self.db.get_container(name).unwrap().map(|r| r.state)
    }

    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        self.task.await.unwrap();
    }
}

fn starts_of(fake: &FakeEngine, name: &str) -> Vec<Instant> {
    fake.state()
        .start_times
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, t)| *t)
        .collect()
}

/// Ends every run of `name` as soon as it starts, with `code`.
fn crash_loop(fake: Arc<FakeEngine>, name: &'static str, code: i32) -> tokio::task::JoinHandle<()> {
    crash_loop_on(fake, name, None, code)
}

/// Ends every run of `name` (only those on the image whose digest is all `digest_char`, if
/// given) as soon as it starts, with `code`.
fn crash_loop_on(
    fake: Arc<FakeEngine>,
    name: &'static str,
    digest_char: Option<char>,
    code: i32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let id = match digest_char {
                Some(c) => fake.running_on(name, c),
                None => fake.running().get(name).cloned(),
            };
            if let Some(id) = id {
                fake.exit(&id, code);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

fn gaps(starts: &[Instant]) -> Vec<u64> {
    starts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_crash_loop_backs_off_exponentially_up_to_max() {
    let cfg = ReconcileConfig {
        plan: PlanConfig {
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(8),
                reset_after: Duration::from_secs(60),
            },
            ..PlanConfig::default()
        },
        ..ReconcileConfig::default()
    };
    let lab = LoopLab::start(cfg);
    let crasher = crash_loop(lab.fake.clone(), "crash", 1);
    lab.write("c.yaml", &container("crash", ""));
    lab.until(Duration::from_secs(120), |l| {
        (starts_of(&l.fake, "crash").len() >= 7).then_some(())
    })
    .await;
    crasher.abort();
    let gaps = gaps(&starts_of(&lab.fake, "crash"));
    let want = [1_000, 2_000, 4_000, 8_000, 8_000, 8_000];
    for (got, want) in gaps.iter().zip(want) {
        assert!(
            (want..want + 50).contains(got),
            "gaps {gaps:?} are not the back-off {want}ms"
        );
    }
    let r = lab.db.get_container("crash").unwrap().unwrap();
    assert_eq!(
        r.restart_count as usize,
        starts_of(&lab.fake, "crash").len() - 1
    );
    lab.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_status_shows_the_back_off_and_when_the_restart_comes() {
    let lab = LoopLab::start(ReconcileConfig::default());
    let crasher = crash_loop(lab.fake.clone(), "crash", 1);
    lab.write("c.yaml", &container("crash", ""));
    // After the third start the wait is 4s.
    lab.until(Duration::from_secs(30), |l| {
        (starts_of(&l.fake, "crash").len() >= 3).then_some(())
    })
    .await;
    crasher.abort();
    let wait = lab
        .until(Duration::from_secs(5), |l| {
            let view = l.live.view(
                &l.db.list_containers().unwrap(),
                &[],
                &HealthBoard::default(),
            );
            view.into_iter()
                .find(|c| c.name == "crash" && c.backoff.is_some())
        })
        .await;
    assert_eq!(wait.backoff.as_deref(), Some("4s"));
    assert_eq!(wait.waiting_for.as_deref(), Some("restart back-off (4s)"));
    let finished = wait.finished_at.unwrap();
    let next = wait.next_restart_at.unwrap();
    assert!((4..=5).contains(&(next - finished)), "{finished} → {next}");
    lab.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_long_healthy_run_resets_the_back_off() {
    let cfg = ReconcileConfig {
        plan: PlanConfig {
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
                reset_after: Duration::from_secs(20),
            },
            ..PlanConfig::default()
        },
        ..ReconcileConfig::default()
    };
    let lab = LoopLab::start(cfg);
    lab.write("c.yaml", &container("app", ""));
    let crasher = crash_loop(lab.fake.clone(), "app", 1);
    lab.until(Duration::from_secs(60), |l| {
        (starts_of(&l.fake, "app").len() >= 4).then_some(())
    })
    .await;
    crasher.abort();
    // Now it runs for 30s (longer than resetAfter) before it crashes again.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let id = lab.fake.running()["app"].clone();
    lab.fake.exit(&id, 1);
    lab.until(Duration::from_secs(10), |l| {
        (starts_of(&l.fake, "app").len() >= 5).then_some(())
    })
    .await;
    let gaps = gaps(&starts_of(&lab.fake, "app"));
    let last = *gaps.last().unwrap();
    assert!(
        (30_000..31_100).contains(&last),
        "restarted 1s after the crash, not 8s: {gaps:?}"
    );
    let r = lab.db.get_container("app").unwrap().unwrap();
    assert_eq!((r.restart_count, r.backoff_streak), (4, 1));
    lab.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_file_events_makes_one_pass_after_it_ends() {
    let cfg = ReconcileConfig {
        debounce: Duration::from_millis(100),
        ..ReconcileConfig::default()
    };
    let lab = LoopLab::start(cfg);
    // The first pass (at start) and its follow-ups settle.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = lab.passes();
    let began = Instant::now();
    for _ in 0..10 {
        lab.tx.send(Trigger::ManifestsChanged).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lab.passes(), before, "no pass while the burst goes on");
    let last_event = began + Duration::from_millis(180);
    lab.until(Duration::from_secs(2), |l| {
        (l.passes() > before).then_some(())
    })
    .await;
    let waited = Instant::now() - last_event;
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_millis(130),
        "{waited:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lab.passes(), before + 1, "one pass for the whole burst");
    // A complete write skips the wait.
    let t = Instant::now();
    lab.write("a.yaml", &container("a", ""));
    lab.until(Duration::from_secs(1), |l| l.state_of("a")).await;
    assert!(Instant::now() - t < Duration::from_millis(20));
    lab.stop().await;
}

fn unhealthy() -> ProbeResult {
    ProbeResult {
        healthy: false,
        output: "connection refused".into(),
        exit_code: None,
    }
}

fn healthy() -> ProbeResult {
    ProbeResult {
        healthy: true,
        output: "ok".into(),
        exit_code: Some(0),
    }
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_container_is_restarted_after_retries_probes() {
    let lab = LoopLab::start(ReconcileConfig::default());
    lab.fake
        .state()
        .probes
        .insert("web".into(), [unhealthy()].into());
    lab.write(
        "w.yaml",
        &container(
            "web",
            "  healthcheck: {tcp: {port: 80}, interval: 10s, timeout: 1s, retries: 3, onUnhealthy: restart}\n",
        ),
    );
    let started = lab
        .until(Duration::from_secs(5), |l| {
            starts_of(&l.fake, "web").first().copied()
        })
        .await;
    let stopped = lab
        .until(Duration::from_secs(60), |l| {
            l.fake
                .calls()
                .contains(&Call::Stop("web".into()))
                .then(Instant::now)
        })
        .await;
    let after = (stopped - started).as_millis();
    assert!(
        (30_000..30_100).contains(&after),
        "stopped {after}ms after the start"
    );
    let r = lab.db.get_container("web").unwrap().unwrap();
    assert_eq!(r.reason, Some(Reason::Unhealthy));
    assert_eq!(
        r.message.as_deref(),
        Some("unhealthy after 3 failed probes, restarting it: connection refused")
    );
    // And started again after the back-off (1s).
    lab.until(Duration::from_secs(5), |l| {
        (starts_of(&l.fake, "web").len() == 2).then_some(())
    })
    .await;
    lab.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_dependent_starts_once_its_dependency_is_healthy() {
    let lab = LoopLab::start(ReconcileConfig::default());
    lab.fake
        .state()
        .probes
        .insert("db".into(), [unhealthy(), unhealthy(), healthy()].into());
    lab.write(
        "db.yaml",
        &container(
            "db",
            "  healthcheck: {tcp: {port: 5432}, startPeriod: 1m, startInterval: 2s}\n",
        ),
    );
    lab.write(
        "web.yaml",
        &container("web", "  dependsOn: [{name: db, condition: Healthy}]\n"),
    );
    let db_started = lab
        .until(Duration::from_secs(5), |l| {
            starts_of(&l.fake, "db").first().copied()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let view = lab.live.view(
        &lab.db.list_containers().unwrap(),
        &[],
        &HealthBoard::default(),
    );
    let web = view.iter().find(|c| c.name == "web").unwrap();
    assert_eq!(
        (web.state.as_str(), web.waiting_for.as_deref()),
        ("waiting", Some("db to be healthy"))
    );
    let web_started = lab
        .until(Duration::from_secs(30), |l| {
            starts_of(&l.fake, "web").first().copied()
        })
        .await;
    // Two failed probes (not counted in the start period), healthy at the third, 6s in.
    let after = (web_started - db_started).as_millis();
    assert!(
        (6_000..6_100).contains(&after),
        "web started {after}ms after db"
    );
    lab.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_killed_shim_never_leaves_two_copies() {
    let lab = LoopLab::start(ReconcileConfig {
        plan: PlanConfig {
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(1),
                reset_after: Duration::from_secs(60),
            },
            ..PlanConfig::default()
        },
        ..ReconcileConfig::default()
    });
    lab.write("s.yaml", &container("sleeper", ""));
    for round in 0..20 {
        let id = lab
            .until(Duration::from_secs(5), |l| {
                l.fake.running().get("sleeper").cloned()
            })
            .await;
        lab.fake.kill_shim(&id);
        lab.tx
            .send(Trigger::ContainerExited("sleeper".into()))
            .unwrap();
        // Until it runs again, at most one copy runs at any moment.
        lab.until(Duration::from_secs(60), |l| {
            let copies = l.fake.state().cgroups.len();
            assert!(copies <= 1, "round {round}: {copies} copies");
            l.fake
                .running()
                .get("sleeper")
                .filter(|new| **new == id && starts_of(&l.fake, "sleeper").len() > round + 1)
                .cloned()
        })
        .await;
    }
    let r = lab.db.get_container("sleeper").unwrap().unwrap();
    assert_eq!(r.restart_count, 20);
    let kills = lab
        .fake
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Kill(_)))
        .count();
    assert_eq!(kills, 20, "each dead shim's container was killed first");
    lab.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_bad_update_is_rolled_back_and_not_tried_again() {
    let lab = LoopLab::start(ReconcileConfig::default());
    let good = container("web", "  update: {minReady: 5s, rollbackAfter: 20s}\n");
    lab.write("w.yaml", &good);
    let first = lab
        .until(Duration::from_secs(5), |l| {
            l.fake.running().get("web").cloned()
        })
        .await;
    // Ready: promoted after minReady (nothing to promote on a first create: no rollout).
    tokio::time::sleep(Duration::from_secs(10)).await;
    lab.write("w.yaml", &good.replace("busybox:1", "busybox:2"));
    let crasher = crash_loop_on(lab.fake.clone(), "web", Some('b'), 1);
    // It never keeps running for 5s; at 20s it is rolled back to busybox:1.
    let rolled = lab
        .until(Duration::from_secs(60), |l| {
            l.db.get_container("web")
                .unwrap()
                .filter(|r| r.reason == Some(Reason::RolledBack))
        })
        .await;
    crasher.abort();
    assert_ne!(rolled.id, first);
    assert_eq!(
        rolled.image_digest,
        Some(format!("sha256:{}", "a".repeat(64)))
    );
    assert!(rolled.rejected_hash.is_some());
    let msg = rolled.message.clone().unwrap();
    assert!(
        msg.contains("within 20s") && msg.contains("rolled back to revision"),
        "{msg}"
    );
    assert_eq!(
        lab.metrics
            .rollbacks_total
            .with_label_values(&["web"])
            .get(),
        1
    );
    // The rolled-back revision stays rejected: nothing else happens.
    let starts = starts_of(&lab.fake, "web").len();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(starts_of(&lab.fake, "web").len(), starts);
    assert_eq!(lab.state_of("web"), Some(ContainerState::Running));
    lab.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_emptied_directory_stops_nothing_and_says_so() {
    let lab = LoopLab::start(ReconcileConfig::default());
    lab.write("a.yaml", &container("a", ""));
    lab.write(
        "b.yaml",
        &container("b", "").replace(
            "metadata: {name: b}",
            "metadata: {name: b, annotations: {berth/prune: disabled}}",
        ),
    );
    lab.until(Duration::from_secs(5), |l| {
        (l.fake.running().len() == 2).then_some(())
    })
    .await;
    let started = lab.fake.state().start_times.len();
    let saved = std::mem::take(&mut *lab.files.lock().unwrap());
    lab.tx.send(Trigger::ManifestsChanged).unwrap();
    tokio::time::sleep(Duration::from_secs(65)).await;
    assert!(lab.live.prune_blocked());
    assert!(
        lab.metrics.prune_blocked_total.get() >= 2,
        "counted every pass"
    );
    let view = lab.live.view(
        &lab.db.list_containers().unwrap(),
        &[],
        &HealthBoard::default(),
    );
    assert_eq!(
        view[0].message.as_deref(),
        Some(
            "the manifest directory holds no object; kept, nothing is removed (allowEmpty is off)"
        )
    );
    // Back: nothing was stopped, nothing started again.
    *lab.files.lock().unwrap() = saved;
    lab.tx.send(Trigger::ManifestsWritten).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!lab.live.prune_blocked());
    let calls = lab.fake.calls();
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::Stop(_) | Call::Remove(_))),
        "{calls:?}"
    );
    assert_eq!(lab.fake.state().start_times.len(), started);

    // The annotated one stays when its own file goes; the other one goes.
    lab.files
        .lock()
        .unwrap()
        .retain(|(p, _)| !p.ends_with("b.yaml"));
    lab.tx.send(Trigger::ManifestsWritten).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    lab.files
        .lock()
        .unwrap()
        .retain(|(p, _)| !p.ends_with("a.yaml"));
    lab.files
        .lock()
        .unwrap()
        .push(("/m/other.yaml".into(), container("c", "").into_bytes()));
    lab.tx.send(Trigger::ManifestsWritten).unwrap();
    lab.until(Duration::from_secs(10), |l| {
        l.state_of("a").is_none().then_some(())
    })
    .await;
    assert_eq!(lab.state_of("b"), Some(ContainerState::Running));
    let view = lab.live.view(
        &lab.db.list_containers().unwrap(),
        &[],
        &HealthBoard::default(),
    );
    let b = view.iter().find(|c| c.name == "b").unwrap();
    assert_eq!(
        b.message.as_deref(),
        Some("its manifest is gone; kept by its annotation berth/prune: disabled")
    );
    lab.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_allow_empty_an_emptied_directory_removes_everything() {
    let lab = LoopLab::start(ReconcileConfig {
        allow_empty: true,
        ..ReconcileConfig::default()
    });
    lab.write("a.yaml", &container("a", ""));
    lab.until(Duration::from_secs(5), |l| l.state_of("a")).await;
    lab.files.lock().unwrap().clear();
    lab.tx.send(Trigger::ManifestsChanged).unwrap();
    lab.until(Duration::from_secs(10), |l| {
        l.state_of("a").is_none().then_some(())
    })
    .await;
    assert_eq!(lab.metrics.prune_blocked_total.get(), 0);
    lab.stop().await;
}
