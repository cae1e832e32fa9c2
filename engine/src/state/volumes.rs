//! Volume records: every named volume berth created under its state dir, and whether a
//! manifest still defines it.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{Result, StateDb, StateError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRecord {
    pub name: String,
    pub spec_hash: String,
    /// Retain | Delete
    pub reclaim_policy: String,
    /// The manifest file the volume came from.
    pub source_file: String,
    /// Its manifest is gone and its reclaim policy kept it (data and record stay).
    pub retained: bool,
    /// Unix milliseconds.
    pub created_at_ms: u64,
}

const COLUMNS: &str = "name, spec_hash, reclaim_policy, source_file, retained, created_at_ms";

fn from_row(r: &Row<'_>) -> rusqlite::Result<VolumeRecord> {
    Ok(VolumeRecord {
        name: r.get(0)?,
        spec_hash: r.get(1)?,
        reclaim_policy: r.get(2)?,
        source_file: r.get(3)?,
        retained: r.get::<_, i64>(4)? != 0,
        created_at_ms: r.get::<_, i64>(5)? as u64,
    })
}

impl StateDb {
    pub fn put_volume(&self, v: &VolumeRecord) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                &format!(
                    "INSERT OR REPLACE INTO volumes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ),
                params![
                    v.name,
                    v.spec_hash,
                    v.reclaim_policy,
                    v.source_file,
                    v.retained as i64,
                    v.created_at_ms as i64
                ],
            )
            .map(|_| ())
            .map_err(|source| StateError::Query {
                op: "put volume",
                source,
            })
        })
    }

    pub fn get_volume(&self, name: &str) -> Result<Option<VolumeRecord>> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM volumes WHERE name = ?1"),
                [name],
                from_row,
            )
            .optional()
            .map_err(|source| StateError::Query {
                op: "get volume",
                source,
            })
        })
    }

    pub fn list_volumes(&self) -> Result<Vec<VolumeRecord>> {
        self.with(|conn| {
            let q = |source| StateError::Query {
                op: "list volumes",
                source,
            };
            let mut stmt = conn
                .prepare(&format!("SELECT {COLUMNS} FROM volumes ORDER BY name"))
                .map_err(q)?;
            let rows = stmt.query_map([], from_row).map_err(q)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(q)
        })
    }

    pub fn delete_volume(&self, name: &str) -> Result<()> {
        self.with(|conn| {
            conn.execute("DELETE FROM volumes WHERE name = ?1", [name])
                .map(|_| ())
                .map_err(|source| StateError::Query {
                    op: "delete volume",
                    source,
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_survive_reopen_and_delete_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let data = VolumeRecord {
            name: "data".into(),
            spec_hash: "sha256:v".into(),
            reclaim_policy: "Delete".into(),
            source_file: "/m/v.yaml".into(),
            retained: false,
            created_at_ms: 1_700_000_000_123,
        };
        {
            let db = StateDb::open(dir.path()).unwrap();
            db.put_volume(&data).unwrap();
            db.put_volume(&VolumeRecord {
                name: "cache".into(),
                retained: true,
                ..data.clone()
            })
            .unwrap();
        }
        let db = StateDb::open(dir.path()).unwrap();
        let all = db.list_volumes().unwrap();
        assert_eq!(
            all.iter()
                .map(|v| (v.name.as_str(), v.retained))
                .collect::<Vec<_>>(),
            [("cache", true), ("data", false)]
        );
        assert_eq!(db.get_volume("data").unwrap(), Some(data));
        db.delete_volume("data").unwrap();
        assert_eq!(db.get_volume("data").unwrap(), None);
    }
}
