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
