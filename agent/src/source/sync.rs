//! The git source's sync loop, in the agent: every `interval` (give or take a tenth, so a
//! fleet does not poll in step) and on SIGHUP, it runs a fetch process with a deadline, loads
//! the revision it checked out, and switches to it only when it verifies and loads cleanly.
//! Whatever fails, the revision applied before stays, across restarts too.

use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use berth_engine::state::{SourceSyncRecord, StateDb};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch, Notify};

use super::config::GitSource;
use super::fetch::{FetchOutcome, FetchRequest};
use super::snapshot::Layout;
use super::status::{SharedStatus, SourceStatus};
use crate::metrics::Metrics;
use crate::policy::HostPolicy;
use crate::reconcile::{Loader, Trigger};

pub struct GitSync {
    pub source: GitSource,
    pub layout: Layout,
    pub policy: HostPolicy,
    pub status: Arc<SharedStatus>,
    pub metrics: Arc<Metrics>,
    pub db: Arc<StateDb>,
    /// The berth binary, which runs the fetch process.
    pub exe: PathBuf,
    /// Where a switched revision and a new sync error are recorded.
    pub events: Arc<crate::events::Events>,
}

fn now_ms() -> u64 {
    berth_engine::runtime::exit::now_ms()
}

impl GitSync {
    /// The status as the last run left it: the applied revision from the snapshot link, the
    /// last sync from the state db (when it is about the same URL).
    pub fn initial_status(source: &GitSource, layout: &Layout, db: &StateDb) -> SourceStatus {
        let record = db
            .source_sync()
            .ok()
            .flatten()
            .filter(|r| r.url == source.url);
        SourceStatus {
            kind: "git",
            path: None,
            url: Some(source.url.clone()),
            reference: Some(source.reference.clone()),
            paths: source.paths.clone(),
            revision: layout.current().map(|(rev, _)| rev),
            signer: record.as_ref().and_then(|r| r.signer.clone()),
            synced_at: record
                .as_ref()
                .and_then(|r| r.synced_at_ms)
                .map(|t| t / 1000),
            attempted_at: record.as_ref().map(|r| r.attempted_at_ms / 1000),
            error: record.and_then(|r| r.error),
        }
    }

    /// What the reconciler loads: the current snapshot's paths, or nothing yet (which holds
    /// everything back: no revision is not an empty revision).
    pub fn loader(&self) -> Loader {
        let layout = self.layout.clone();
        let paths = self.source.paths.clone();
        let policy = self.policy.clone();
        let url = self.source.url.clone();
        Arc::new(move || match layout.current() {
            Some((_, snapshot)) => {
                crate::policy::load_dirs(&Layout::dirs(&snapshot, &paths), &policy)
            }
            None => berth_spec::unavailable(
                &layout.root,
                &format!("no revision of {url} synced yet"),
                "nothing is removed until the first sync succeeds; see berth source",
            ),
        })
    }

