//! `berth logs [-f] [--tail N] [-t] NAME`: a container's output, from the running agent.

use std::io::{BufRead, Write};

use super::client::Client;

pub struct LogsArgs {
    pub name: String,
    pub follow: bool,
    pub tail: Option<usize>,
    pub timestamps: bool,
}

pub fn run(client: &Client, args: &LogsArgs) -> anyhow::Result<()> {
    let mut path = format!("/v1/containers/{}/logs?", args.name);
    if let Some(n) = args.tail {
        path.push_str(&format!("tail={n}&"));
    }
    if args.follow {
        path.push_str("follow=1");
    }
    let reader = client.open(&path, None)?;
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    for line in reader.lines() {
        let line = line?;
        let Ok(rec) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let text = rec["log"].as_str().unwrap_or("");
        let prefix = if args.timestamps {
            format!("{} ", rec["time"].as_str().unwrap_or(""))
        } else {
            String::new()
        };
        if rec["stream"] == "stderr" {
            let mut e = stderr.lock();
            write!(e, "{prefix}{text}")?;
            e.flush()?;
        } else {
            let mut o = stdout.lock();
            write!(o, "{prefix}{text}")?;
            o.flush()?;
        }
    }
    Ok(())
}
