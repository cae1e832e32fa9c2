//! Last-known-good manifest objects: the latest version of every object that loaded, so a
//! file that stops loading keeps its objects at that version, across agent restarts.

use rusqlite::{params, Row};
use serde::{Deserialize, Serialize};

use super::{Result, StateDb, StateError};

/// One object as it was when its file last loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastGoodRecord {
    /// `Container`, `Network` or `Volume`.
    pub kind: String,
    pub name: String,
    /// The manifest file the object came from.
    pub source_file: String,
    pub spec_hash: String,
    /// Its runtime hash; `None` in rows written before berth knew it.
    #[serde(default)]
    pub runtime_hash: Option<String>,
    /// The whole object (`apiVersion`, `kind`, `metadata`, `spec`) as canonical JSON.
    pub object_json: String,
    /// Unix seconds of the last change of this row.
    pub updated_at: u64,
}

const COLUMNS: &str = "kind, name, source_file, spec_hash, object_json, updated_at, runtime_hash";

fn from_row(r: &Row<'_>) -> rusqlite::Result<LastGoodRecord> {
    Ok(LastGoodRecord {
        kind: r.get(0)?,
        name: r.get(1)?,
        source_file: r.get(2)?,
        spec_hash: r.get(3)?,
        object_json: r.get(4)?,
        updated_at: r.get::<_, i64>(5)? as u64,
        runtime_hash: r.get(6)?,
    })
}

impl StateDb {
    /// Every last-good object, ordered by kind and name.
    pub fn list_last_good(&self) -> Result<Vec<LastGoodRecord>> {
        self.with(|conn| {
            let q = |source| StateError::Query {
                op: "list last-good objects",
                source,
            };
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM last_good ORDER BY kind, name"
                ))
                .map_err(q)?;
            let rows = stmt.query_map([], from_row).map_err(q)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(q)
        })
    }

    /// Upserts `put` and deletes `delete` (kind, name) in one transaction, so a crash never
    /// leaves half of a pass's changes.
    pub fn update_last_good(
        &self,
        put: &[LastGoodRecord],
        delete: &[(String, String)],
    ) -> Result<()> {
        if put.is_empty() && delete.is_empty() {
            return Ok(());
        }
        self.with(|conn| {
            let q = |source| StateError::Query {
                op: "update last-good objects",
                source,
            };
            let tx = conn.unchecked_transaction().map_err(q)?;
            {
                let mut upsert = tx
                    .prepare(&format!(
                        "INSERT OR REPLACE INTO last_good ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                    ))
                    .map_err(q)?;
                for r in put {
                    upsert
                        .execute(params![
                            r.kind,
                            r.name,
                            r.source_file,
                            r.spec_hash,
                            r.object_json,
                            r.updated_at as i64,
                            r.runtime_hash
                        ])
                        .map_err(q)?;
                }
                let mut remove = tx
                    .prepare("DELETE FROM last_good WHERE kind = ?1 AND name = ?2")
                    .map_err(q)?;
                for (kind, name) in delete {
                    remove.execute(params![kind, name]).map_err(q)?;
                }
            }
            tx.commit().map_err(q)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, name: &str, hash: &str) -> LastGoodRecord {
        LastGoodRecord {
            kind: kind.into(),
            name: name.into(),
            source_file: format!("/m/{name}.yaml"),
            spec_hash: hash.into(),
            runtime_hash: Some(format!("{hash}-run")),
            object_json: format!(r#"{{"kind":"{kind}","metadata":{{"name":"{name}"}}}}"#),
            updated_at: 7,
        }
    }

    #[test]
    fn upserts_and_deletes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = StateDb::open(dir.path()).unwrap();
            db.update_last_good(
                &[
                    record("Container", "web", "sha256:1"),
                    record("Volume", "data", "sha256:2"),
                    record("Container", "db", "sha256:3"),
                ],
                &[],
            )
            .unwrap();
            let mut changed = record("Container", "web", "sha256:9");
            changed.source_file = "/m/moved.yaml".into();
            changed.updated_at = 8;
            db.update_last_good(
                &[changed],
                &[
                    ("Container".into(), "db".into()),
                    ("Container".into(), "absent".into()),
                ],
            )
            .unwrap();
        }
        let db = StateDb::open(dir.path()).unwrap();
        let all = db.list_last_good().unwrap();
        let mut web = record("Container", "web", "sha256:9");
        web.source_file = "/m/moved.yaml".into();
        web.updated_at = 8;
        assert_eq!(all, vec![web, record("Volume", "data", "sha256:2")]);
        db.update_last_good(&[], &[]).unwrap();
        assert_eq!(db.list_last_good().unwrap().len(), 2);
    }
}
