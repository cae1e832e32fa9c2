//! Network records: every network berth created, with the host interface it owns (a bridge
//! it made, or the parent a macvlan network hangs off, which berth never deletes).

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{Result, StateDb, StateError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRecord {
    pub name: String,
    pub spec_hash: String,
    /// bridge | macvlan
    pub driver: String,
    /// The bridge berth created (bridge), or the parent interface (macvlan).
    pub interface: String,
    /// CIDR, like `10.89.0.0/24`.
    pub subnet: String,
    pub gateway: String,
    pub internal: bool,
    /// bridge | private | vepa | passthru (macvlan only; empty for bridge networks).
    pub macvlan_mode: String,
    /// The manifest file the network came from; empty for the built-in network.
    pub source_file: String,
    pub created_at: u64,
}

const COLUMNS: &str =
    "name, spec_hash, driver, interface, subnet, gateway, internal, macvlan_mode, source_file, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<NetworkRecord> {
    Ok(NetworkRecord {
        name: r.get(0)?,
        spec_hash: r.get(1)?,
        driver: r.get(2)?,
        interface: r.get(3)?,
        subnet: r.get(4)?,
        gateway: r.get(5)?,
        internal: r.get::<_, i64>(6)? != 0,
        macvlan_mode: r.get(7)?,
        source_file: r.get(8)?,
        created_at: r.get::<_, i64>(9)? as u64,
    })
}

impl StateDb {
    pub fn put_network(&self, n: &NetworkRecord) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                &format!("INSERT OR REPLACE INTO networks ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    n.name,
                    n.spec_hash,
                    n.driver,
                    n.interface,
                    n.subnet,
                    n.gateway,
                    n.internal as i64,
                    n.macvlan_mode,
                    n.source_file,
                    n.created_at as i64
                ],
            )
            .map(|_| ())
            .map_err(|source| StateError::Query { op: "put network", source })
        })
    }

    pub fn get_network(&self, name: &str) -> Result<Option<NetworkRecord>> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM networks WHERE name = ?1"),
                [name],
                from_row,
            )
            .optional()
            .map_err(|source| StateError::Query {
                op: "get network",
                source,
            })
        })
    }

    pub fn list_networks(&self) -> Result<Vec<NetworkRecord>> {
        self.with(|conn| {
            let q = |source| StateError::Query {
                op: "list networks",
                source,
            };
            let mut stmt = conn
                .prepare(&format!("SELECT {COLUMNS} FROM networks ORDER BY name"))
                .map_err(q)?;
            let rows = stmt.query_map([], from_row).map_err(q)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(q)
        })
    }

    pub fn delete_network(&self, name: &str) -> Result<()> {
        self.with(|conn| {
            conn.execute("DELETE FROM networks WHERE name = ?1", [name])
                .map(|_| ())
                .map_err(|source| StateError::Query {
                    op: "delete network",
                    source,
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, subnet: &str) -> NetworkRecord {
        NetworkRecord {
            name: name.into(),
            spec_hash: "sha256:n".into(),
            driver: "bridge".into(),
            interface: format!("bb{name}"),
            subnet: subnet.into(),
            gateway: "10.89.0.1".into(),
            internal: true,
            macvlan_mode: String::new(),
            source_file: "/m/net.yaml".into(),
            created_at: 7,
        }
    }

    #[test]
    fn networks_survive_reopen_and_delete_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = StateDb::open(dir.path()).unwrap();
            db.put_network(&record("front", "10.89.0.0/24")).unwrap();
            db.put_network(&record("back", "10.89.1.0/24")).unwrap();
            let mut changed = record("front", "10.89.2.0/24");
            changed.internal = false;
            db.put_network(&changed).unwrap();
        }
        let db = StateDb::open(dir.path()).unwrap();
        let all = db.list_networks().unwrap();
        assert_eq!(
            all.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["back", "front"]
        );
        let front = db.get_network("front").unwrap().unwrap();
        assert_eq!(
            (front.subnet.as_str(), front.internal),
            ("10.89.2.0/24", false)
        );
        assert!(db.get_network("back").unwrap().unwrap().internal);
        db.delete_network("front").unwrap();
        assert_eq!(db.get_network("front").unwrap(), None);
    }
}
