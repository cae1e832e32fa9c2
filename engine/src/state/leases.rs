//! IPAM leases: which address of which network a container holds. A lease lives from the
//! container's first start until the container is removed, so an address is never handed to
//! another container while its holder exists, across restarts of the container and the agent.

use rusqlite::{params, Row};
use serde::Serialize;

use super::{Result, StateDb, StateError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRecord {
    pub network: String,
    pub address: String,
    pub container_id: String,
    pub container_name: String,
    /// The host end of the container's veth (bridge networks); empty for macvlan.
    pub host_interface: String,
    /// The interface inside the container, like `eth0`.
    pub interface: String,
    /// The container's published ports (JSON list of `berth_spec::Port`), on the lease of
    /// the network they are published through; `[]` on the others.
    pub ports_json: String,
    pub created_at: u64,
}

const COLUMNS: &str = "network, address, container_id, container_name, host_interface, interface, ports_json, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<LeaseRecord> {
    Ok(LeaseRecord {
        network: r.get(0)?,
        address: r.get(1)?,
        container_id: r.get(2)?,
        container_name: r.get(3)?,
        host_interface: r.get(4)?,
        interface: r.get(5)?,
        ports_json: r.get(6)?,
        created_at: r.get::<_, i64>(7)? as u64,
    })
}

impl StateDb {
    /// Records a new lease; fails if the address is taken on that network or the container
    /// already holds one there (the table's keys say so).
    pub fn insert_lease(&self, l: &LeaseRecord) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                &format!("INSERT INTO leases ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    l.network,
                    l.address,
                    l.container_id,
                    l.container_name,
                    l.host_interface,
                    l.interface,
                    l.ports_json,
                    l.created_at as i64
                ],
            )
            .map(|_| ())
            .map_err(|source| StateError::Query {
                op: "insert lease",
                source,
            })
        })
    }

    /// Updates what a held lease says about its holder (interfaces, published ports).
    pub fn update_lease(&self, l: &LeaseRecord) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "UPDATE leases SET container_name = ?3, host_interface = ?4, interface = ?5, ports_json = ?6
                 WHERE network = ?1 AND container_id = ?2",
                params![l.network, l.container_id, l.container_name, l.host_interface, l.interface, l.ports_json],
            )
            .map(|_| ())
            .map_err(|source| StateError::Query { op: "update lease", source })
        })
    }

    fn query_leases(
        &self,
        op: &'static str,
        filter: &str,
        arg: Option<&str>,
    ) -> Result<Vec<LeaseRecord>> {
        self.with(|conn| {
            let q = |source| StateError::Query { op, source };
            let sql = format!("SELECT {COLUMNS} FROM leases {filter} ORDER BY network, address");
            let mut stmt = conn.prepare(&sql).map_err(q)?;
            let rows = match arg {
                Some(a) => stmt.query_map([a], from_row),
                None => stmt.query_map([], from_row),
            }
            .map_err(q)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(q)
        })
    }

    pub fn list_leases(&self) -> Result<Vec<LeaseRecord>> {
        self.query_leases("list leases", "", None)
    }

    pub fn leases_of_network(&self, network: &str) -> Result<Vec<LeaseRecord>> {
        self.query_leases(
            "list leases of network",
            "WHERE network = ?1",
            Some(network),
        )
    }

    pub fn leases_of_container(&self, container_id: &str) -> Result<Vec<LeaseRecord>> {
        self.query_leases(
            "list leases of container",
            "WHERE container_id = ?1",
            Some(container_id),
        )
    }

    pub fn delete_lease(&self, network: &str, container_id: &str) -> Result<()> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM leases WHERE network = ?1 AND container_id = ?2",
                [network, container_id],
            )
            .map(|_| ())
            .map_err(|source| StateError::Query {
                op: "delete lease",
                source,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(network: &str, address: &str, id: &str) -> LeaseRecord {
        LeaseRecord {
            network: network.into(),
            address: address.into(),
            container_id: id.into(),
            container_name: id.split('-').next().unwrap().into(),
            host_interface: format!("bbv{id}"),
            interface: "eth0".into(),
            ports_json: "[]".into(),
            created_at: 3,
        }
    }

    #[test]
    fn an_address_is_held_once_and_leases_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = StateDb::open(dir.path()).unwrap();
            db.insert_lease(&lease("front", "10.89.0.2", "web-1"))
                .unwrap();
            db.insert_lease(&lease("back", "10.89.1.2", "web-1"))
                .unwrap();
            db.insert_lease(&lease("front", "10.89.0.3", "api-1"))
                .unwrap();
            let taken = db
                .insert_lease(&lease("front", "10.89.0.2", "db-1"))
                .unwrap_err();
            assert!(
                taken
                    .to_string()
                    .starts_with("state db insert lease: UNIQUE constraint failed"),
                "{taken}"
            );
            let twice = db
                .insert_lease(&lease("front", "10.89.0.9", "web-1"))
                .unwrap_err();
            assert!(
                twice.to_string().contains("UNIQUE constraint failed"),
                "{twice}"
            );
            let mut moved = lease("front", "10.89.0.2", "web-1");
            moved.ports_json = r#"[{"containerPort":80}]"#.into();
            db.update_lease(&moved).unwrap();
        }
        let db = StateDb::open(dir.path()).unwrap();
        let web: Vec<_> = db
            .leases_of_container("web-1")
            .unwrap()
            .into_iter()
            .map(|l| (l.network, l.address))
            .collect();
        assert_eq!(
            web,
            [
                ("back".to_string(), "10.89.1.2".to_string()),
                ("front".into(), "10.89.0.2".into())
            ]
        );
        let front = db.leases_of_network("front").unwrap();
        assert_eq!(
            front
                .iter()
                .map(|l| l.container_id.as_str())
                .collect::<Vec<_>>(),
            ["web-1", "api-1"]
        );
        assert_eq!(front[0].ports_json, r#"[{"containerPort":80}]"#);
        db.delete_lease("front", "web-1").unwrap();
        assert_eq!(db.list_leases().unwrap().len(), 2);
        assert!(db
            .leases_of_network("front")
            .unwrap()
            .iter()
            .all(|l| l.container_id == "api-1"));
    }
}
