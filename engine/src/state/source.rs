//! The manifest source's sync record (one row): when a fetch last succeeded and what failed
//! since, so the status says it after a restart too. The applied revision itself is the
//! snapshot link under the state dir, not a row.

use rusqlite::{params, OptionalExtension};

use super::{Result, StateDb, StateError};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceSyncRecord {
    /// The URL the record is about; a record of another URL is stale.
    pub url: String,
    /// Unix ms of the last fetch that succeeded (and verified).
    pub synced_at_ms: Option<u64>,
    /// Unix ms of the last attempt.
    pub attempted_at_ms: u64,
    /// Why the last attempt did not apply, when it did not.
    pub error: Option<String>,
    /// Who signed the applied revision, when signatures are checked.
    pub signer: Option<String>,
}

impl StateDb {
    pub fn put_source_sync(&self, r: &SourceSyncRecord) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO source_sync (id, url, synced_at_ms, attempted_at_ms, error, signer)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5)",
                params![
                    r.url,
                    r.synced_at_ms.map(|t| t as i64),
                    r.attempted_at_ms as i64,
                    r.error,
                    r.signer
                ],
            )
            .map(|_| ())
            .map_err(|source| StateError::Query {
                op: "put source sync",
                source,
            })
        })
    }

    pub fn source_sync(&self) -> Result<Option<SourceSyncRecord>> {
        self.with(|conn| {
            conn.query_row(
                "SELECT url, synced_at_ms, attempted_at_ms, error, signer FROM source_sync WHERE id = 1",
                [],
                |r| {
                    Ok(SourceSyncRecord {
                        url: r.get(0)?,
                        synced_at_ms: r.get::<_, Option<i64>>(1)?.map(|t| t as u64),
                        attempted_at_ms: r.get::<_, i64>(2)? as u64,
                        error: r.get(3)?,
                        signer: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|source| StateError::Query {
                op: "read source sync",
                source,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(db.source_sync().unwrap(), None);
        let mut r = SourceSyncRecord {
            url: "https://git.example.org/fleet.git".into(),
            synced_at_ms: Some(5),
            attempted_at_ms: 9,
            error: Some("connect: refused".into()),
            signer: Some("alice (SHA256:x)".into()),
        };
        db.put_source_sync(&r).unwrap();
        assert_eq!(db.source_sync().unwrap(), Some(r.clone()));
        r.error = None;
        r.synced_at_ms = None;
        db.put_source_sync(&r).unwrap();
        assert_eq!(db.source_sync().unwrap(), Some(r));
    }
}
