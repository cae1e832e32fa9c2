//! How much disk the image store occupies (for the `berth_image_store_bytes` gauge): verified
//! blobs under `content/` and unpacked layers under `layers/`, downloads and unpacks in
//! progress included.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::error::{ImageError, Result};
use super::store::{blocking, ImageStore};

/// Bytes on disk (allocated blocks; a file with several hardlinks counted once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreUsage {
    /// `content/`: compressed blobs, manifests and configs.
    pub content_bytes: u64,
    /// `layers/`: unpacked layer trees.
    pub layers_bytes: u64,
}

impl ImageStore {
    /// Walk the store and add up what it occupies. Runs off the async threads; a file removed
    /// during the walk (a collection, a finished unpack) is skipped.
    pub async fn usage(&self) -> Result<StoreUsage> {
        let content = self.layout.root.join("content");
        let layers = self.layout.layers();
        let root = self.layout.root.clone();
        blocking(move || {
            let mut seen = HashSet::new();
            Ok(StoreUsage {
                content_bytes: tree_bytes(&content, &mut seen)?,
                layers_bytes: tree_bytes(&layers, &mut seen)?,
            })
        })
        .await
        .map_err(|source| ImageError::Store {
            op: "measure",
            path: root,
            source,
        })
    }
}

fn tree_bytes(path: &Path, seen: &mut HashSet<(u64, u64)>) -> io::Result<u64> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
        return Ok(0);
    }
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        let entries = match fs::read_dir(path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        for entry in entries {
            total += tree_bytes(&entry?.path(), seen)?;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_content_and_layers_and_hardlinks_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let empty = store.usage().await.unwrap();
        let blob = dir.path().join("content/sha256").join("a".repeat(64));
        fs::write(&blob, vec![7u8; 64 * 1024]).unwrap();
        let layer = dir.path().join("layers").join("b".repeat(64));
        fs::create_dir(&layer).unwrap();
        fs::write(layer.join("f"), vec![1u8; 128 * 1024]).unwrap();
        fs::hard_link(layer.join("f"), layer.join("g")).unwrap();
        let after = store.usage().await.unwrap();
        let blocks = |p: &Path| fs::symlink_metadata(p).unwrap().blocks() * 512;
        assert_eq!(
            after.content_bytes - empty.content_bytes,
            blocks(&blob),
            "{after:?} vs {empty:?}"
        );
        assert_eq!(
            after.layers_bytes - empty.layers_bytes,
            blocks(&layer) + blocks(&layer.join("f")),
            "{after:?} vs {empty:?}"
        );
        assert!(blocks(&layer.join("f")) >= 128 * 1024);
    }
}
