//! `berth ps`: the running agent's containers, as a table, from `GET /v1/containers`.

use std::net::SocketAddr;

use anyhow::Context;

use super::client::get;

pub fn run(addr: SocketAddr, json: bool) -> anyhow::Result<()> {
    let body = get(addr, "/v1/containers")?;
    if json {
        println!("{body}");
        return Ok(());
    }
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&body).context("parse container list")?;
    println!(
        "{:<20} {:<9} {:>8} {:>5} {:>8}  {:<36} MESSAGE",
        "NAME", "STATE", "PID", "EXIT", "RESTARTS", "IMAGE"
    );
    for c in list {
        let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
        let n = |k: &str| {
            c[k].as_i64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        };
        let mut state = s("state");
        if let Some(p) = c["pull"].as_object() {
            let done = p["doneBytes"].as_u64().unwrap_or(0);
            let total = p["totalBytes"].as_u64().unwrap_or(0).max(1);
            state = format!("{state} {}%", done * 100 / total);
        }
        println!(
            "{:<20} {:<9} {:>8} {:>5} {:>8}  {:<36} {}",
            s("name"),
            state,
            n("pid"),
            n("exitCode"),
            n("restartCount"),
            s("image"),
            s("message")
        );
    }
    Ok(())
}
