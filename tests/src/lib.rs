//! Shared fixtures for berth's end-to-end and engine tests: a real OCI registry on a loopback
//! port and test images built by real tools (umoci, skopeo) from Debian's busybox-static.

pub mod agent;
pub mod git;
pub mod image;
pub mod podman;
pub mod registry;

pub use image::push_busybox;
pub use registry::Registry;

use std::path::PathBuf;

/// The absolute path of `tool` in `PATH`, or an error that says which package provides it.
pub fn require_tool(tool: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    anyhow::bail!(
        "test prerequisite missing: `{tool}` is not in PATH (hint: apt-get install {package})"
    )
}

/// `tests/support/<name>`.
pub fn support_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("support")
        .join(name)
}

/// Unix ms of an RFC 3339 UTC time like `2026-11-28T00:21:02.000000005Z`.
pub fn unix_ms(t: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| -> i64 { t[r].parse().unwrap() };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (hh, mm, ss) = (n(11..13), n(14..16), n(17..19));
    let frac = t[20..t.len() - 1].to_string() + "000";
    let ms: i64 = frac[..3].parse().unwrap();
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (((days * 24 + hh) * 60 + mm) * 60 + ss) as u64 * 1000 + ms as u64
}
