//! Committing the layers of one pull. Each layer is unpacked into `layers/tmp/`; right after,
//! its writeback starts in the background (`syncfs`) while the next layer unpacks; when every
//! layer is unpacked and its sync has returned, all are renamed into place. A committed layer
//! is whole after a power cut, and the pipeline never stalls on the disk between layers.

use std::io;
use std::path::{Path, PathBuf};

use tokio::task::JoinHandle;

use super::error::Result;
use super::store::{blocking, ImageStore};

/// One layer of the image being pulled: already in the store, or unpacked by this pull.
pub(super) enum PulledLayer {
    Present(PathBuf),
    Staged(Staged),
}

/// A layer unpacked into `layers/tmp/`, flushing to disk.
pub(super) struct Staged {
    pub staging: PathBuf,
    /// Its place in the store, `layers/<hex>`.
    pub dir: PathBuf,
    sync: JoinHandle<io::Result<()>>,
}

impl PulledLayer {
    /// Where the layer's tree is now (the layers above it read it as a lower).
    pub fn current(&self) -> &Path {
        match self {
            PulledLayer::Present(dir) => dir,
            PulledLayer::Staged(s) => &s.staging,
        }
    }
}

impl Staged {
    /// Start flushing the filesystem now that `staging` is complete.
    pub fn new(staging: PathBuf, dir: PathBuf) -> Staged {
        let path = staging.clone();
        let sync = tokio::task::spawn_blocking(move || {
            let d = std::fs::File::open(&path)?;
            nix::unistd::syncfs(&d).map_err(io::Error::from)
        });
        Staged { staging, dir, sync }
    }

    async fn synced(&mut self) -> io::Result<()> {
        match (&mut self.sync).await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(format!("sync task failed: {e}"))),
        }
    }
}

impl ImageStore {
    /// Wait for every staged layer to be on disk, then rename each into place (a layer that
    /// another pull committed meanwhile is kept and ours dropped) and flush `layers/` itself.
    /// Returns the layer dirs, lowest first. On failure nothing staged is left behind.
    pub(super) async fn commit_layers(
        &self,
        name: &str,
        layers: Vec<PulledLayer>,
    ) -> Result<Vec<PathBuf>> {
        let mut renames = Vec::new();
        let mut dirs = Vec::new();
        let mut failed = None;
        for layer in layers {
            match layer {
                PulledLayer::Present(dir) => dirs.push(dir),
                PulledLayer::Staged(mut s) => {
                    if let Err(e) = s.synced().await {
                        failed.get_or_insert((s.staging.clone(), e));
                    }
                    dirs.push(s.dir.clone());
                    renames.push((s.staging, s.dir));
                }
            }
        }
        if let Some((path, e)) = failed {
            self.remove_staged(renames.into_iter().map(|(s, _)| s).collect())
                .await;
            return Err(self.io_err(name, "flush unpacked layer", path, e));
        }
        let layers_dir = self.layout.layers();
        blocking(move || {
            let mut first_error = None;
            for (staging, dir) in renames {
                let outcome = match std::fs::rename(&staging, &dir) {
                    Ok(()) => Ok(()),
                    // Another pull committed the same layer first: theirs is as good as ours.
                    Err(_) if dir.is_dir() => std::fs::remove_dir_all(&staging),
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&staging);
                        Err(e)
                    }
                };
                if let Err(e) = outcome {
                    first_error.get_or_insert(e);
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            // The renames must be on disk before the image record that names the layers.
            std::fs::File::open(&layers_dir)?.sync_all()
        })
        .await
        .map_err(|e| self.io_err(name, "commit layers into", self.layout.layers(), e))?;
        Ok(dirs)
    }

    /// A pull failed: wait for the flushes in flight and remove what it staged.
    pub(super) async fn discard_layers(&self, layers: Vec<PulledLayer>) {
        let mut staged = Vec::new();
        for layer in layers {
            if let PulledLayer::Staged(mut s) = layer {
                let _ = s.synced().await;
                staged.push(s.staging);
            }
        }
        self.remove_staged(staged).await;
    }

    async fn remove_staged(&self, staged: Vec<PathBuf>) {
        let removed = blocking(move || {
            for path in staged {
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "remove a staged layer");
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, "remove staged layers");
        }
    }
}
