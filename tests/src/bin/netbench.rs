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

/// Bytes per second downloading `/big`, one connection after another, for `secs`.
fn throughput(t: &Target, secs: f64) -> Result<(u64, f64), String> {
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut bytes = 0u64;
    while Instant::now() < deadline {
        bytes +=
            get(t.addr, "/big", &mut buf).map_err(|e| format!("{}: GET /big: {e}", t.label))?;
    }
    Ok((bytes, start.elapsed().as_secs_f64()))
}

/// Connections (each a `GET /small`) completed by `threads` threads in `secs`.
fn connections(t: &Target, secs: f64, threads: usize) -> Result<(u64, f64), String> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
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
        total += w
            .join()
            .map_err(|_| "worker panicked".to_string())?
            .map_err(|e| format!("{}: {e}", t.label))?;
    }
    Ok((total, start.elapsed().as_secs_f64()))
}

fn parse(args: &[String]) -> Result<(u64, usize, Vec<Target>), String> {
    let (mut secs, mut threads, mut targets) = (5u64, 4usize, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                secs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--seconds needs a number")?
            }
            "--connection-threads" => {
                threads = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--connection-threads needs a number")?
            }
            t => {
                let (label, addr) = t
                    .split_once('=')
                    .ok_or_else(|| format!("target {t:?}: write LABEL=127.0.0.1:PORT"))?;
                let addr: SocketAddr = addr.parse().map_err(|e| format!("target {t:?}: {e}"))?;
                if !addr.ip().is_loopback() {
                    return Err(format!(
                        "target {t:?}: only loopback addresses are benchmarked"
                    ));
                }
                targets.push(Target {
                    label: label.to_string(),
                    addr,
                });
            }
        }
    }
    if targets.is_empty() || secs == 0 || secs > 60 || threads == 0 || threads > 64 {
        return Err(
            "usage: netbench [--seconds 1-60] [--connection-threads 1-64] LABEL=127.0.0.1:PORT..."
                .into(),
        );
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
    // Two rounds in A B, B A order, half the time each: neither target always goes first.
    let mut totals: Vec<Result<[(u64, f64); 2], String>> = vec![Ok([(0, 0.0); 2]); targets.len()];
    for round in 0..2 {
        let order: Vec<usize> = if round == 0 {
            (0..targets.len()).collect()
        } else {
            (0..targets.len()).rev().collect()
        };
        for i in order {
            let Ok(acc) = &mut totals[i] else {
                continue;
            };
            let t = &targets[i];
            match (
                throughput(t, secs as f64 / 2.0),
                connections(t, secs as f64 / 2.0, threads),
            ) {
                (Ok(tp), Ok(cr)) => {
                    acc[0] = (acc[0].0 + tp.0, acc[0].1 + tp.1);
                    acc[1] = (acc[1].0 + cr.0, acc[1].1 + cr.1);
                }
                (tp, cr) => {
                    totals[i] = Err([tp.err(), cr.err()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join("; "))
                }
            }
        }
    }
    println!(
        "{:<10} {:>22} {:>16} {:>24}",
        "target", "address", "throughput", "connections"
    );
    let mut failed = false;
    for (t, total) in targets.iter().zip(&totals) {
        match total {
            Ok([(bytes, bt), (conns, ct)]) => println!(
                "{:<10} {:>22} {:>10.1} MiB/s {:>14.0} conn/s ({threads} threads)",
                t.label,
                t.addr.to_string(),
                *bytes as f64 / bt / (1024.0 * 1024.0),
                *conns as f64 / ct
            ),
            Err(e) => {
                failed = true;
                println!("{:<10} {:>22} failed: {e}", t.label, t.addr.to_string());
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
