//! `berth stats`: CPU, memory, pids and network traffic of the running containers, from
//! `GET /v1/stats`, read twice a second apart so CPU is a percentage, as `docker stats
//! --no-stream` shows it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use super::client::Client;
use super::units::human_bytes;

pub fn run(client: &Client, names: &[String], json: bool) -> anyhow::Result<()> {
    let sample = || -> anyhow::Result<(Vec<Value>, Instant)> {
        let body = client.get("/v1/stats")?;
        let all: Vec<Value> = serde_json::from_str(&body).context("parse GET /v1/stats")?;
        let picked = all
            .into_iter()
            .filter(|u| names.is_empty() || names.iter().any(|n| u["name"] == n.as_str()))
            .collect();
        Ok((picked, Instant::now()))
    };
    let (before, t0) = sample()?;
    if let Some(missing) = names
        .iter()
        .find(|n| !before.iter().any(|u| u["name"] == n.as_str()))
    {
        bail!("no running container named {missing:?} (hint: `berth ps` lists them all)");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&before)?);
        return Ok(());
    }
    std::thread::sleep(Duration::from_secs(1));
    let (after, t1) = sample()?;
    print!("{}", table(&before, &after, t1 - t0));
    Ok(())
}

/// The table: one line per container of `after`, CPU as the share of one core used between
/// the samples (100% = one core busy, as Docker counts).
pub fn table(before: &[Value], after: &[Value], elapsed: Duration) -> String {
    let mut out = format!(
        "{:<20} {:>8} {:>10} {:>6} {:>21}\n",
        "NAME", "CPU %", "MEM", "PIDS", "NET I/O (rx / tx)"
    );
    for u in after {
        let cpu = before
            .iter()
            .find(|b| b["id"] == u["id"])
            .and_then(|b| {
                let used = u["cpuUsageUsec"]
                    .as_u64()?
                    .checked_sub(b["cpuUsageUsec"].as_u64()?)?;
                Some(format!(
                    "{:.1}%",
                    used as f64 / elapsed.as_micros().max(1) as f64 * 100.0
                ))
            })
            .unwrap_or_else(|| "-".into());
        let bytes = |key: &str| u[key].as_u64().map(human_bytes).unwrap_or("-".into());
        let net = match u["network"].as_array() {
            Some(ifaces) => {
                let sum = |k: &str| ifaces.iter().filter_map(|i| i[k].as_u64()).sum::<u64>();
                format!(
                    "{} / {}",
                    human_bytes(sum("rxBytes")),
                    human_bytes(sum("txBytes"))
                )
            }
            None => "host".into(),
        };
        let pids = u["pids"]
            .as_u64()
            .map(|p| p.to_string())
            .unwrap_or("-".into());
        out.push_str(&format!(
            "{:<20} {:>8} {:>10} {:>6} {:>21}\n",
            u["name"].as_str().unwrap_or(""),
            cpu,
            bytes("memoryWorkingSetBytes"),
            pids,
            net
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cpu_is_the_share_of_a_core_between_samples() {
        let before = [json!({"name": "web", "id": "web-1", "cpuUsageUsec": 1_000_000})];
        let after = [
            json!({
                "name": "web", "id": "web-1", "cpuUsageUsec": 1_250_000,
                "memoryWorkingSetBytes": 7_340_032, "pids": 3,
                "network": [
                    {"interface": "eth0", "rxBytes": 1500, "txBytes": 600},
                    {"interface": "eth1", "rxBytes": 500, "txBytes": 400},
                ],
            }),
            // Started between the samples, host network, no pids controller.
            json!({"name": "db", "id": "db-1", "cpuUsageUsec": 5, "network": null}),
        ];
        assert_eq!(
            table(&before, &after, Duration::from_millis(500)),
            "\
NAME                    CPU %        MEM   PIDS     NET I/O (rx / tx)
web                     50.0%     7.3 MB      3       2.0 kB / 1.0 kB
db                          -          -      -                  host
"
        );
    }
}
