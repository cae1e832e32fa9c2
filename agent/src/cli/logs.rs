//! `berth logs [-f] [--tail N] [-t] NAME`: a container's output, from the running agent.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};

pub struct LogsArgs {
    pub name: String,
    pub follow: bool,
    pub tail: Option<usize>,
    pub timestamps: bool,
}

pub fn run(addr: SocketAddr, args: &LogsArgs) -> anyhow::Result<()> {
    let mut path = format!("/v1/containers/{}/logs?", args.name);
    if let Some(n) = args.tail {
        path.push_str(&format!("tail={n}&"));
    }
    if args.follow {
        path.push_str("follow=1");
    }
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).with_context(|| {
        format!("connect to the berth agent at {addr} (hint: is `berth agent` running? see --addr)")
    })?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let code = status.split_whitespace().nth(1).unwrap_or("").to_string();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    if code != "200" {
        let mut body = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut body);
        bail!("logs of {}: HTTP {code}: {}", args.name, body.trim());
    }
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
