//! Health probes on running containers: run one probe now, with a timeout, and say whether
//! the container is healthy. The agent schedules them (interval, retries, start period);
//! this module only runs one.
//!
//! - [`exec`]: a command inside the container, like a Docker exec healthcheck. The tokio
//!   agent never forks, so a fresh helper process (`berth exec-probe`, [`helper`]) enters
//!   the container and runs it.
//! - [`net`]: a TCP connect or an HTTP `GET` to `127.0.0.1:PORT` inside the container's
//!   network namespace, from a fresh thread that entered it.
//!
//! A probe that fails or times out is an unhealthy [`ProbeResult`]; a [`HealthError`] is
//! berth's own failure (the helper cannot start, the process given is not the container's).

pub mod exec;
pub mod helper;
mod http;
mod init_process;
pub mod net;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use net::{http_probe, tcp_probe, NetTarget};

/// Docker keeps this much of a health check's output (`maxOutputLen`).
pub const MAX_OUTPUT_BYTES: usize = 4096;

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeResult {
    pub healthy: bool,
    /// At most [`MAX_OUTPUT_BYTES`] bytes, like Docker's health log: the command's stdout
    /// and stderr, the HTTP status line, or why the probe failed.
    pub output: String,
    /// Exec probes: the command's exit code (128 + the signal when one killed it); `None`
    /// when it never ran or was killed at the timeout.
    pub exit_code: Option<i32>,
}

impl ProbeResult {
    pub(crate) fn healthy(output: impl Into<String>) -> ProbeResult {
        ProbeResult {
            healthy: true,
            output: truncate(output.into()),
            exit_code: None,
        }
    }

    pub(crate) fn unhealthy(output: impl Into<String>) -> ProbeResult {
        ProbeResult {
            healthy: false,
            output: truncate(output.into()),
            exit_code: None,
        }
    }

    /// The probe did not finish within `timeout`.
    pub(crate) fn timed_out(timeout: Duration) -> ProbeResult {
        ProbeResult::unhealthy(format!("probe timed out after {}", go_duration(timeout)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("probe container {id}: pid {pid} is not the container's init: {reason} (hint: the container may have restarted; probe the init pid of its latest start)")]
    NotInit {
        id: String,
        pid: i32,
        reason: String,
    },
    #[error("probe container {id}: its init process {pid} is gone (hint: the container has stopped or is restarting)")]
    Gone { id: String, pid: i32 },
    #[error("probe container {id}: {source}")]
    Cgroup {
        id: String,
        source: crate::cgroups::Error,
    },
    #[error(
        "exec probe in container {id}: no command given (hint: set the health check's command)"
    )]
    NoCommand { id: String },
    #[error("http probe: path {path:?} must start with '/' and hold only printable ASCII (hint: percent-encode anything else)")]
    InvalidPath { path: String },
    #[error("network probe: {path} is not a network namespace (hint: the container's network is gone; is the container still running?)")]
    NoNamespace { path: PathBuf },
    #[error("network probe: {source}")]
    Network { source: std::io::Error },
    #[error("probe container {id}: {op} {path}: {source}")]
    Io {
        id: String,
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("start exec probe helper {exe}: {source} (hint: the agent must be able to re-execute its own binary)")]
    SpawnHelper {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("exec probe in container {id}: {message}")]
    Helper { id: String, message: String },
    /// The helper's own error, as it reported it (its message names the container).
    #[error("exec probe helper: {message}")]
    HelperFailed { message: String },
    #[error(
        "exec probe in container {id}: helper {exe} ended ({status}) without a report: {stderr}"
    )]
    HelperSilent {
        id: String,
        exe: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("exec probe in container {id}: helper {exe} did not finish {grace:?} after the probe's timeout and was killed")]
    HelperHung {
        id: String,
        exe: PathBuf,
        grace: Duration,
    },
    #[error("probe thread: {0}")]
    Thread(String),
}

pub type Result<T, E = HealthError> = std::result::Result<T, E>;

/// Cuts `s` to at most [`MAX_OUTPUT_BYTES`] bytes, at a character boundary.
pub(crate) fn truncate(mut s: String) -> String {
    if s.len() > MAX_OUTPUT_BYTES {
        let mut end = MAX_OUTPUT_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A duration the way Go (and so Docker's messages) prints it: `500ms`, `2s`, `1.5s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let (secs, rest) = (ms / 1000, ms % 1000);
    if ms == 0 {
        format!("{}µs", d.as_micros())
    } else if secs == 0 {
        format!("{ms}ms")
    } else if rest == 0 {
        format!("{secs}s")
    } else {
        let frac = format!("{rest:03}");
        format!("{secs}.{}s", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_at_4096_bytes_on_a_char_boundary() {
        assert_eq!(truncate("ok\n".into()), "ok\n");
        assert_eq!(truncate("a".repeat(5000)).len(), 4096);
        // 4095 ASCII bytes, then a 2-byte character that would end past the limit.
        let s = "a".repeat(4095) + "é" + "tail";
        let t = truncate(s);
        assert_eq!(t.len(), 4095);
        assert!(t.chars().all(|c| c == 'a'));
    }

    #[test]
    fn durations_read_like_go() {
        let cases = [
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(2), "2s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(1250), "1.25s"),
            (Duration::from_micros(300), "300µs"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
        assert_eq!(
            ProbeResult::timed_out(Duration::from_millis(500)),
            ProbeResult {
                healthy: false,
                output: "probe timed out after 500ms".into(),
                exit_code: None
            }
        );
    }
}
