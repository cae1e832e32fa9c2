//! Blob downloads: streamed to a staging file while hashed, committed by rename only when the
//! digest matches, resumed with an HTTP range after a dropped connection or a crash.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::manifest::OciDescriptor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::content::Layout;
use super::digest::{Digest, Hasher};
use super::remote::Remote;

/// Bytes of a pull done so far, over the total to download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PullProgress {
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// Bytes this pull received from a registry so far (blobs already stored, resumed parts
    /// from an earlier pull, and local sources are not counted).
    pub downloaded_bytes: u64,
}

/// Shared progress of one pull; reports at most every [`REPORT_EVERY`] bytes.
pub struct Progress<'a> {
    done: AtomicU64,
    reported: AtomicU64,
    downloaded: AtomicU64,
    total: u64,
    report: &'a (dyn Fn(PullProgress) + Send + Sync),
}

const REPORT_EVERY: u64 = 1024 * 1024;

impl<'a> Progress<'a> {
    pub fn new(total: u64, report: &'a (dyn Fn(PullProgress) + Send + Sync)) -> Self {
        Progress {
            done: AtomicU64::new(0),
            reported: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            total,
            report,
        }
    }

    pub fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let last = self.reported.load(Ordering::Relaxed);
        if done >= last + REPORT_EVERY || (done >= self.total && last < self.total) {
            self.reported.store(done, Ordering::Relaxed);
            (self.report)(PullProgress {
                done_bytes: done.min(self.total),
                total_bytes: self.total,
                downloaded_bytes: self.downloaded.load(Ordering::Relaxed),
            });
        }
    }

    /// Bytes that came over the network (counted before [`Progress::add`] reports them).
    pub fn received(&self, n: u64) {
        self.downloaded.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes thrown away (a restart from zero).
    pub fn sub(&self, n: u64) {
        let _ = self
            .done
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(n))
            });
        let _ = self
            .reported
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(n))
            });
    }

    /// Report the final state once, whatever the throttling skipped.
    pub fn finish(&self) {
        (self.report)(PullProgress {
            done_bytes: self.done.load(Ordering::Relaxed).min(self.total),
            total_bytes: self.total,
            downloaded_bytes: self.downloaded.load(Ordering::Relaxed),
        });
    }
}

/// Why a blob could not be fetched.
#[derive(Debug)]
pub enum FetchError {
    /// The registry or the connection failed (after retries).
    Registry(String),
    /// The bytes do not hash to the digest.
    Mismatch { expected: String, actual: String },
    /// The registry sent more bytes than the descriptor declares.
    TooLong { declared: u64 },
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Attempts per blob: the first try plus resumes after dropped connections.
const ATTEMPTS: u32 = 4;

/// Download the blob `digest` (declared `size`) into the content store, unless present.
pub async fn fetch_blob(
    remote: &Remote,
    layout: &Layout,
    desc: &OciDescriptor,
    digest: &Digest,
    size: u64,
    progress: &Progress<'_>,
) -> Result<PathBuf, FetchError> {
    let dest = layout.blob(digest);
    if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
        progress.add(size);
        return Ok(dest);
    }
    let partial = layout.partial(digest);
    let io_err = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| FetchError::Io { op, path, source }
    };
    let mut counted = 0u64; // bytes of this blob already added to `progress`
    let mut failures = 0u32;
    let mut restarted = false;
    loop {
        let (hasher, have) = hash_partial(&partial, size)
            .await
            .map_err(io_err("read partial download", &partial))?;
        let resumed_from = have;
        // Progress follows what is on disk, which is where the download resumes.
        if have > counted {
            progress.add(have - counted);
        } else {
            progress.sub(counted - have);
        }
        counted = have;
        let (hasher, have) = if have < size {
            match download(
                remote,
                desc,
                &partial,
                hasher,
                have,
                size,
                progress,
                &mut counted,
            )
            .await
            {
                Ok(done) => done,
                Err(Attempt::Retry(msg)) => {
                    failures += 1;
                    if failures >= ATTEMPTS {
                        return Err(FetchError::Registry(msg));
                    }
                    tracing::warn!(digest = %digest, registry = %remote.endpoint.host, error = %msg, "blob download interrupted; resuming");
                    tokio::time::sleep(Duration::from_millis(250 << failures)).await;
                    continue;
                }
                Err(Attempt::Fatal(e)) => {
                    let _ = tokio::fs::remove_file(&partial).await;
                    return Err(e);
                }
            }
        } else {
            (hasher, have)
        };
        debug_assert_eq!(have, size);
        let actual = hasher.finish();
        if &actual != digest {
            let _ = tokio::fs::remove_file(&partial).await;
            if resumed_from > 0 && !restarted {
                // The kept bytes may be what a crash left behind: start over once.
                restarted = true;
                continue;
            }
            return Err(FetchError::Mismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let file = tokio::fs::File::open(&partial)
            .await
            .map_err(io_err("open", &partial))?;
        file.sync_all().await.map_err(io_err("fsync", &partial))?;
        tokio::fs::rename(&partial, &dest)
            .await
            .map_err(io_err("commit blob to", &dest))?;
        return Ok(dest);
    }
}

enum Attempt {
    Retry(String),
    Fatal(FetchError),
}

/// Hash the bytes of an earlier, interrupted download; a file longer than the blob is reset.
async fn hash_partial(partial: &Path, size: u64) -> io::Result<(Hasher, u64)> {
    let mut hasher = Hasher::new();
    let mut file = match tokio::fs::File::open(partial).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((hasher, 0)),
        Err(e) => return Err(e),
    };
    if file.metadata().await?.len() > size {
        drop(file);
        tokio::fs::remove_file(partial).await?;
        return Ok((hasher, 0));
    }
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let have = hasher.len();
    Ok((hasher, have))
}

