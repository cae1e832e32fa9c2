//! `berth source`: where the running agent's manifests come from (`GET /v1/source`).

use anyhow::Context;
use serde_json::Value;

use super::client::Client;
use super::units::age;

pub fn run(client: &Client, json: bool) -> anyhow::Result<()> {
    let body = client.get("/v1/source")?;
    if json {
        println!("{body}");
        return Ok(());
    }
    let status: Value = serde_json::from_str(&body).context("parse the source status")?;
    print!("{}", text(&status, super::units::now_secs()));
    Ok(())
}

/// The lines `berth source` prints, for the time `now` (Unix seconds).
pub fn text(s: &Value, now: u64) -> String {
    let when = |key: &str| match s[key].as_u64() {
        Some(t) => age(now.saturating_sub(t)),
        None => "never".to_string(),
    };
    let mut out = String::new();
    if s["kind"] == "directory" {
        out += &format!("directory  {}\n", s["path"].as_str().unwrap_or("-"));
        return out;
    }
    out += &format!("git        {}\n", s["url"].as_str().unwrap_or("-"));
    out += &format!("ref        {}\n", s["ref"].as_str().unwrap_or("-"));
    let paths: Vec<&str> = s["paths"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let paths: Vec<&str> = paths
        .iter()
        .map(|p| if p.is_empty() { "." } else { p })
        .collect();
    out += &format!("paths      {}\n", paths.join(", "));
    out += &format!(
        "revision   {}\n",
        s["revision"].as_str().unwrap_or("none yet")
    );
    if let Some(signer) = s["signer"].as_str() {
        out += &format!("signed by  {signer}\n");
    }
    out += &format!("synced     {}\n", when("syncedAt"));
    out += &format!("attempted  {}\n", when("attemptedAt"));
    if let Some(e) = s["error"].as_str() {
        out += &format!("error      {e}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_the_revision_the_last_sync_and_the_error() {
        let status = serde_json::json!({
            "kind": "git", "url": "https://git.example.org/fleet.git", "ref": "main",
            "paths": ["common", "hosts/edge-1", ""], "revision": "0123456789abcdef0123456789abcdef01234567",
            "signer": "alice@example.org (SHA256:abc)", "syncedAt": 940, "attemptedAt": 990,
            "error": "connect to https://git.example.org/fleet.git: refused"
        });
        assert_eq!(
            text(&status, 1000),
            "git        https://git.example.org/fleet.git\nref        main\npaths      common, hosts/edge-1, .\nrevision   0123456789abcdef0123456789abcdef01234567\nsigned by  alice@example.org (SHA256:abc)\nsynced     1 minute ago\nattempted  10 seconds ago\nerror      connect to https://git.example.org/fleet.git: refused\n"
        );
        let dir = serde_json::json!({"kind": "directory", "path": "/etc/berth/manifests.d"});
        assert_eq!(text(&dir, 0), "directory  /etc/berth/manifests.d\n");
        let fresh = serde_json::json!({"kind": "git", "url": "u", "ref": "main", "paths": [""]});
        assert!(text(&fresh, 0).contains("revision   none yet\n"));
        assert!(text(&fresh, 0).contains("synced     never\n"));
    }
}
