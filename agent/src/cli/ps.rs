//! `berth ps`: the running agent's containers, as a table, from `GET /v1/containers`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};

/// A plain HTTP/1.0 GET to the agent's loopback API; enough for a CLI and no client stack.
pub fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).with_context(|| {
        format!(
            "connect to the berth agent at {addr} (hint: is `berth agent` running? see --listen)"
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .with_context(|| format!("read response from {addr}"))?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("GET {path}: HTTP {status}: {body}");
    }
    Ok(body.to_string())
}

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
