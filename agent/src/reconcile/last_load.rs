//! What the last pass loaded from the manifest directory, shared with the status API so
//! `GET /v1/manifests` and `GET /v1/plan` report what the agent saw, without loading again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use berth_spec::LoadResult;

/// One load of the manifest directory and when it happened.
#[derive(Debug)]
pub struct Seen {
    pub load: LoadResult,
    /// Unix seconds of the pass that loaded it.
    pub at: u64,
}

/// The manifest directory and its latest load (none before the first pass).
#[derive(Debug)]
pub struct LastLoad {
    dir: PathBuf,
    seen: RwLock<Option<Arc<Seen>>>,
}

impl LastLoad {
    pub fn new(dir: PathBuf) -> LastLoad {
        LastLoad {
            dir,
            seen: RwLock::new(None),
        }
    }

    /// The directory the agent watches, as configured.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn set(&self, load: LoadResult, at: u64) {
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        *seen = Some(Arc::new(Seen { load, at }));
    }

    /// The latest load, or `None` before the first pass.
    pub fn get(&self) -> Option<Arc<Seen>> {
        self.seen.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_latest_load() {
        let last = LastLoad::new("/m".into());
        assert_eq!(last.dir(), Path::new("/m"));
        assert!(last.get().is_none());
        let load = berth_spec::load_files(vec![("/m/a.yaml".into(), b"x: [".to_vec())]);
        last.set(load, 5);
        last.set(LoadResult::default(), 9);
        let seen = last.get().expect("a load was stored");
        assert_eq!((seen.at, seen.load.files.len()), (9, 0));
    }
}
