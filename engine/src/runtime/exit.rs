//! The exit record a shim writes when the container's init ends.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// Docker's convention: the exit code, or 128 + signal when killed by a signal.
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// Unix seconds.
    pub finished_at: u64,
    /// Unix milliseconds (records written by older shims have only seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    /// Set when the container never ran: the setup error, verbatim.
    pub error: Option<String>,
}

impl ExitRecord {
    /// When the process ended, in unix milliseconds.
    pub fn finished_ms(&self) -> u64 {
        self.finished_at_ms.unwrap_or(self.finished_at * 1000)
    }

    /// A record of an exit now.
    pub fn now(exit_code: i32, signal: Option<i32>, error: Option<String>) -> ExitRecord {
        let ms = now_ms();
        ExitRecord {
            exit_code,
            signal,
            finished_at: ms / 1000,
            finished_at_ms: Some(ms),
            error,
        }
    }

    pub fn read(path: &Path) -> std::io::Result<Option<ExitRecord>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        crate::runtime::atomic::write_file(path, &json)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
