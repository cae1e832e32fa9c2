//! The content store: verified blobs under `content/sha256/<hex>`, staged in `content/tmp/`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::digest::Digest;

/// Paths of the store under the state dir.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

impl Layout {
    pub fn blobs(&self) -> PathBuf {
        self.root.join("content").join("sha256")
    }
    pub fn content_tmp(&self) -> PathBuf {
        self.root.join("content").join("tmp")
    }
    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }
    pub fn layers_tmp(&self) -> PathBuf {
        self.root.join("layers").join("tmp")
    }
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }
    pub fn blob(&self, d: &Digest) -> PathBuf {
        self.blobs().join(d.hex())
    }
    pub fn layer(&self, d: &Digest) -> PathBuf {
        self.layers().join(d.hex())
    }
    /// The staging file of a blob download; it survives a crash so the download resumes.
    pub fn partial(&self, d: &Digest) -> PathBuf {
        self.content_tmp().join(format!("{}.partial", d.hex()))
    }
    /// A fresh staging directory for one unpack of `d`.
    pub fn layer_staging(&self, d: &Digest) -> PathBuf {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        self.layers_tmp()
            .join(format!("{}-{}-{n}", d.hex(), std::process::id()))
    }
    /// A unique temp name in `dir` for a write-then-rename.
    pub fn temp_in(dir: &Path, stem: &str) -> PathBuf {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        dir.join(format!(".{stem}.tmp-{}-{n}", std::process::id()))
    }
}

/// Write `bytes` to `path` durably: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = Layout::temp_in(dir, &stem);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Store `bytes` as the blob `digest` after checking that they hash to it.
pub fn put_verified(layout: &Layout, digest: &Digest, bytes: &[u8]) -> Result<PathBuf, String> {
    let actual = Digest::of(bytes);
    if &actual != digest {
        return Err(format!("digest mismatch: expected {digest}, got {actual}"));
    }
    let path = layout.blob(digest);
    if !path.exists() {
        write_atomic(&path, bytes).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(path)
}
