//! Container records: which containers berth created and what it last knew of them.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{Result, StateDb, StateError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    pub name: String,
    /// Unique per creation: a recreated container gets a new id (and new dirs and cgroup).
    pub id: String,
    /// The manifest file the object came from.
    pub source_file: String,
    pub spec_hash: String,
    pub spec_json: String,
    pub image: String,
    pub image_digest: Option<String>,
    /// pulling | created | running | exited | failed
    pub state: String,
    pub shim_pid: Option<i32>,
    pub shim_start_time: Option<u64>,
    pub init_pid: Option<i32>,
    pub exit_code: Option<i32>,
    pub restart_count: u32,
    pub message: Option<String>,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// Why it ended: `OOMKilled`, `Error` (non-zero exit), `Completed` (exit 0).
    pub reason: Option<String>,
}

const COLUMNS: &str = "name, id, source_file, spec_hash, spec_json, image, image_digest, state, \
    shim_pid, shim_start_time, init_pid, exit_code, restart_count, message, created_at, started_at, finished_at, reason";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ContainerRecord> {
    Ok(ContainerRecord {
        name: r.get(0)?,
        id: r.get(1)?,
        source_file: r.get(2)?,
        spec_hash: r.get(3)?,
        spec_json: r.get(4)?,
        image: r.get(5)?,
        image_digest: r.get(6)?,
        state: r.get(7)?,
        shim_pid: r.get(8)?,
        shim_start_time: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        init_pid: r.get(10)?,
        exit_code: r.get(11)?,
        restart_count: r.get(12)?,
        message: r.get(13)?,
        created_at: r.get::<_, i64>(14)? as u64,
        started_at: r.get::<_, Option<i64>>(15)?.map(|v| v as u64),
        finished_at: r.get::<_, Option<i64>>(16)?.map(|v| v as u64),
        reason: r.get(17)?,
    })
}

impl StateDb {
    pub fn put_container(&self, c: &ContainerRecord) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                &format!("INSERT OR REPLACE INTO containers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"),
                params![
                    c.name,
                    c.id,
                    c.source_file,
                    c.spec_hash,
                    c.spec_json,
                    c.image,
                    c.image_digest,
                    c.state,
                    c.shim_pid,
                    c.shim_start_time.map(|v| v as i64),
                    c.init_pid,
                    c.exit_code,
                    c.restart_count,
                    c.message,
                    c.created_at as i64,
                    c.started_at.map(|v| v as i64),
                    c.finished_at.map(|v| v as i64),
                    c.reason,
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
mod tests {
    use super::*;

    fn record(name: &str) -> ContainerRecord {
        ContainerRecord {
            name: name.into(),
            id: format!("{name}-0001"),
            source_file: "/m/web.yaml".into(),
            spec_hash: "sha256:abc".into(),
            spec_json: "{}".into(),
            image: "docker.io/library/busybox:1.36".into(),
            image_digest: Some("sha256:def".into()),
            state: "running".into(),
            shim_pid: Some(10),
            shim_start_time: Some(12345),
            init_pid: Some(11),
            exit_code: None,
            restart_count: 2,
            message: None,
            created_at: 1,
            started_at: Some(2),
            finished_at: None,
            reason: None,
        }
    }

    #[test]
    fn records_survive_reopen_and_delete_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = StateDb::open(dir.path()).unwrap();
            db.put_container(&record("web")).unwrap();
            db.put_container(&record("api")).unwrap();
            let mut changed = record("web");
            changed.state = "exited".into();
            changed.exit_code = Some(3);
            db.put_container(&changed).unwrap();
        }
        let db = StateDb::open(dir.path()).unwrap();
        let all = db.list_containers().unwrap();
        assert_eq!(
            all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["api", "web"]
        );
        let web = db.get_container("web").unwrap().unwrap();
        assert_eq!(web.state, "exited");
        assert_eq!(web.exit_code, Some(3));
        assert_eq!(web.shim_start_time, Some(12345));
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
}
