//! `berth ls networks|volumes`: the running agent's networks or volumes, as a table.

use anyhow::{bail, Context};
use serde_json::Value;

use super::client::Client;

pub fn run(client: &Client, what: &str, json: bool) -> anyhow::Result<()> {
    let path = match what {
        "networks" | "network" => "/v1/networks",
        "volumes" | "volume" => "/v1/volumes",
        other => bail!("berth ls {other:?}: networks or volumes (hint: berth ps lists containers)"),
    };
    let body = client.get(path)?;
    if json {
        println!("{body}");
        return Ok(());
    }
    let list: Vec<Value> = serde_json::from_str(&body).context("parse the list")?;
    print!(
        "{}",
        if path == "/v1/networks" {
            networks(&list)
        } else {
            volumes(&list)
        }
    );
    Ok(())
}

fn row(cols: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (c, w) in cols.iter().zip(widths) {
        line.push_str(&format!("{c:<w$}  "));
    }
    line.trim_end().to_string() + "\n"
}

pub fn networks(list: &[Value]) -> String {
    let widths = [16, 8, 16, 18, 10];
    let mut out = row(
        &["NAME", "DRIVER", "INTERFACE", "SUBNET", "CONTAINERS"].map(String::from),
        &widths,
    );
    for n in list {
        let s = |k: &str| n[k].as_str().unwrap_or("-").to_string();
        let attached = n["containers"].as_array().map_or(0, Vec::len);
        out += &row(
            &[
                s("name"),
                s("driver"),
                s("interface"),
                s("subnet"),
                attached.to_string(),
            ],
            &widths,
        );
    }
    out
}

pub fn volumes(list: &[Value]) -> String {
    let widths = [16, 8, 9, 20, 40];
    let mut out = row(
        &["NAME", "RECLAIM", "RETAINED", "USED BY", "PATH"].map(String::from),
        &widths,
    );
    for v in list {
        let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
        let used: Vec<&str> = v["usedBy"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out += &row(
            &[
                s("name"),
                s("reclaimPolicy"),
                (if v["retained"] == true { "yes" } else { "no" }).to_string(),
                if used.is_empty() {
                    "-".to_string()
                } else {
                    used.join(",")
                },
                s("path"),
            ],
            &widths,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_of_networks_and_volumes() {
        let n = json!([{"name": "front", "driver": "bridge", "interface": "berth-front", "subnet": "10.89.0.0/24",
                        "containers": [{"container": "web"}, {"container": "api"}]}]);
        assert_eq!(
            networks(n.as_array().unwrap()),
            "NAME              DRIVER    INTERFACE         SUBNET              CONTAINERS\nfront             bridge    berth-front       10.89.0.0/24        2\n"
        );
        let v = json!([{"name": "data", "reclaimPolicy": "Retain", "retained": false, "usedBy": ["db"], "path": "/var/lib/berth/volumes/data/_data"}]);
        assert_eq!(
            volumes(v.as_array().unwrap()),
            "NAME              RECLAIM   RETAINED   USED BY               PATH\ndata              Retain    no         db                    /var/lib/berth/volumes/data/_data\n"
        );
    }
}
