//! Container records: which containers berth created and what it last knew of them.

use rusqlite::types::Type;
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::lifecycle::{ContainerState, Reason};
use super::rollout::Rollout;
use super::{Result, StateDb, StateError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    pub name: String,
    /// Unique per creation: a recreated container gets a new id (and new dirs and cgroup).
    pub id: String,
    /// The manifest file the object came from.
    pub source_file: String,
    /// The revision it runs (the manifest object's spec hash).
    pub spec_hash: String,
    /// What its process is made of; `None` in records written before berth knew it.
    pub runtime_hash: Option<String>,
    pub spec_json: String,
    pub image: String,
    pub image_digest: Option<String>,
    pub state: ContainerState,
    pub shim_pid: Option<i32>,
    pub shim_start_time: Option<u64>,
    pub init_pid: Option<i32>,
    pub exit_code: Option<i32>,
    /// Restarts of this container over its whole life (Docker's and Kubernetes' count).
    pub restart_count: u32,
    pub message: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    pub reason: Option<Reason>,
    /// Failed runs in a row, for the restart back-off; a long enough run resets it.
    pub backoff_streak: u32,
    /// Its process has run at least once (setup failures before that are always retried).
    pub ever_ran: bool,
    /// An update that has not proved itself yet, with the revision to go back to.
    pub rollout: Option<Rollout>,
    /// A revision that was rolled back: not tried again until the manifest changes.
    pub rejected_hash: Option<String>,
}

impl ContainerRecord {
    /// How long its last run lasted, if it started and ended.
    pub fn ran_ms(&self) -> Option<u64> {
        Some(self.finished_at_ms?.saturating_sub(self.started_at_ms?))
    }
}

const COLUMNS: &str = "name, id, source_file, spec_hash, spec_json, image, image_digest, state, \
    shim_pid, shim_start_time, init_pid, exit_code, restart_count, message, created_at_ms, \
    started_at_ms, finished_at_ms, reason, backoff_streak, ever_ran, rollout_json, rejected_hash, \
    runtime_hash";

fn text_column<T: std::str::FromStr>(r: &Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    r.get::<_, String>(i)?
        .parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<ContainerRecord> {
    let reason = match r.get::<_, Option<String>>(17)? {
        Some(_) => Some(text_column(r, 17)?),
        None => None,
    };
    let rollout =
        match r.get::<_, Option<String>>(20)? {
            Some(json) => Some(serde_json::from_str(&json).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(20, Type::Text, Box::new(e))
            })?),
            None => None,
        };
    let ms =
        |i| -> rusqlite::Result<Option<u64>> { Ok(r.get::<_, Option<i64>>(i)?.map(|v| v as u64)) };
    Ok(ContainerRecord {
        name: r.get(0)?,
        id: r.get(1)?,
        source_file: r.get(2)?,
        spec_hash: r.get(3)?,
        spec_json: r.get(4)?,
        image: r.get(5)?,
        image_digest: r.get(6)?,
        state: text_column(r, 7)?,
        shim_pid: r.get(8)?,
        shim_start_time: ms(9)?,
        init_pid: r.get(10)?,
        exit_code: r.get(11)?,
        restart_count: r.get(12)?,
        message: r.get(13)?,
        created_at_ms: r.get::<_, i64>(14)? as u64,
        started_at_ms: ms(15)?,
        finished_at_ms: ms(16)?,
        reason,
        backoff_streak: r.get(18)?,
        ever_ran: r.get::<_, i64>(19)? != 0,
        rollout,
        rejected_hash: r.get(21)?,
        runtime_hash: r.get(22)?,
    })
}

impl StateDb {
    pub fn put_container(&self, c: &ContainerRecord) -> Result<()> {
        let rollout = c
            .rollout
            .as_ref()
            .map(|r| serde_json::to_string(r).expect("a rollout serializes"));
        self.with(|conn| {
            conn.execute(
                &format!("INSERT OR REPLACE INTO containers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)"),
                params![
                    c.name,
                    c.id,
                    c.source_file,
                    c.spec_hash,
                    c.spec_json,
                    c.image,
                    c.image_digest,
                    c.state.as_str(),
                    c.shim_pid,
                    c.shim_start_time.map(|v| v as i64),
                    c.init_pid,
                    c.exit_code,
                    c.restart_count,
                    c.message,
                    c.created_at_ms as i64,
                    c.started_at_ms.map(|v| v as i64),
                    c.finished_at_ms.map(|v| v as i64),
                    c.reason.map(Reason::as_str),
                    c.backoff_streak,
                    c.ever_ran as i64,
                    rollout,
                    c.rejected_hash,
                    c.runtime_hash,
                ],
            )
            .map(|_| ())
            .map_err(|source| StateError::Query { op: "put container", source })
        })
    }

