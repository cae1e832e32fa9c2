//! `GET /v1/containers/{name}/logs?tail=N&follow=1`: the container's log records as JSON
//! lines (`{"log","stream","time"}`), oldest first; with `follow`, new records as they are
//! written, across rotations, until the container stops running.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_engine::runtime::logs::log_files;
use serde::Deserialize;

use super::{error, ApiState};

/// More rotated files than any config keeps; missing ones are skipped.
const MAX_FILES: u32 = 100;
const FOLLOW_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    /// Only the last N records.
    pub tail: Option<usize>,
    /// Keep the response open and send new records.
    #[serde(default)]
    pub follow: Option<String>,
}

impl LogQuery {
    fn follow(&self) -> bool {
        matches!(self.follow.as_deref(), Some("1" | "true" | "yes" | ""))
    }
}

/// Every record currently stored (oldest file first), or the last `tail` of them.
pub fn read_records(current: &Path, tail: Option<usize>) -> std::io::Result<VecDeque<String>> {
    let mut files: Vec<PathBuf> = log_files(current, MAX_FILES)
        .into_iter()
        .filter(|f| f.exists())
        .collect();
    files.reverse();
    let mut out = VecDeque::new();
    for f in files {
        let reader = BufReader::new(std::fs::File::open(&f)?);
        for line in reader.lines() {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            out.push_back(line);
            if tail.is_some_and(|t| out.len() > t) {
                out.pop_front();
            }
        }
    }
    Ok(out)
}

pub async fn get_logs(
    State(state): State<Arc<ApiState>>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<LogQuery>,
) -> Response {
    let record = match state.db.get_container(&name) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no container named {name:?}"),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "read container for logs");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "state database unavailable",
            );
        }
    };
    let path = state.containers_dir.join(&record.id).join("container.log");
    let initial = match read_records(&path, q.tail) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => VecDeque::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "read container log");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "container log unreadable",
            );
        }
    };
    let mut body = String::new();
    for line in initial {
        body.push_str(&line);
        body.push('\n');
    }
    let headers = [(header::CONTENT_TYPE, "application/x-ndjson")];
    if !q.follow() {
        return (headers, body).into_response();
    }
    // Follow from the end of what was just sent.
    let pos = std::fs::metadata(&path)
        .map(|m| (m.ino(), m.len()))
        .unwrap_or((0, 0));
    let follower = Follower {
        state,
        name,
        id: record.id,
        path,
        inode: pos.0,
        offset: pos.1,
        first: Some(body),
    };
    let stream = futures_util::stream::unfold(follower, |mut f| async move {
        f.next()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(Bytes::from(chunk)), f))
    });
    (StatusCode::OK, headers, Body::from_stream(stream)).into_response()
}

struct Follower {
    state: Arc<ApiState>,
    name: String,
    id: String,
    path: PathBuf,
    inode: u64,
    offset: u64,
    first: Option<String>,
}

impl Follower {
    /// The next chunk of complete lines, or None when the container no longer runs.
    async fn next(&mut self) -> Option<String> {
        if let Some(first) = self.first.take() {
            if !first.is_empty() {
                return Some(first);
            }
        }
        loop {
            let chunk = self.read_new();
            if !chunk.is_empty() {
                return Some(chunk);
            }
            let running = matches!(
                self.state.db.get_container(&self.name),
                Ok(Some(r)) if r.id == self.id && r.state == berth_engine::state::ContainerState::Running
            );
            if !running {
                // One last look: the shim may have written the final lines just now.
                let rest = self.read_new();
                return (!rest.is_empty()).then_some(rest);
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }

    /// Complete lines appended since the last read; after a rotation, the rest of the old
    /// file (now `.1`) and then the new one from its start.
    fn read_new(&mut self) -> String {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return String::new();
        };
        let mut out = String::new();
        if meta.ino() != self.inode {
            let old = log_files(&self.path, 2).pop().unwrap_or_default();
            if std::fs::metadata(&old)
                .map(|m| m.ino() == self.inode)
                .unwrap_or(false)
            {
                out.push_str(&read_lines_from(&old, &mut self.offset));
            }
            self.inode = meta.ino();
            self.offset = 0;
        } else if meta.len() < self.offset {
            self.offset = 0; // truncated (maxFiles: 1)
        }
        out.push_str(&read_lines_from(&self.path, &mut self.offset));
        out
    }
}

/// Reads whole lines from `offset` on and advances it past them; a partial last line waits.
fn read_lines_from(path: &Path, offset: &mut u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    if f.seek(SeekFrom::Start(*offset)).is_err() {
        return String::new();
    }
    let mut buf = String::new();
    if f.read_to_string(&mut buf).is_err() {
        return String::new();
    }
    match buf.rfind('\n') {
        Some(end) => {
            buf.truncate(end + 1);
            *offset += buf.len() as u64;
            buf
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_reads_across_rotated_files_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        std::fs::write(dir.path().join("container.log.2"), "a\nb\n").unwrap();
        std::fs::write(dir.path().join("container.log.1"), "c\n").unwrap();
        std::fs::write(&path, "d\ne\n").unwrap();
        assert_eq!(
            read_records(&path, None).unwrap(),
            ["a", "b", "c", "d", "e"]
        );
        assert_eq!(read_records(&path, Some(2)).unwrap(), ["d", "e"]);
    }

    #[test]
    fn partial_lines_wait_for_their_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        std::fs::write(&path, "one\ntw").unwrap();
        let mut off = 0;
        assert_eq!(read_lines_from(&path, &mut off), "one\n");
        assert_eq!(read_lines_from(&path, &mut off), "");
        std::fs::write(&path, "one\ntwo\n").unwrap();
        assert_eq!(read_lines_from(&path, &mut off), "two\n");
        assert_eq!(off, 8);
    }
}