#[allow(clippy::too_many_arguments)]
async fn download(
    remote: &Remote,
    desc: &OciDescriptor,
    partial: &Path,
    mut hasher: Hasher,
    mut have: u64,
    size: u64,
    progress: &Progress<'_>,
    counted: &mut u64,
) -> Result<(Hasher, u64), Attempt> {
    let io_fatal = |op: &'static str| {
        let path = partial.to_path_buf();
        move |source| Attempt::Fatal(FetchError::Io { op, path, source })
    };
    let body = remote.blob(desc, have).await.map_err(|(msg, retryable)| {
        if retryable {
            Attempt::Retry(msg)
        } else {
            Attempt::Fatal(FetchError::Registry(msg))
        }
    })?;
    let mut options = tokio::fs::OpenOptions::new();
    options.create(true).write(true);
    if have > 0 && !body.partial {
        // The registry ignored the range and sends everything: start over.
        options.truncate(true);
        progress.sub(have);
        *counted = 0;
        have = 0;
        hasher = Hasher::new();
    } else {
        options.append(true);
    }
    let file = options.open(partial).await.map_err(io_fatal("create"))?;
    let mut out = tokio::io::BufWriter::with_capacity(1024 * 1024, file);
    let mut stream = body.stream;
    let mut stream_error = None;
    while have < size {
        match stream.next().await {
            Some(Ok(chunk)) => {
                let len = chunk.len() as u64;
                if have + len > size {
                    return Err(Attempt::Fatal(FetchError::TooLong { declared: size }));
                }
                out.write_all(&chunk).await.map_err(io_fatal("write"))?;
                hasher.update(&chunk);
                have += len;
                *counted += len;
                progress.received(len);
                progress.add(len);
            }
            Some(Err(e)) => {
                stream_error = Some(super::remote::describe(&e));
                break;
            }
            None => break,
        }
    }
    // Keep what arrived, even on an error, so the next attempt resumes after it.
    out.flush().await.map_err(io_fatal("write"))?;
    if have < size {
        return Err(Attempt::Retry(match stream_error {
            Some(e) => format!("connection lost after {have} of {size} bytes: {e}"),
            None => format!("truncated: the registry sent {have} of {size} bytes"),
        }));
    }
    Ok((hasher, have))
}
