//! File events on the manifest directory become reconcile triggers. The directory and its
//! parent are both watched, so a directory that appears later or a symlink swapped by a git
//! sync is noticed too; anything missed is caught by the periodic resync.

use std::path::Path;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::reconcile::Trigger;

/// Keeps watching while the returned watcher lives.
pub fn watch(dir: &Path, triggers: mpsc::UnboundedSender<Trigger>) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event {
            if !e.kind.is_access() {
                let _ = triggers.send(Trigger::ManifestsChanged);
            }
        }
    })?;
    if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the manifest directory yet; relying on the periodic resync");
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive) {
            tracing::debug!(dir = %parent.display(), error = %e, "cannot watch the manifest directory's parent");
        }
    }
    Ok(watcher)
}
