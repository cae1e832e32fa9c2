//! The HTTP probe's few lines of HTTP/1.0: one `GET` written by hand, the status line read
//! back. No client library: the probe needs a status code, nothing more.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use super::net::{connect, loopback};
use super::{HealthError, ProbeResult, Result};
use crate::runtime::init::io_text;

/// The most of a response read; the status line and the start of the body are all a probe
/// reports.
const MAX_RESPONSE_BYTES: usize = 4096;

/// How much of the body goes into the output after the status line.
const BODY_PREFIX_BYTES: usize = 256;

/// The request for `path` on the loopback `port`, or why the path cannot be sent as is.
pub(super) fn request(path: &str, port: u16) -> Result<String> {
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HealthError::InvalidPath {
            path: path.to_string(),
        });
    }
    Ok(format!(
        "GET {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: berth-health\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        loopback(port)
    ))
}

/// Sends `request` to `127.0.0.1:port` and judges the answer, all within `timeout`.
pub(super) fn get(port: u16, request: &str, timeout: Duration) -> ProbeResult {
    let deadline = Instant::now() + timeout;
    let addr = loopback(port);
    let mut stream = match connect(port, timeout) {
        Ok(s) => s,
        Err(unhealthy) => return unhealthy,
    };
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    };
    let Some(left) = remaining() else {
        return ProbeResult::timed_out(timeout);
    };
    if let Err(e) = stream
        .set_write_timeout(Some(left))
        .and_then(|()| stream.write_all(request.as_bytes()))
    {
        return failed(&e, timeout, || format!("send request to {addr}"));
    }
    let mut response = Vec::new();
    let mut buf = [0u8; 2048];
    while response.len() < MAX_RESPONSE_BYTES {
        let Some(left) = remaining() else {
            return ProbeResult::timed_out(timeout);
        };
        let read = stream
            .set_read_timeout(Some(left))
            .and_then(|()| stream.read(&mut buf));
        match read {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return failed(&e, timeout, || format!("read response from {addr}")),
        }
    }
    judge(&response, &addr.to_string())
}

fn failed(e: &io::Error, timeout: Duration, op: impl FnOnce() -> String) -> ProbeResult {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ProbeResult::timed_out(timeout),
        _ => ProbeResult::unhealthy(format!("{}: {}", op(), io_text(e))),
    }
}

/// Healthy for a status of 200–399. The output: the status line, then the body's start.
fn judge(response: &[u8], from: &str) -> ProbeResult {
    if response.is_empty() {
        return ProbeResult::unhealthy(format!("empty response from {from}"));
    }
    let line_end = response
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(response.len());
    let status_line = String::from_utf8_lossy(&response[..line_end])
        .trim_end_matches('\r')
        .to_string();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    let code = parts
        .next()
        .filter(|c| c.len() == 3)
        .and_then(|c| c.parse::<u16>().ok());
    let Some(code) = code.filter(|_| version.starts_with("HTTP/")) else {
        let start: String = status_line.chars().take(100).collect();
        return ProbeResult::unhealthy(format!("malformed HTTP response from {from}: {start:?}"));
    };
    let body = find(response, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| find(response, b"\n\n").map(|i| i + 2))
        .map(|i| &response[i..])
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body[..body.len().min(BODY_PREFIX_BYTES)]);
    let body = body.trim();
    let output = if body.is_empty() {
        status_line
    } else {
        format!("{status_line}\n{body}")
    };
    if (200..400).contains(&code) {
        ProbeResult::healthy(output)
    } else {
        ProbeResult::unhealthy(output)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_http_1_0_with_host_and_agent() {
        assert_eq!(
            request("/healthz?full=1", 8080).expect("valid path"),
            "GET /healthz?full=1 HTTP/1.0\r\nHost: 127.0.0.1:8080\r\nUser-Agent: berth-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        for bad in ["healthz", "/a b", "/a\r\nX-Injected: 1", "/é", ""] {
            let err = request(bad, 80).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("http probe: path {bad:?} must start with '/' and hold only printable ASCII (hint: percent-encode anything else)")
            );
        }
    }

    #[test]
    fn status_decides_and_leads_the_output() {
        let ok = judge(
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello\n",
            "127.0.0.1:80",
        );
        assert_eq!(ok, ProbeResult::healthy("HTTP/1.0 200 OK\nhello"));
        let redirect = judge(b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n", "a");
        assert_eq!(redirect, ProbeResult::healthy("HTTP/1.1 302 Found"));
        let missing = judge(b"HTTP/1.1 404 Not Found\r\n\r\n", "a");
        assert_eq!(missing, ProbeResult::unhealthy("HTTP/1.1 404 Not Found"));
        let error = judge(b"HTTP/1.1 500 Internal Server Error\r\n\r\noops", "a");
        assert_eq!(
            error,
            ProbeResult::unhealthy("HTTP/1.1 500 Internal Server Error\noops")
        );
        let long_body = format!("HTTP/1.0 200 OK\r\n\r\n{}", "x".repeat(1000));
        assert_eq!(
            judge(long_body.as_bytes(), "a").output,
            format!("HTTP/1.0 200 OK\n{}", "x".repeat(BODY_PREFIX_BYTES))
        );
    }

    #[test]
    fn garbage_is_unhealthy() {
        assert_eq!(
            judge(b"", "127.0.0.1:9000"),
            ProbeResult::unhealthy("empty response from 127.0.0.1:9000")
        );
        assert_eq!(
            judge(b"SSH-2.0-OpenSSH_9.2\r\n", "127.0.0.1:22"),
            ProbeResult::unhealthy(
                "malformed HTTP response from 127.0.0.1:22: \"SSH-2.0-OpenSSH_9.2\""
            )
        );
        assert!(!judge(b"HTTP/1.1 20 OK\r\n\r\n", "a").healthy);
    }
}
