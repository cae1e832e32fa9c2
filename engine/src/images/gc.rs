//! Garbage collection: image records nobody keeps, then blobs and layers no record references.
//! Everything younger than the grace period stays, so a pull in progress (or an image pulled
//! for a container not created yet) is never collected; so does everything a container runs
//! on, named by its manifest digest even after its tag moved on to another image.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::content::Layout;
use super::digest::Digest;
use super::error::Result;
use super::layout::LocalSource;
use super::record;
use super::reference::ImageRef;
use super::store::{blocking, ImageStore};

/// What garbage collection keeps whatever its age: what containers use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InUse {
    /// Image references as manifests write them; their records stay, with all they reference.
    pub references: Vec<String>,
    /// Manifest digests (`sha256:…`) containers run on: the manifest blob, its config and its
    /// layers stay even when no record names them any more (the tag was pulled again).
    pub digests: Vec<String>,
}

/// What a collection removed, and what it failed to remove.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// References of the image records removed.
    pub images_removed: Vec<String>,
    pub blobs_removed: usize,
    pub layers_removed: usize,
    /// Stale downloads and unpacks removed from `content/tmp` and `layers/tmp`.
    pub temp_removed: usize,
    pub bytes_freed: u64,
    /// Every removal that failed (the collection goes on past each).
    pub errors: Vec<String>,
}

impl ImageStore {
    /// Remove image records whose reference is not in `keep` (the images containers use or
    /// manifests want), then every blob and layer no remaining record references. Records,
    /// blobs, layers and temp files younger than `grace` are kept.
    pub async fn gc(&self, keep: &[String], grace: Duration) -> Result<GcReport> {
        let in_use = InUse {
            references: keep.to_vec(),
            digests: Vec::new(),
        };
        self.gc_in_use(&in_use, grace).await
    }

    /// [`ImageStore::gc`], also keeping the manifests (with config and layers) that
    /// containers run on, by digest.
    pub async fn gc_in_use(&self, in_use: &InUse, grace: Duration) -> Result<GcReport> {
        let keep: HashSet<String> = in_use
            .references
            .iter()
            .map(|r| match ImageRef::parse(r) {
                Ok(i) if LocalSource::parse(r).is_none() => i.to_string(),
                _ => r.clone(),
            })
            .collect();
        // No pull runs in this process while we decide what is unreferenced.
        let _exclusive = self.gc_lock.write().await;
        let layout = self.layout.clone();
        let records = record::list(&layout)?;
        let digests: Vec<Digest> = in_use
            .digests
            .iter()
            .filter_map(|d| Digest::parse(d))
            .collect();
        let report = blocking(move || Ok(collect(&layout, records, &keep, &digests, grace)))
            .await
            .map_err(|source| super::error::ImageError::Store {
                op: "collect garbage in",
                path: self.layout.root.clone(),
                source,
            })?;
        tracing::info!(
            images = report.images_removed.len(),
            blobs = report.blobs_removed,
            layers = report.layers_removed,
            bytes = report.bytes_freed,
            errors = report.errors.len(),
            "image garbage collection done"
        );
        Ok(report)
    }
}

fn collect(
    layout: &Layout,
    records: Vec<(std::path::PathBuf, record::ImageRecord)>,
    keep: &HashSet<String>,
    in_use: &[Digest],
    grace: Duration,
) -> GcReport {
    let mut report = GcReport::default();
    let now = SystemTime::now();
    let old = |path: &Path| -> bool {
        fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .map(|t| now.duration_since(t).unwrap_or_default() >= grace)
            .unwrap_or(false)
    };
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    let mut referenced = HashSet::new();
    for digest in in_use {
        referenced.extend(manifest_digests(layout, digest));
    }
    for (path, rec) in records {
        let young = now_secs.saturating_sub(rec.pulled_at) < grace.as_secs();
        if keep.contains(&rec.reference) || young {
            referenced.extend(rec.all_digests().into_iter().map(|d| d.hex().to_string()));
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => report.images_removed.push(rec.reference),
            Err(e) => {
                report
                    .errors
                    .push(format!("remove image record {}: {e}", path.display()));
                referenced.extend(rec.all_digests().into_iter().map(|d| d.hex().to_string()));
            }
        }
    }

    for (dir, is_layers) in [(layout.blobs(), false), (layout.layers(), true)] {
        let Ok(entries) = fs::read_dir(&dir) else {
            report.errors.push(format!("list {}", dir.display()));
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Only content-addressed names; `layers/tmp` and strangers are left alone here.
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let path = entry.path();
            if referenced.contains(&name) || !old(&path) {
                continue;
            }
            let size = disk_usage(&path);
            let removed = if is_layers {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {
                    report.bytes_freed += size;
                    if is_layers {
                        report.layers_removed += 1;
                    } else {
                        report.blobs_removed += 1;
                    }
                }
                Err(e) => report
                    .errors
                    .push(format!("remove {}: {e}", path.display())),
            }
        }
    }

    for dir in [layout.content_tmp(), layout.layers_tmp()] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !old(&path) {
                continue;
            }
            let size = disk_usage(&path);
            let removed = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            match removed {
                Ok(()) => {
                    report.temp_removed += 1;
                    report.bytes_freed += size;
                }
                Err(e) => report
                    .errors
                    .push(format!("remove {}: {e}", path.display())),
            }
        }
    }
    report
}

/// The hex digests a stored manifest keeps alive: itself, its config and its layers. A
/// manifest that is gone or unreadable keeps only its own name.
fn manifest_digests(layout: &Layout, digest: &Digest) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Descriptor {
        digest: String,
    }
    #[derive(serde::Deserialize)]
    struct Manifest {
        config: Descriptor,
        #[serde(default)]
        layers: Vec<Descriptor>,
    }
    let mut out = vec![digest.hex().to_string()];
    let Ok(bytes) = fs::read(layout.blob(digest)) else {
        return out;
    };
    if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
        out.extend(
            std::iter::once(&m.config)
                .chain(&m.layers)
                .filter_map(|d| Digest::parse(&d.digest))
                .map(|d| d.hex().to_string()),
        );
    }
    out
}

/// Bytes a file or tree occupies (apparent sizes; hardlinks counted once per name).
fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0)
}
