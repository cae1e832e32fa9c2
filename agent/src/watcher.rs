//! File events on the manifest directory become reconcile triggers. The directory and its
//! parent are both watched, so a directory that appears later or a symlink swapped by a git
//! sync is noticed too; anything missed is caught by the periodic resync.

use std::path::Path;

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::reconcile::Trigger;

/// Keeps watching while the returned watcher lives.
pub fn watch(
    dir: &Path,
    triggers: mpsc::UnboundedSender<Trigger>,
) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event {
            if let Some(t) = trigger_for(&e.kind) {
                let _ = triggers.send(t);
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

/// A file closed after writing or renamed into place is complete: the pass may run at once.
/// Other changes (a write in progress, a chmod, a delete) come in bursts and are debounced.
fn trigger_for(kind: &EventKind) -> Option<Trigger> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Trigger::ManifestsWritten),
        EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => {
            Some(Trigger::ManifestsWritten)
        }
        EventKind::Access(_) => None,
        _ => Some(Trigger::ManifestsChanged),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_writes_skip_the_debounce_and_reads_trigger_nothing() {
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert_eq!(trigger_for(&closed), Some(Trigger::ManifestsWritten));
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert_eq!(trigger_for(&renamed), Some(Trigger::ManifestsWritten));
        let writing = EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any));
        assert_eq!(trigger_for(&writing), Some(Trigger::ManifestsChanged));
        assert_eq!(trigger_for(&EventKind::Access(AccessKind::Read)), None);
    }
}
