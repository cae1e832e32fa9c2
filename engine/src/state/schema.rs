//! Schema migrations, keyed by `PRAGMA user_version`.

use rusqlite::Connection;

use super::{Result, StateError};

const MIGRATIONS: &[&str] = &[
    // 1: containers berth created.
    "CREATE TABLE containers (
        name            TEXT PRIMARY KEY,
        id              TEXT NOT NULL UNIQUE,
        source_file     TEXT NOT NULL,
        spec_hash       TEXT NOT NULL,
        spec_json       TEXT NOT NULL,
        image           TEXT NOT NULL,
        image_digest    TEXT,
        state           TEXT NOT NULL,
        shim_pid        INTEGER,
        shim_start_time INTEGER,
        init_pid        INTEGER,
        exit_code       INTEGER,
        restart_count   INTEGER NOT NULL DEFAULT 0,
        message         TEXT,
        created_at      INTEGER NOT NULL,
        started_at      INTEGER,
        finished_at     INTEGER
    );",
    // 2: why a container ended (OOMKilled, Error, Completed), and the last good version of
    // every object, so a file that stops loading keeps its objects across agent restarts.
    "ALTER TABLE containers ADD COLUMN reason TEXT;
     CREATE TABLE last_good (
        kind        TEXT NOT NULL,
        name        TEXT NOT NULL,
        source_file TEXT NOT NULL,
        spec_hash   TEXT NOT NULL,
        object_json TEXT NOT NULL,
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (kind, name)
    );",
    // 3: networks berth created (bridge or macvlan, with the host interface it owns) and the
    // addresses it handed out. A lease is held until its container is removed.
    "CREATE TABLE networks (
        name        TEXT PRIMARY KEY,
        spec_hash   TEXT NOT NULL,
        driver      TEXT NOT NULL,
        interface   TEXT NOT NULL,
        subnet      TEXT NOT NULL,
        gateway     TEXT NOT NULL,
        internal    INTEGER NOT NULL,
        macvlan_mode TEXT NOT NULL,
        source_file TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE leases (
        network         TEXT NOT NULL,
        address         TEXT NOT NULL,
        container_id    TEXT NOT NULL,
        container_name  TEXT NOT NULL,
        host_interface  TEXT NOT NULL,
        interface       TEXT NOT NULL,
        ports_json      TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        PRIMARY KEY (network, address)
    );
    CREATE UNIQUE INDEX leases_owner ON leases (network, container_id);",
    // 4: times in milliseconds (back-off is timed to the millisecond); the restart back-off
    // streak; whether a container ever ran; an update in progress (its previous revision) and
    // a rolled-back revision; the runtime hash (a change outside it is applied without
    // recreating the container); volumes as objects.
    "ALTER TABLE containers RENAME COLUMN created_at TO created_at_ms;
     ALTER TABLE containers RENAME COLUMN started_at TO started_at_ms;
     ALTER TABLE containers RENAME COLUMN finished_at TO finished_at_ms;
     UPDATE containers SET created_at_ms = created_at_ms * 1000,
        started_at_ms = started_at_ms * 1000, finished_at_ms = finished_at_ms * 1000;
     ALTER TABLE containers ADD COLUMN backoff_streak INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE containers ADD COLUMN ever_ran INTEGER NOT NULL DEFAULT 0;
     UPDATE containers SET ever_ran = 1 WHERE started_at_ms IS NOT NULL;
     ALTER TABLE containers ADD COLUMN rollout_json TEXT;
     ALTER TABLE containers ADD COLUMN rejected_hash TEXT;
     ALTER TABLE containers ADD COLUMN runtime_hash TEXT;
     ALTER TABLE last_good ADD COLUMN runtime_hash TEXT;
     CREATE TABLE volumes (
        name           TEXT PRIMARY KEY,
        spec_hash      TEXT NOT NULL,
        reclaim_policy TEXT NOT NULL,
        source_file    TEXT NOT NULL,
        retained       INTEGER NOT NULL,
        created_at_ms  INTEGER NOT NULL
    );",
    // 5: the manifest source's last sync (git): when it last succeeded, what failed since.
    "CREATE TABLE source_sync (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        url            TEXT NOT NULL,
        synced_at_ms   INTEGER,
        attempted_at_ms INTEGER NOT NULL,
        error          TEXT,
        signer         TEXT
    );",
    // 6: what the agent did, the last 10,000 events (GET /v1/events).
    "CREATE TABLE events (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms    INTEGER NOT NULL,
        object   TEXT NOT NULL,
        action   TEXT NOT NULL,
        result   TEXT NOT NULL,
        message  TEXT
    );
    CREATE INDEX events_at ON events (at_ms);",
];

pub fn migrate(conn: &Connection) -> Result<()> {
    let q = |source| StateError::Query {
        op: "migrate",
        source,
    };
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(q)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StateError::TooNew {
            found: version,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.unchecked_transaction().map_err(q)?;
        tx.execute_batch(sql).map_err(q)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(q)?;
        tx.commit().map_err(q)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_3_records_move_to_milliseconds_and_keep_their_history() {
        let conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            "INSERT INTO containers (name, id, source_file, spec_hash, spec_json, image, state,
                restart_count, created_at, started_at, finished_at)
             VALUES ('web', 'web-1', '/m/w.yaml', 'h', '{}', 'busybox', 'exited', 4, 10, 11, 12),
                    ('new', 'new-1', '/m/n.yaml', 'h', '{}', 'busybox', 'failed', 0, 20, NULL, 21);",
        )
        .unwrap();
        migrate(&conn).unwrap();
        type Row = (String, i64, Option<i64>, Option<i64>, i64, i64);
        let rows: Vec<Row> = conn
            .prepare("SELECT name, created_at_ms, started_at_ms, finished_at_ms, ever_ran, backoff_streak FROM containers ORDER BY name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                ("new".to_string(), 20_000, None, Some(21_000), 0, 0),
                ("web".to_string(), 10_000, Some(11_000), Some(12_000), 1, 0),
            ]
        );
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }
}
