//! `berth status`: the running agent at a glance (`GET /v1/status`).

use anyhow::Context;
use serde_json::Value;

use super::client::Client;
use super::units::age;

pub fn run(client: &Client, json: bool) -> anyhow::Result<()> {
    let body = client.get("/v1/status")?;
    if json {
        println!("{body}");
        return Ok(());
    }
    let status: Value = serde_json::from_str(&body).context("parse the agent's status")?;
    print!("{}", text(&status, super::units::now_secs()));
    Ok(())
}

/// The lines `berth status` prints, for the time `now` (Unix seconds).
pub fn text(s: &Value, now: u64) -> String {
    let mut out = format!("berth       {}\n", s["version"].as_str().unwrap_or("?"));
    let src = &s["source"];
    out += &match src["kind"].as_str() {
        Some("git") => format!(
            "source      git {} at {}, revision {}{}\n",
            src["url"].as_str().unwrap_or("-"),
            src["ref"].as_str().unwrap_or("-"),
            src["revision"]
                .as_str()
                .map_or("none yet", |r| &r[..r.len().min(12)]),
            src["error"]
                .as_str()
                .map(|e| format!(" (last sync failed: {e})"))
                .unwrap_or_default()
        ),
        _ => format!(
            "source      directory {}\n",
            src["path"].as_str().unwrap_or("-")
        ),
    };
    out += &match s["lastPass"].as_object() {
        Some(p) => format!(
            "last pass   {}, {} in {} ms\n",
            age(now.saturating_sub(p["at"].as_u64().unwrap_or(0))),
            p["result"].as_str().unwrap_or("?"),
            p["durationMs"].as_u64().unwrap_or(0)
        ),
        None => "last pass   none yet\n".to_string(),
    };
    let counts: Vec<String> = s["containers"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, n)| n.as_u64() != Some(0))
                .map(|(state, n)| format!("{n} {state}"))
                .collect()
        })
        .unwrap_or_default();
    out += &format!(
        "containers  {}\n",
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        }
    );
    let problems = s["manifestProblems"].as_u64().unwrap_or(0);
    if problems > 0 {
        out += &format!("manifests   {problems} problem(s): see berth plan or GET /v1/manifests\n");
    }
    if s["pruneBlocked"] == true {
        out += "prune       blocked: the manifests hold no object and allowEmpty is off\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_source_last_pass_counts_and_warnings() {
        let s = serde_json::json!({
            "version": "0.1.0",
            "source": {"kind": "git", "url": "https://g/f.git", "ref": "main",
                       "revision": "0123456789abcdef0123", "error": "connect: refused"},
            "ready": true,
            "lastPass": {"at": 990, "result": "ok", "durationMs": 12},
            "containers": {"created": 0, "exited": 1, "failed": 0, "pulling": 0, "running": 3},
            "manifestProblems": 2,
            "pruneBlocked": true
        });
        assert_eq!(
            text(&s, 1000),
            "berth       0.1.0\nsource      git https://g/f.git at main, revision 0123456789ab (last sync failed: connect: refused)\nlast pass   10 seconds ago, ok in 12 ms\ncontainers  1 exited, 3 running\nmanifests   2 problem(s): see berth plan or GET /v1/manifests\nprune       blocked: the manifests hold no object and allowEmpty is off\n"
        );
        let fresh = serde_json::json!({"version": "0.1.0", "source": {"kind": "directory", "path": "/m"},
            "lastPass": null, "containers": {"running": 0}, "manifestProblems": 0, "pruneBlocked": false});
        assert_eq!(
            text(&fresh, 0),
            "berth       0.1.0\nsource      directory /m\nlast pass   none yet\ncontainers  none\n"
        );
    }
}