    /// Syncs now, then every interval and on each `sync_now` notification, until shutdown.
    pub async fn run(
        self,
        triggers: mpsc::UnboundedSender<Trigger>,
        sync_now: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if let Some((rev, _)) = self.layout.current() {
            self.metrics.source.set_revision(&rev);
        }
        if let Some(t) = self.status.get().synced_at {
            self.metrics.source.last_sync.set(t as f64);
        }
        loop {
            if self.sync_once().await {
                let _ = triggers.send(Trigger::ManifestsWritten);
            }
            tokio::select! {
                _ = tokio::time::sleep(jittered(self.source.interval)) => {}
                _ = sync_now.notified() => tracing::info!("SIGHUP: syncing the git source now"),
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One sync; true when a new revision was switched to.
    pub async fn sync_once(&self) -> bool {
        let current = self.layout.current().map(|(rev, _)| rev);
        let outcome = self.fetch(current.clone()).await;
        self.apply(outcome, current.as_deref())
    }

    async fn fetch(&self, current: Option<String>) -> FetchOutcome {
        let req = FetchRequest {
            source: self.source.clone(),
            git_dir: self.layout.fetch_dir(),
            snapshots: self.layout.snapshots(),
            current,
        };
        match run_fetch_process(&self.exe, &req, self.source.timeout).await {
            Ok(outcome) => outcome,
            Err(message) => FetchOutcome::FetchFailed { message },
        }
    }

    /// What a fetch outcome comes to: a good new revision is loaded and switched to.
    fn judge(&self, outcome: FetchOutcome) -> Verdict {
        let refused = |result, error| Verdict {
            result,
            error: Some(error),
            switched: None,
        };
        match outcome {
            FetchOutcome::Unchanged { .. } => Verdict {
                result: "ok",
                error: None,
                switched: None,
            },
            FetchOutcome::Fetched {
                revision,
                snapshot,
                signer,
            } => {
                if let Some(problems) = self.problems_of(&snapshot) {
                    let _ = std::fs::remove_dir_all(&snapshot);
                    return refused(
                        "invalid",
                        format!("revision {revision} does not load, not applied: {problems}"),
                    );
                }
                match self.layout.switch(&revision) {
                    Ok(()) => Verdict {
                        result: "ok",
                        error: None,
                        switched: Some((revision, signer)),
                    },
                    Err(e) => refused("invalid", format!("switch to revision {revision}: {e}")),
                }
            }
            FetchOutcome::FetchFailed { message } => refused("fetch_failed", message),
            FetchOutcome::Unverified { revision, message } => refused(
                "unverified",
                format!("revision {revision} refused: {message}"),
            ),
            FetchOutcome::Invalid { revision, message } => refused(
                "invalid",
                format!("revision {revision} cannot be checked out, not applied: {message}"),
            ),
        }
    }

    /// The first problems of a snapshot's manifests, with paths relative to the repository;
    /// `None` when every file loads.
    fn problems_of(&self, snapshot: &std::path::Path) -> Option<String> {
        let load =
            crate::policy::load_dirs(&Layout::dirs(snapshot, &self.source.paths), &self.policy);
        if load.problems.is_empty() {
            return None;
        }
        let prefix = format!("{}/", snapshot.display());
        let shown: Vec<String> = load
            .problems
            .iter()
            .take(5)
            .map(|p| p.to_string().replace(&prefix, ""))
            .collect();
        let more = load.problems.len() - shown.len();
        Some(if more > 0 {
            format!("{}; and {more} more", shown.join("; "))
        } else {
            shown.join("; ")
        })
    }

    /// Records the outcome (metrics, log, event, status, db); true when a new revision was
    /// switched to.
    fn apply(&self, outcome: FetchOutcome, current: Option<&str>) -> bool {
        let now = now_ms();
        let Verdict {
            result,
            error,
            switched,
        } = self.judge(outcome);
        self.metrics
            .source
            .sync_total
            .with_label_values(&[result])
            .inc();
        match (&switched, &error) {
            (Some((rev, _)), _) => {
                self.metrics.source.set_revision(rev);
                self.layout.prune(rev);
                tracing::info!(revision = %rev, previous = current.unwrap_or("none"), "git source: switched to a new revision");
                self.events.record(
                    "Source/git",
                    "sync",
                    true,
                    Some(format!("switched to revision {rev}")),
                );
            }
            (None, Some(e)) => {
                tracing::warn!(url = %self.source.url, error = %e, "git source: sync did not apply");
                // Leftovers of a rejected or interrupted checkout.
                if let Some(current) = current {
                    self.layout.prune(current);
                }
                // Once per error, not per sync: an agent offline for a day records it once.
                if error != self.status.get().error {
                    self.events
                        .record("Source/git", "sync", false, error.clone());
                }
            }
            (None, None) => {}
        }
        if error.is_none() {
            self.metrics.source.last_sync.set((now / 1000) as f64);
        }
        self.status.update(|s| {
            s.attempted_at = Some(now / 1000);
            if error.is_none() {
                s.synced_at = Some(now / 1000);
            }
            if let Some((rev, signer)) = &switched {
                s.revision = Some(rev.clone());
                s.signer = signer.clone();
            }
            s.error = error.clone();
        });
        let status = self.status.get();
        let record = SourceSyncRecord {
            url: self.source.url.clone(),
            synced_at_ms: status.synced_at.map(|t| t * 1000),
            attempted_at_ms: now,
            error,
            signer: status.signer,
        };
        if let Err(e) = self.db.put_source_sync(&record) {
            tracing::warn!(error = %e, "record the git sync");
        }
        switched.is_some()
    }
}

/// What one sync came to.
struct Verdict {
    /// The `result` label of `berth_source_sync_total`.
    result: &'static str,
    /// Why it did not apply, when it did not.
    error: Option<String>,
    /// The revision switched to, and who signed it.
    switched: Option<(String, Option<String>)>,
}

/// `interval` give or take a tenth, at random.
fn jittered(interval: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let tenth = interval.as_millis() as u64 / 10;
    let offset = if tenth == 0 {
        0
    } else {
        random % (2 * tenth + 1)
    };
    Duration::from_millis(interval.as_millis() as u64 - tenth + offset)
}

/// Runs `berth source-fetch` in a process group of its own (ssh runs under it) and kills
/// the group at the deadline.
async fn run_fetch_process(
    exe: &std::path::Path,
    req: &FetchRequest,
    timeout: Duration,
) -> Result<FetchOutcome, String> {
    let input = serde_json::to_vec(req).map_err(|e| format!("encode the fetch request: {e}"))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("source-fetch")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("start the fetch process {}: {e}", exe.display()))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let run = async move {
        stdin.write_all(&input).await?;
        drop(stdin);
        child.wait_with_output().await
    };
    let output = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("run the fetch process: {e}")),
        Err(_) => {
            if let Some(pid) = pid {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            return Err(format!(
                "{} did not answer within {}s: the fetch was stopped (hint: a slow link needs a larger source.git.timeout)",
                req.source.url,
                timeout.as_secs()
            ));
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().filter(|l| !l.is_empty()) {
        tracing::info!(target: "source-fetch", "{line}");
    }
    if !output.status.success() {
        let last = stderr.lines().last().unwrap_or("no message");
        return Err(format!(
            "the fetch process failed ({}): {last}",
            output.status
        ));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("read the fetch process's answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_tenth() {
        let interval = Duration::from_secs(60);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let d = jittered(interval);
            assert!(
                d >= Duration::from_secs(54) && d <= Duration::from_secs(66),
                "{d:?}"
            );
            seen.insert(d);
        }
        assert!(
            seen.len() > 100,
            "not random: {} distinct waits",
            seen.len()
        );
    }
}
