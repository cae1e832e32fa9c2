//! `netbench`: TCP throughput and connection rate through published ports, one line per
//! target, so engines can be compared side by side (`tests/bench/network.sh` runs it against
//! a berth container and a `podman run -p` container serving the same files).
//!
//! usage: netbench [--seconds N] [--rounds N] [--connection-threads N] LABEL=127.0.0.1:PORT...
//!
//! Each target must serve `/big` (a large file) and `/small` over HTTP/1.0 (busybox httpd
//! does). Throughput: one connection after another downloading `/big`. Connection rate:
//! threads doing connect, `GET /small`, read to the end, close. Each target is measured for
//! N seconds of each in all (default 12), split into rounds (default 6) that alternate which
//! target goes first, after a discarded warm-up; the median round is printed with the range.
//! Only loopback targets are accepted; every loop ends at its deadline.

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

struct Options {
    secs: u64,
    threads: usize,
    rounds: usize,
    targets: Vec<Target>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let (mut secs, mut threads, mut rounds, mut targets) = (12u64, 4usize, 6usize, Vec::new());
    let mut it = args.iter();
    let number = |name: &str, v: Option<&String>| -> Result<u64, String> {
        v.and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} needs a number"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => secs = number(a, it.next())?,
            "--connection-threads" => threads = number(a, it.next())? as usize,
            "--rounds" => rounds = number(a, it.next())? as usize,
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
    if targets.is_empty()
        || !(1..=600).contains(&secs)
        || !(1..=64).contains(&threads)
        || !(1..=100).contains(&rounds)
    {
        return Err(
            "usage: netbench [--seconds 1-600] [--rounds 1-100] [--connection-threads 1-64] LABEL=127.0.0.1:PORT..."
                .into(),
        );
    }
    Ok(Options {
        secs,
        threads,
        rounds,
        targets,
    })
}

/// One target's figures: per-round rates, in rounds order.
#[derive(Default)]
struct Figures {
    throughput: Vec<f64>,
    connections: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn spread(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// One measurement of each kind on `t`: (MiB/s, conn/s).
fn measure(t: &Target, secs: f64, threads: usize) -> Result<(f64, f64), String> {
    let (bytes, bt) = throughput(t, secs)?;
    let (conns, ct) = connections(t, secs, threads)?;
    Ok((bytes as f64 / bt / (1024.0 * 1024.0), conns as f64 / ct))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("netbench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let Options {
        secs,
        threads,
        rounds,
        targets,
    } = opts;
    // Whatever runs first on a freshly started target is slower (cold caches, the engine's own
    // start-up work still settling): every target gets a discarded warm-up first, then rounds
    // in A B, B A, A B … order so neither target always goes first, and the median of the
    // rounds is reported with its spread.
    let per = secs as f64 / rounds as f64;
    let mut figures: Vec<Result<Figures, String>> =
        targets.iter().map(|_| Ok(Figures::default())).collect();
    // Warm up in reverse order: the target that opens round 0 is the one warmed last.
    for (t, f) in targets.iter().zip(&mut figures).rev() {
        if let Err(e) = measure(t, per.min(1.0), threads) {
            *f = Err(format!("warm-up: {e}"));
        }
    }
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..targets.len()).collect()
        } else {
            (0..targets.len()).rev().collect()
        };
        for i in order {
            let Ok(f) = &mut figures[i] else {
                continue;
            };
            match measure(&targets[i], per, threads) {
                Ok((tp, cr)) => {
                    f.throughput.push(tp);
                    f.connections.push(cr);
                }
                Err(e) => figures[i] = Err(e),
            }
        }
    }
    println!(
        "{:<10} {:>22} {:>34} {:>30}",
        "target", "address", "throughput, median (min-max)", "connections, median (min-max)"
    );
    let mut failed = false;
    for (t, f) in targets.iter().zip(&figures) {
        match f {
            Ok(f) => {
                let ((tl, th), (cl, ch)) = (spread(&f.throughput), spread(&f.connections));
                println!(
                    "{:<10} {:>22} {:>10.1} MiB/s ({tl:.0}-{th:.0}) {:>12.0} conn/s ({cl:.0}-{ch:.0})",
                    t.label,
                    t.addr.to_string(),
                    median(&f.throughput),
                    median(&f.connections),
                );
            }
            Err(e) => {
                failed = true;
                println!("{:<10} {:>22} failed: {e}", t.label, t.addr.to_string());
            }
        }
    }
    if let Some(Ok(first)) = figures.first() {
        for (t, f) in targets.iter().zip(&figures).skip(1) {
            if let Ok(f) = f {
                println!(
                    "{} / {}: throughput {:.2}x, connections {:.2}x ({rounds} rounds of {per:.1} s, {threads} connection threads)",
                    targets[0].label,
                    t.label,
                    median(&first.throughput) / median(&f.throughput),
                    median(&first.connections) / median(&f.connections),
                );
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