    pub fn get_container(&self, name: &str) -> Result<Option<ContainerRecord>> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE name = ?1"),
                [name],
                from_row,
            )
            .optional()
            .map_err(|source| StateError::Query {
                op: "get container",
                source,
            })
        })
    }

    pub fn list_containers(&self) -> Result<Vec<ContainerRecord>> {
        self.with(|conn| {
            let q = |source| StateError::Query {
                op: "list containers",
                source,
            };
            let mut stmt = conn
                .prepare(&format!("SELECT {COLUMNS} FROM containers ORDER BY name"))
                .map_err(q)?;
            let rows = stmt.query_map([], from_row).map_err(q)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(q)
        })
    }

    pub fn delete_container(&self, name: &str) -> Result<()> {
        self.with(|conn| {
            conn.execute("DELETE FROM containers WHERE name = ?1", [name])
                .map(|_| ())
                .map_err(|source| StateError::Query {
                    op: "delete container",
                    source,
                })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::state::Revision;

    pub(crate) fn record(name: &str) -> ContainerRecord {
        ContainerRecord {
            name: name.into(),
            id: format!("{name}-0001"),
            source_file: "/m/web.yaml".into(),
            spec_hash: "sha256:abc".into(),
            runtime_hash: Some("sha256:run".into()),
            spec_json: "{}".into(),
            image: "docker.io/library/busybox:1.36".into(),
            image_digest: Some("sha256:def".into()),
            state: ContainerState::Running,
            shim_pid: Some(10),
            shim_start_time: Some(12345),
            init_pid: Some(11),
            exit_code: None,
            restart_count: 2,
            message: None,
            created_at_ms: 1_000,
            started_at_ms: Some(2_000),
            finished_at_ms: None,
            reason: None,
            backoff_streak: 0,
            ever_ran: true,
            rollout: None,
            rejected_hash: None,
        }
    }

    #[test]
    fn records_survive_reopen_and_delete_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut changed = record("web");
        changed.state = ContainerState::Exited;
        changed.exit_code = Some(3);
        changed.reason = Some(Reason::OOMKilled);
        changed.backoff_streak = 4;
        changed.rejected_hash = Some("sha256:bad".into());
        changed.rollout = Some(Rollout {
            previous: Revision {
                spec_hash: "sha256:old".into(),
                runtime_hash: None,
                spec_json: r#"{"image":"busybox"}"#.into(),
                source_file: "/m/web.yaml".into(),
                image: "busybox".into(),
                image_digest: Some("sha256:1".into()),
            },
            started_at_ms: 99,
        });
        {
            let db = StateDb::open(dir.path()).unwrap();
            db.put_container(&record("web")).unwrap();
            db.put_container(&record("api")).unwrap();
            db.put_container(&changed).unwrap();
        }
        let db = StateDb::open(dir.path()).unwrap();
        let all = db.list_containers().unwrap();
        assert_eq!(
            all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["api", "web"]
        );
        assert_eq!(db.get_container("web").unwrap(), Some(changed));
        db.delete_container("web").unwrap();
        assert_eq!(db.get_container("web").unwrap(), None);
        let mode: String = db
            .with(|c| {
                Ok(c.pragma_query_value(None, "journal_mode", |r| r.get(0))
                    .unwrap())
            })
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn an_unknown_state_word_is_an_error_that_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        db.put_container(&record("web")).unwrap();
        db.with(|c| {
            c.execute("UPDATE containers SET state = 'paused'", [])
                .unwrap();
            Ok(())
        })
        .unwrap();
        let err = db.list_containers().unwrap_err().to_string();
        assert!(err.contains("unknown container state \"paused\""), "{err}");
    }
}
