//! The CLI's client for the agent's loopback API: plain HTTP/1.0 GETs, enough for a few
//! read-only calls without an HTTP client stack.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};

/// Sends `GET path` and returns the body as a stream, once the status is 200. `timeout`
/// bounds each read (None for a response that may stay open, such as `logs -f`).
pub fn open(
    addr: SocketAddr,
    path: &str,
    timeout: Option<Duration>,
) -> anyhow::Result<BufReader<TcpStream>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).with_context(|| {
        format!("connect to the berth agent at {addr} (hint: is `berth agent` running? see --addr)")
    })?;
    s.set_read_timeout(timeout)?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .with_context(|| format!("read response from {addr}"))?;
    let code = status
        .split_whitespace()
        .nth(1)
        .context("malformed HTTP response")?
        .to_string();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    if code != "200" {
        let mut body = String::new();
        let _ = reader.read_to_string(&mut body);
        bail!("GET {path}: HTTP {code}: {}", body.trim());
    }
    Ok(reader)
}

/// `GET path`, the whole body.
pub fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut body = String::new();
    open(addr, path, Some(Duration::from_secs(10)))?
        .read_to_string(&mut body)
        .with_context(|| format!("read response from {addr}"))?;
    Ok(body)
}
