//! Snapshots: each applied revision's manifests, checked out under
//! `<state>/source/snapshots/<commit>/`, and `<state>/source/current`, a symlink switched
//! atomically (rename) to the one the agent applies. What the link names survives restarts
//! and reboots: offline, the agent keeps running it.
//!
//! Only the configured paths are checked out, regular files only: a symlink in the repository
//! could point anywhere on the host, and submodules are not fetched, so both are left out.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use gix::object::tree::EntryKind;

/// A checkout larger than this is refused: manifests are small, and a snapshot must not
/// fill the state disk.
pub const MAX_BYTES: u64 = 64 << 20;
pub const MAX_FILES: usize = 10_000;

/// Checks out `paths` of `tree` into `<snapshots>/<revision>`, through a temporary directory
/// renamed into place, so a snapshot directory is always complete.
pub fn check_out(
    tree: &gix::Tree<'_>,
    paths: &[String],
    snapshots: &Path,
    revision: &str,
) -> Result<PathBuf, String> {
    fs::create_dir_all(snapshots).map_err(|e| format!("create {}: {e}", snapshots.display()))?;
    let tmp = snapshots.join(format!(".tmp-{revision}"));
    let _ = fs::remove_dir_all(&tmp);
    let result = write_paths(tree, paths, &tmp, revision);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let dest = snapshots.join(revision);
    let _ = fs::remove_dir_all(&dest);
    fs::rename(&tmp, &dest)
        .map_err(|e| format!("rename {} to {}: {e}", tmp.display(), dest.display()))?;
    sync_dir(snapshots);
    Ok(dest)
}

struct Budget {
    bytes: u64,
    files: usize,
}

fn write_paths(
    tree: &gix::Tree<'_>,
    paths: &[String],
    root: &Path,
    revision: &str,
) -> Result<(), String> {
    let short = &revision[..revision.len().min(12)];
    mkdir(root)?;
    let mut budget = Budget { bytes: 0, files: 0 };
    for path in paths {
        let dest = root.join(path);
        let subtree = if path.is_empty() {
            tree.clone()
        } else {
            let entry = tree
                .lookup_entry_by_path(path)
                .map_err(|e| format!("look up {path} in {short}: {e}"))?
                .ok_or_else(|| format!("path {path:?} is not in revision {short} (hint: create the directory in the repository; an empty one needs a file such as .keep)"))?;
            if !entry.mode().is_tree() {
                return Err(format!(
                    "path {path:?} is a file in revision {short}, not a directory"
                ));
            }
            entry
                .object()
                .map_err(|e| format!("read {path} of {short}: {e}"))?
                .into_tree()
        };
        fs::create_dir_all(&dest).map_err(|e| format!("create {}: {e}", dest.display()))?;
        write_tree(&subtree, &dest, &mut budget)?;
    }
    Ok(())
}

fn write_tree(tree: &gix::Tree<'_>, dir: &Path, budget: &mut Budget) -> Result<(), String> {
    for entry in tree.iter() {
        let entry = entry.map_err(|e| format!("read tree {}: {e}", tree.id))?;
        let name = entry.filename().to_string();
        if name.contains('/') || name == "." || name == ".." || name == ".git" {
            return Err(format!("tree {} has an entry named {name:?}", tree.id));
        }
        let path = dir.join(&name);
        match entry.kind() {
            EntryKind::Tree => {
                mkdir(&path)?;
                let sub = entry
                    .object()
                    .map_err(|e| format!("read {}: {e}", path.display()))?
                    .into_tree();
                write_tree(&sub, &path, budget)?;
            }
            EntryKind::Blob | EntryKind::BlobExecutable => {
                let blob = entry
                    .object()
                    .map_err(|e| format!("read {}: {e}", path.display()))?;
                budget.files += 1;
                budget.bytes += blob.data.len() as u64;
                if budget.files > MAX_FILES || budget.bytes > MAX_BYTES {
                    return Err(format!(
                        "the paths hold more than {MAX_FILES} files or {} MiB (hint: point `paths` at the manifest directories only)",
                        MAX_BYTES >> 20
                    ));
                }
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| format!("create {}: {e}", path.display()))?;
                f.write_all(&blob.data)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| format!("write {}: {e}", path.display()))?;
            }
            // Left out: a link could point anywhere on the host; submodules are not fetched.
            EntryKind::Link | EntryKind::Commit => {
                tracing::warn!(path = %path.display(), "not checked out: symlinks and submodules in the repository are left out");
            }
        }
    }
    Ok(())
}

fn mkdir(path: &Path) -> Result<(), String> {
    fs::create_dir(path).map_err(|e| format!("create {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The layout of the source's part of the state dir.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(state_dir: &Path) -> Layout {
        Layout {
            root: state_dir.join("source"),
        }
    }

    /// The bare repository of the fetch running now (removed when it ends).
    pub fn fetch_dir(&self) -> PathBuf {
        self.root.join("fetch.git")
    }

    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    /// The revision applied now, and its snapshot.
    pub fn current(&self) -> Option<(String, PathBuf)> {
        let target = fs::read_link(self.current_link()).ok()?;
        let revision = target.file_name()?.to_str()?.to_string();
        let dir = self.snapshots().join(&revision);
        dir.is_dir().then_some((revision, dir))
    }

    /// Makes `revision`'s snapshot the current one, atomically.
    pub fn switch(&self, revision: &str) -> std::io::Result<()> {
        let tmp = self.root.join("current.tmp");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(Path::new("snapshots").join(revision), &tmp)?;
        fs::rename(&tmp, self.current_link())?;
        sync_dir(&self.root);
        Ok(())
    }

    /// Removes every snapshot but `keep` (and leftovers of interrupted checkouts).
    pub fn prune(&self, keep: &str) {
        let Ok(entries) = fs::read_dir(self.snapshots()) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_str() != Some(keep) {
                if let Err(err) = fs::remove_dir_all(e.path()) {
                    tracing::warn!(path = %e.path().display(), error = %err, "remove an old snapshot");
                }
            }
        }
    }

    /// The directories the loader reads for a snapshot, in the configured order.
    pub fn dirs(snapshot: &Path, paths: &[String]) -> Vec<PathBuf> {
        paths
            .iter()
            .map(|p| {
                if p.is_empty() {
                    snapshot.to_path_buf()
                } else {
                    snapshot.join(p)
                }
            })
            .collect()
    }
}
