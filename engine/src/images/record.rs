//! The local record of a pulled image (`images/<sha256 of the reference>.json`), so `lookup`
//! works after a restart without the network.

use std::io;
use std::path::{Path, PathBuf};

use super::config::ImageConfig;
use super::content::{write_atomic, Layout};
use super::digest::Digest;
use super::error::{ImageError, Result};

const VERSION: u32 = 1;

/// What berth remembers about a pulled image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    pub version: u32,
    /// Normalized reference, e.g. `docker.io/library/busybox:1.36`.
    pub reference: String,
    /// Platform manifest digest.
    pub digest: String,
    pub config_digest: String,
    pub config: ImageConfig,
    /// Layer blob digests, lowest first.
    pub layers: Vec<String>,
    /// Compressed size of config and layers.
    pub size: u64,
    /// Unix seconds of the pull.
    pub pulled_at: u64,
}

impl ImageRecord {
    pub fn new(
        reference: String,
        digest: &Digest,
        config_digest: &Digest,
        config: ImageConfig,
        layers: &[Digest],
        size: u64,
    ) -> ImageRecord {
        ImageRecord {
            version: VERSION,
            reference,
            digest: digest.to_string(),
            config_digest: config_digest.to_string(),
            config,
            layers: layers.iter().map(Digest::to_string).collect(),
            size,
            pulled_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    /// The layer digests, validated (the record is a file an operator could edit).
    pub fn layer_digests(&self, path: &Path) -> Result<Vec<Digest>> {
        self.layers
            .iter()
            .map(|l| {
                Digest::parse(l).ok_or_else(|| ImageError::Record {
                    path: path.to_path_buf(),
                    reason: format!("invalid layer digest {l:?}"),
                })
            })
            .collect()
    }

    /// Every digest the record keeps alive: manifest, config and layers.
    pub fn all_digests(&self) -> Vec<Digest> {
        std::iter::once(&self.digest)
            .chain(std::iter::once(&self.config_digest))
            .chain(self.layers.iter())
            .filter_map(|d| Digest::parse(d))
            .collect()
    }
}

/// `images/<sha256 of the normalized reference>.json`: a fixed-length, path-safe name.
pub fn record_path(layout: &Layout, normalized_reference: &str) -> PathBuf {
    layout.images().join(format!(
        "{}.json",
        Digest::of(normalized_reference.as_bytes()).hex()
    ))
}

/// Write durably (temp, fsync, rename).
pub fn write(path: &Path, record: &ImageRecord) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
    write_atomic(path, &json)
}

/// Read a record; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<ImageRecord>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ImageError::Store {
                op: "read image record",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let record: ImageRecord = serde_json::from_slice(&bytes).map_err(|e| ImageError::Record {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if record.version != VERSION {
        return Err(ImageError::Record {
            path: path.to_path_buf(),
            reason: format!("version {} is not {VERSION}", record.version),
        });
    }
    Ok(Some(record))
}

/// Every record in the store (unreadable ones are skipped with a warning).
pub fn list(layout: &Layout) -> Result<Vec<(PathBuf, ImageRecord)>> {
    let dir = layout.images();
    let entries = std::fs::read_dir(&dir).map_err(|source| ImageError::Store {
        op: "list",
        path: dir.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match read(&path) {
            Ok(Some(r)) => out.push((path, r)),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "skipping unreadable image record"),
        }
    }
    Ok(out)
}
