//! Exec probes, the agent's side: [`Runtime::exec_probe`] starts `berth exec-probe` (a fresh,
//! single-threaded process, see [`super::helper`]) and reads its one-line JSON [`Report`].
//! The tokio agent itself never forks or enters a namespace.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{HealthError, ProbeResult, Result};
use crate::runtime::Runtime;

/// How long the helper may take beyond the probe's own timeout (checking the pid, entering
/// the container, reaping) before the agent kills it.
pub const HELPER_GRACE: Duration = Duration::from_secs(5);

/// The most of the helper's stdout and stderr kept: the report is one short line.
const MAX_HELPER_OUTPUT: usize = 64 * 1024;

/// What the helper prints on stdout: one JSON line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "camelCase")]
pub(crate) enum Report {
    /// The command ran (or could not start, or timed out): the probe's answer.
    Probe { result: ProbeResult },
    /// [`HealthError::NotInit`].
    NotInit { reason: String },
    /// [`HealthError::Gone`].
    Gone,
    /// Any other failure of the helper, as its message.
    Failed { message: String },
}

impl Report {
    pub(crate) fn from_outcome(outcome: Result<ProbeResult>) -> Report {
        match outcome {
            Ok(result) => Report::Probe { result },
            Err(HealthError::NotInit { reason, .. }) => Report::NotInit { reason },
            Err(HealthError::Gone { .. }) => Report::Gone,
            Err(e) => Report::Failed {
                message: e.to_string(),
            },
        }
    }

    fn into_outcome(self, id: &str, pid: i32) -> Result<ProbeResult> {
        match self {
            Report::Probe { result } => Ok(result),
            Report::NotInit { reason } => Err(HealthError::NotInit {
                id: id.to_string(),
                pid,
                reason,
            }),
            Report::Gone => Err(HealthError::Gone {
                id: id.to_string(),
                pid,
            }),
            Report::Failed { message } => Err(HealthError::HelperFailed { message }),
        }
    }
}

impl Runtime {
    /// Runs `cmd` inside the running container `id`, like a Docker exec healthcheck: exit
    /// status 0 is healthy, stdout and stderr together are the output. `init_pid` is the
    /// container's init as its start reported; the helper refuses any other process. The
    /// command is killed (with anything it started) once `timeout` has passed.
    ///
    /// Cancelling the returned future kills the helper, and the command with it.
    pub async fn exec_probe(
        &self,
        id: &str,
        init_pid: i32,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ProbeResult> {
        if cmd.is_empty() {
            return Err(HealthError::NoCommand { id: id.to_string() });
        }
        let exe = self.exe();
        let mut child = tokio::process::Command::new(exe)
            .arg("exec-probe")
            .arg(self.bundle_dir(id))
            .args(["--id", id])
            .args(["--pid", &init_pid.to_string()])
            .args(["--timeout-ms", &timeout.as_millis().max(1).to_string()])
            .arg("--")
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| HealthError::SpawnHelper {
                exe: exe.to_path_buf(),
                source,
            })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let finished = tokio::time::timeout(timeout + HELPER_GRACE, async {
            let (out, err, status) =
                tokio::join!(read_capped(stdout), read_capped(stderr), child.wait());
            (out, err, status)
        })
        .await;
        let Ok((out, err, status)) = finished else {
            let _ = child.kill().await;
            return Err(HealthError::HelperHung {
                id: id.to_string(),
                exe: exe.to_path_buf(),
                grace: HELPER_GRACE,
            });
        };
        let report = String::from_utf8_lossy(&out)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| serde_json::from_str::<Report>(l).ok());
        let outcome = match report {
            Some(report) => report.into_outcome(id, init_pid),
            None => Err(silent(id, exe, status, &err)),
        };
        match &outcome {
            Ok(r) => {
                tracing::debug!(id, healthy = r.healthy, exit_code = ?r.exit_code, "exec probe")
            }
            Err(e) => tracing::debug!(id, error = %e, "exec probe failed"),
        }
        outcome
    }
}

fn silent(
    id: &str,
    exe: &Path,
    status: std::io::Result<std::process::ExitStatus>,
    stderr: &[u8],
) -> HealthError {
    let text = String::from_utf8_lossy(stderr);
    let stderr = text.trim();
    HealthError::HelperSilent {
        id: id.to_string(),
        exe: exe.to_path_buf(),
        status: match status {
            Ok(s) => s.to_string(),
            Err(e) => format!("wait: {e}"),
        },
        stderr: if stderr.is_empty() {
            "(no stderr)".to_string()
        } else {
            super::truncate(stderr.to_string())
        },
    }
}

/// Reads a pipe to its end, keeping the first [`MAX_HELPER_OUTPUT`] bytes (the rest is read
/// and dropped, so the writer never blocks).
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_HELPER_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_as_one_json_line() {
        let probe = Report::Probe {
            result: ProbeResult {
                healthy: false,
                output: "exec: \"nosuch\": executable file not found in $PATH".into(),
                exit_code: None,
            },
        };
        let line = serde_json::to_string(&probe).expect("serialize");
        assert_eq!(
            line,
            r#"{"report":"probe","result":{"healthy":false,"output":"exec: \"nosuch\": executable file not found in $PATH","exitCode":null}}"#
        );
        assert_eq!(serde_json::from_str::<Report>(&line).expect("parse"), probe);
        let gone = serde_json::to_string(&Report::Gone).expect("serialize");
        assert_eq!(gone, r#"{"report":"gone"}"#);
    }

    #[test]
    fn helper_errors_come_back_as_the_same_variants() {
        let err = Report::from_outcome(Err(HealthError::NotInit {
            id: "web".into(),
            pid: 7,
            reason: "it is pid 3 in its pid namespace, not 1".into(),
        }))
        .into_outcome("web", 7)
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "probe container web: pid 7 is not the container's init: it is pid 3 in its pid namespace, not 1 (hint: the container may have restarted; probe the init pid of its latest start)"
        );
        let err = Report::from_outcome(Err(HealthError::Gone {
            id: "web".into(),
            pid: 7,
        }))
        .into_outcome("web", 7)
        .unwrap_err();
        assert!(matches!(err, HealthError::Gone { pid: 7, .. }), "{err}");
        let err = Report::from_outcome(Err(HealthError::Helper {
            id: "web".into(),
            message: "bundle /run/x belongs to container \"db\"".into(),
        }))
        .into_outcome("web", 7)
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "exec probe helper: exec probe in container web: bundle /run/x belongs to container \"db\""
        );
    }
}
