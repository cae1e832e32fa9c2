//! `netbench`: TCP throughput and connection rate through published ports, one line per
//! target, so engines can be compared side by side (`tests/bench/network.sh` runs it against
//! a berth container and a `podman run -p` container serving the same files).
//!
//! usage: netbench [--seconds N] [--connections-threads N] LABEL=127.0.0.1:PORT...
//!
//! Each target must serve `/big` (a large file) and `/small` over HTTP/1.0 (busybox httpd
//! does). Throughput: one connection after another downloading `/big` for N seconds.
//! Connection rate: threads doing connect, `GET /small`, read to the end, close, for N
//! seconds. Only loopback targets are accepted; every loop ends at its deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

struct Target {
    label: String,
    addr: SocketAddr,
}

/// GETs `path`; returns the bytes of the response (head and body).
fn get(addr: SocketAddr, path: &str, buf: &mut [u8]) -> std::io::Result<u64> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut total = 0u64;
    loop {
        match s.read(buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

fn throughput(t: &Target, secs: u64) -> Result<f64, String> {
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut bytes = 0u64;
    while Instant::now() < deadline {
        bytes += get(t.addr, "/big", &mut buf).map_err(|e| format!("{}: GET /big: {e}", t.label))?;
    }
    Ok(bytes as f64 / start.elapsed().as_secs_f64())
}

fn connection_rate(t: &Target, secs: u64, threads: usize) -> Result<f64, String> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let addr = t.addr;
            std::thread::spawn(move || -> Result<u64, String> {
                let mut buf = vec![0u8; 4096];
                let mut n = 0u64;
                while Instant::now() < deadline {
                    get(addr, "/small", &mut buf).map_err(|e| format!("GET /small: {e}"))?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0u64;
    for w in workers {
        total += w.join().map_err(|_| "worker panicked".to_string())?.map_err(|e| format!("{}: {e}", t.label))?;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn parse(args: &[String]) -> Result<(u64, usize, Vec<Target>), String> {
    let (mut secs, mut threads, mut targets) = (5u64, 4usize, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => secs = it.next().and_then(|v| v.parse().ok()).ok_or("--seconds needs a number")?,
            "--connection-threads" => {
                threads = it.next().and_then(|v| v.parse().ok()).ok_or("--connection-threads needs a number")?
            }
            t => {
                let (label, addr) = t.split_once('=').ok_or_else(|| format!("target {t:?}: write LABEL=127.0.0.1:PORT"))?;
                let addr: SocketAddr = addr.parse().map_err(|e| format!("target {t:?}: {e}"))?;
                if !addr.ip().is_loopback() {
                    return Err(format!("target {t:?}: only loopback addresses are benchmarked"));
                }
                targets.push(Target { label: label.to_string(), addr });
            }
        }
    }
    if targets.is_empty() || secs == 0 || secs > 60 || threads == 0 || threads > 64 {
        return Err("usage: netbench [--seconds 1-60] [--connection-threads 1-64] LABEL=127.0.0.1:PORT...".into());
    }
    Ok((secs, threads, targets))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (secs, threads, targets) = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("netbench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    println!("{:<10} {:>22} {:>16} {:>24}", "target", "address", "throughput", "connections");
    let mut failed = false;
    for t in &targets {
        let tp = throughput(t, secs);
        let cr = connection_rate(t, secs, threads);
        match (tp, cr) {
            (Ok(tp), Ok(cr)) => println!(
                "{:<10} {:>22} {:>10.1} MiB/s {:>14.0} conn/s ({threads} threads)",
                t.label,
                t.addr.to_string(),
                tp / (1024.0 * 1024.0),
                cr
            ),
            (tp, cr) => {
                failed = true;
                println!("{:<10} {:>22} failed: {}", t.label, t.addr.to_string(), [tp.err(), cr.err()].into_iter().flatten().collect::<Vec<_>>().join("; "));
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
