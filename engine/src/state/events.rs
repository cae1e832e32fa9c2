//! Events: what the agent did to which object and how it went, the last [`MAX_EVENTS`] kept,
//! so the history survives agent restarts.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{Result, StateDb, StateError};

/// Events kept; older ones are dropped as new ones come.
pub const MAX_EVENTS: i64 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// Increasing: a client that saw id N asks for what came after.
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// `Container/web`, `Network/front`, `Volume/data`, `Source/git`.
    pub object: String,
    /// `create`, `start`, `stop`, `remove`, `recreate`, `rollback`, `exited`, `sync`, …
    pub action: String,
    /// `ok` or `error`.
    pub result: String,
    pub message: Option<String>,
}

impl StateDb {
    /// Appends an event (its `id` is assigned) and drops the oldest beyond the limit.
    pub fn append_event(&self, e: &EventRecord) -> Result<i64> {
        self.with(|conn| {
            let q = |source| StateError::Query {
                op: "append event",
                source,
            };
            conn.execute(
                "INSERT INTO events (at_ms, object, action, result, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![e.at_ms as i64, e.object, e.action, e.result, e.message],
            )
            .map_err(q)?;
            let id = conn.last_insert_rowid();
            conn.execute("DELETE FROM events WHERE id <= ?1", params![id - MAX_EVENTS])
                .map_err(q)?;
            Ok(id)
        })
    }

    /// Events at or after `since_ms`, oldest first.
    pub fn events_since(&self, since_ms: u64) -> Result<Vec<EventRecord>> {
        self.with(|conn| {
            let q = |source| StateError::Query {
                op: "list events",
                source,
            };
            let mut stmt = conn
                .prepare(
                    "SELECT id, at_ms, object, action, result, message FROM events WHERE at_ms >= ?1 ORDER BY id",
                )
                .map_err(q)?;
            let rows = stmt
                .query_map(params![since_ms as i64], |r| {
                    Ok(EventRecord {
                        id: r.get(0)?,
                        at_ms: r.get::<_, i64>(1)? as u64,
                        object: r.get(2)?,
                        action: r.get(3)?,
                        result: r.get(4)?,
                        message: r.get(5)?,
                    })
                })
                .map_err(q)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(q)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at_ms: u64, n: usize) -> EventRecord {
        EventRecord {
            id: 0,
            at_ms,
            object: format!("Container/c{n}"),
            action: "start".into(),
            result: "ok".into(),
            message: None,
        }
    }

    #[test]
    fn events_are_kept_in_order_up_to_the_limit_and_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = StateDb::open(dir.path()).unwrap();
            for n in 0..(MAX_EVENTS as usize + 5) {
                db.append_event(&event(1000 + n as u64, n)).unwrap();
            }
        }
        let db = StateDb::open(dir.path()).unwrap();
        let all = db.events_since(0).unwrap();
        assert_eq!(all.len(), MAX_EVENTS as usize);
        assert_eq!(all[0].object, "Container/c5", "the oldest five went");
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));
        let recent = db.events_since(1000 + MAX_EVENTS as u64 + 3).unwrap();
        assert_eq!(
            recent.iter().map(|e| e.object.as_str()).collect::<Vec<_>>(),
            [
                format!("Container/c{}", MAX_EVENTS + 3),
                format!("Container/c{}", MAX_EVENTS + 4)
            ]
        );
    }
}
