//! Container logs as Docker's json-file driver writes them: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"RFC 3339 with nanoseconds"}`, rotated by size
//! (`container.log`, `container.log.1`, … up to `maxFiles` files in all).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Docker splits lines longer than this into several records.
pub const MAX_RECORD: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogConfig {
    /// Rotate when the current file would pass this many bytes.
    pub max_size: u64,
    /// Files kept in all, the current one included (at least 1).
    pub max_files: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_size: 10 * 1024 * 1024,
            max_files: 3,
        }
    }
}

/// One record, as stored and as the API serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// `path`, `path.1`, … oldest last: every file of a container's log, newest first.
pub fn log_files(path: &Path, max_files: u32) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    for i in 1..max_files.max(1) {
        files.push(rotated(path, i));
    }
    files
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

pub struct LogWriter {
    path: PathBuf,
    cfg: LogConfig,
    file: File,
    size: u64,
}

impl LogWriter {
    pub fn open(path: &Path, cfg: LogConfig) -> io::Result<LogWriter> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            cfg,
            file,
            size,
        })
    }

    /// Writes one record for `text` (a line with its `\n`, or a part of a long line).
    pub fn write(&mut self, stream: &str, text: &[u8]) -> io::Result<()> {
        let rec = LogRecord {
            log: String::from_utf8_lossy(text).into_owned(),
            stream: stream.to_string(),
            time: rfc3339_nanos(SystemTime::now()),
        };
        let mut line = serde_json::to_vec(&rec).map_err(io::Error::other)?;
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.cfg.max_size {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.cfg.max_files.max(1);
        if keep == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for i in (1..keep - 1).rev() {
            let from = rotated(&self.path, i);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, i + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Splits what a stream delivers into records: at newlines, and at [`MAX_RECORD`] bytes.
#[derive(Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Feeds bytes; calls `emit` for every complete record.
    pub fn push(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&[u8])) {
        while let Some(nl) = data.iter().position(|b| *b == b'\n') {
            if self.pending.is_empty() {
                emit_chunks(&data[..=nl], emit);
            } else {
                self.pending.extend_from_slice(&data[..=nl]);
                emit_chunks(&self.pending, emit);
                self.pending.clear();
            }
            data = &data[nl + 1..];
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() >= MAX_RECORD {
            let rest = self.pending.split_off(MAX_RECORD);
            emit(&self.pending);
            self.pending = rest;
        }
    }

    /// At end of stream: whatever is left, without a newline.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

fn emit_chunks(data: &[u8], emit: &mut dyn FnMut(&[u8])) {
    for chunk in data.chunks(MAX_RECORD) {
        emit(chunk);
    }
}

/// `2026-11-28T00:21:02.123456789Z`, without a date library: days to civil date (Howard
/// Hinnant's algorithm).
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_nanos(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(951_782_400 + 3661, 5); // 2000-02-29 01:01:01
        assert_eq!(rfc3339_nanos(t), "2000-02-29T01:01:01.000000005Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_825_262); // `date -d @1795825262 -u`
        assert_eq!(rfc3339_nanos(t), "2026-11-28T00:21:02.000000000Z");
    }

    #[test]
    fn lines_split_at_newlines_and_long_lines_at_16k() {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut b = LineBuffer::default();
        b.push(b"one\ntw", &mut |r| out.push(r.to_vec()));
        b.push(b"o\nthree", &mut |r| out.push(r.to_vec()));
        b.finish(&mut |r| out.push(r.to_vec()));
        assert_eq!(
            out,
            vec![b"one\n".to_vec(), b"two\n".to_vec(), b"three".to_vec()]
        );
        out.clear();
        let long = vec![b'x'; MAX_RECORD * 2 + 10];
        b.push(&long, &mut |r| out.push(r.to_vec()));
        b.push(b"\n", &mut |r| out.push(r.to_vec()));
        assert_eq!(
            out.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![MAX_RECORD, MAX_RECORD, 11]
        );
    }

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(
            &path,
            LogConfig {
                max_size: 200,
                max_files: 3,
            },
        )
        .unwrap();
        for i in 0..20 {
            w.write("stdout", format!("line {i}\n").as_bytes()).unwrap();
        }
        let files = log_files(&path, 3);
        assert!(files.iter().all(|f| f.exists()), "{files:?}");
        assert!(!dir.path().join("container.log.3").exists());
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 200);
        }
        let last = std::fs::read_to_string(&path).unwrap();
        let rec: LogRecord = serde_json::from_str(last.lines().last().unwrap()).unwrap();
        assert_eq!(
            (rec.log.as_str(), rec.stream.as_str()),
            ("line 19\n", "stdout")
        );
    }
}
