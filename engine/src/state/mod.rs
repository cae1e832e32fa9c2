//! The agent's memory: an SQLite database in WAL mode under the state dir. It records every
//! host object berth created (so only those are ever pruned) and what it knows of them, and
//! survives agent restarts and power loss.

mod containers;
mod events;
mod last_good;
mod leases;
mod lifecycle;
mod networks;
mod rollout;
mod schema;
mod source;
mod volumes;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::Connection;

pub use containers::ContainerRecord;
pub use events::{EventRecord, MAX_EVENTS};
pub use last_good::LastGoodRecord;
pub use leases::LeaseRecord;
pub use lifecycle::{ContainerState, Reason, UnknownWord};
pub use networks::NetworkRecord;
pub use rollout::{Revision, Rollout};
pub use source::SourceSyncRecord;
pub use volumes::VolumeRecord;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("open state db {path}: {source} (hint: is another agent using this state dir?)")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state db {op}: {source}")]
    Query {
        op: &'static str,
        source: rusqlite::Error,
    },
    #[error("state db was written by a newer berth (schema {found}, this binary knows {known}) (hint: upgrade berth)")]
    TooNew { found: i64, known: i64 },
}

pub type Result<T, E = StateError> = std::result::Result<T, E>;

pub struct StateDb {
    conn: Mutex<Connection>,
}

impl StateDb {
    pub const FILE: &'static str = "state.db";

    /// Opens (creating if needed) `state.db` in `state_dir` and brings its schema up to date.
    pub fn open(state_dir: &Path) -> Result<StateDb> {
        let path = state_dir.join(Self::FILE);
        let open_err = |source| StateError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // FULL: a committed transaction survives power loss, not just a process crash.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        schema::migrate(&conn)?;
        Ok(StateDb {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}
