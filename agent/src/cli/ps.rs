//! `berth ps`: the running agent's containers, as a table, from `GET /v1/containers`.

use anyhow::Context;
use serde_json::Value;

use super::client::Client;

pub fn run(client: &Client, json: bool) -> anyhow::Result<()> {
    let body = client.get("/v1/containers")?;
    if json {
        println!("{body}");
        return Ok(());
    }
    let list: Vec<Value> = serde_json::from_str(&body).context("parse container list")?;
    print!("{}", table(&list));
    Ok(())
}

/// The table `berth ps` prints, one line per container.
pub fn table(list: &[Value]) -> String {
    let line = |cols: [&str; 8]| {
        format!(
            "{:<20} {:<20} {:>8} {:>5} {:>8}  {:<36} {:<24} {}\n",
            cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7]
        )
        .trim_end()
        .to_string()
            + "\n"
    };
    let mut out = line([
        "NAME", "STATE", "PID", "EXIT", "RESTARTS", "IMAGE", "PORTS", "MESSAGE",
    ]);
    for c in list {
        let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
        let n = |k: &str| {
            c[k].as_i64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        };
        let mut state = s("state");
        // As `docker ps` shows it: `running (healthy)`.
        if let Some(h) = c["health"]["status"].as_str() {
            state = format!("{state} ({h})");
        }
        if let Some(p) = c["pull"].as_object() {
            let done = p["doneBytes"].as_u64().unwrap_or(0);
            let total = p["totalBytes"].as_u64().unwrap_or(0).max(1);
            state = format!("{state} {}%", done * 100 / total);
        }
        let ports: Vec<&str> = c["ports"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str(&line([
            &s("name"),
            &state,
            &n("pid"),
            &n("exitCode"),
            &n("restartCount"),
            &s("image"),
            &ports.join(", "),
            &message(c),
        ]));
    }
    out
}

/// The message column: what it waits for (and until when), else its last message.
fn message(c: &Value) -> String {
    match (c["waitingFor"].as_str(), c["message"].as_str()) {
        (Some(w), Some(m)) => format!("waiting for {w}; {m}"),
        (Some(w), None) => format!("waiting for {w}"),
        (None, Some(m)) => m.to_string(),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_line_per_container_with_ports_and_pull_progress() {
        let list = [
            json!({"name": "web", "state": "running", "pid": 4242, "exitCode": null,
                   "restartCount": 0, "image": "docker.io/library/nginx:1.27",
                   "ports": ["0.0.0.0:8080->80/tcp", "127.0.0.1:5353->53/udp"], "message": null}),
            json!({"name": "db", "state": "pulling", "pull": {"doneBytes": 45, "totalBytes": 100},
                   "image": "docker.io/library/postgres:16", "restartCount": 0, "ports": []}),
            json!({"name": "job", "state": "exited", "exitCode": 1, "restartCount": 2,
                   "image": "busybox", "ports": [], "message": "exec /bin/nope: no such file or directory"}),
            json!({"name": "api", "state": "running", "pid": 7, "restartCount": 0, "image": "busybox",
                   "ports": [], "health": {"status": "healthy"}}),
            json!({"name": "app", "state": "waiting", "restartCount": 0, "image": "",
                   "ports": [], "waitingFor": "db to be healthy"}),
            json!({"name": "crash", "state": "exited", "exitCode": 1, "restartCount": 4, "image": "busybox",
                   "ports": [], "waitingFor": "restart back-off (16s)"}),
        ];
        assert_eq!(
            table(&list),
            "\
NAME                 STATE                     PID  EXIT RESTARTS  IMAGE                                PORTS                    MESSAGE
web                  running                  4242     -        0  docker.io/library/nginx:1.27         0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp
db                   pulling 45%                 -     -        0  docker.io/library/postgres:16
job                  exited                      -     1        2  busybox                                                       exec /bin/nope: no such file or directory
api                  running (healthy)           7     -        0  busybox
app                  waiting                     -     -        0                                                                waiting for db to be healthy
crash                exited                      -     1        4  busybox                                                       waiting for restart back-off (16s)
"
        );
    }
}
