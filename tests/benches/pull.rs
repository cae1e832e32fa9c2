//! Pull benchmark (issue 4): berth's pull + verify + unpack of a multi-layer image of about
//! 200 MB built from Debian packages, beside `podman pull` of the same image from the same
//! loopback registry, three runs each, fresh stores every run.
//!
//! Run: `cargo bench -p berth-tests --bench pull` (root; needs docker-registry, umoci, skopeo,
//! podman, runc and apt-get access to the Debian mirror). The image is built once and kept
//! under `target/bench-pull/` (delete it to rebuild). `-- --berth-only` skips podman, for
//! profiling berth (`perf record -g target/release/deps/pull-* --bench --berth-only`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use berth_engine::images::{ImageStore, PullProgress, RegistryConfig};
use berth_tests::agent::unique_prefix;
use berth_tests::podman::Podman;
use berth_tests::{require_tool, Registry};

const RUNS: usize = 3;
const REPO_TAG: &str = "bench/debian-packages:1";

/// The image's layers, lowest first: Debian packages unpacked with `dpkg-deb -x`, about
/// 200 MB in all. Small files (perl, python, tzdata), hardlinks (git), big shared objects.
const LAYERS: &[&[&str]] = &[
    &["perl-modules-5.36", "libperl5.36"],
    &[
        "coreutils",
        "python3.11-minimal",
        "libpython3.11-stdlib",
        "tzdata",
    ],
    &["git", "git-man", "vim-runtime"],
    &["libicu72"],
];

fn main() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the pull benchmark needs root: layers keep file owners, podman stores need root");
    }
    for (tool, package) in [
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
        ("umoci", "umoci"),
        ("skopeo", "skopeo"),
        ("podman", "podman"),
        ("runc", "runc"),
    ] {
        require_tool(tool, package)?;
    }
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-pull");
    let layout = build_image(&cache)?;
    let registry = Registry::start()?;
    registry.push(&format!("oci:{}:bench", layout.display()), REPO_TAG)?;
    let reference = format!("{}/{REPO_TAG}", registry.host());
    let compressed = compressed_size(&layout)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start a tokio runtime")?;
    // Every run's store stays until the end: on ext4 without a journal, creating files right
    // after many were deleted is slow (the inode allocator skips recently deleted inodes), and
    // each run would pay for the cleanup of the one before.
    let mut keep = Vec::new();
    if std::env::args().any(|a| a == "--berth-only") {
        for run in 1..=RUNS {
            sync();
            let (t, bytes, store) = runtime.block_on(berth_pull(&reference))?;
            keep.push(store);
            println!(
                "run {run}: berth {:.2} s, {:.1} MB compressed, {:.1} MB unpacked",
                t.as_secs_f64(),
                compressed as f64 / 1e6,
                bytes as f64 / 1e6
            );
        }
        return Ok(());
    }
    let mut berth = Vec::new();
    let mut podman = Vec::new();
    let mut kept_podman = Vec::new();
    let mut unpacked = 0;
    // Interleaved, so a slow moment of the machine hits both alike; `sync` first, so neither
    // pays for the other's writeback.
    for run in 1..=RUNS {
        sync();
        let (t, bytes, store) = runtime.block_on(berth_pull(&reference))?;
        keep.push(store);
        unpacked = bytes;
        berth.push(t);
        sync();
        let (t, store) = podman_pull(&reference)?;
        podman.push(t);
        kept_podman.push(store);
        eprintln!(
            "run {run}: berth {:.2} s, podman {:.2} s",
            t.as_secs_f64(),
            podman[run - 1].as_secs_f64()
        );
    }

    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "image {reference}: {} layers, {:.1} MB compressed, {:.1} MB unpacked",
        LAYERS.len(),
        mb(compressed),
        mb(unpacked)
    );
    println!(
        "{:<6} {:>10} {:>14} {:>10} {:>14}",
        "run", "berth", "berth MB/s", "podman", "podman MB/s"
    );
    let rate = |t: Duration| mb(compressed) / t.as_secs_f64();
    for (i, (b, p)) in berth.iter().zip(&podman).enumerate() {
        println!(
            "{:<6} {:>8.2} s {:>14.1} {:>8.2} s {:>14.1}",
            i + 1,
            b.as_secs_f64(),
            rate(*b),
            p.as_secs_f64(),
            rate(*p)
        );
    }
    let (b, p) = (median(&berth), median(&podman));
    println!(
        "{:<6} {:>8.2} s {:>14.1} {:>8.2} s {:>14.1}",
        "median",
        b.as_secs_f64(),
        rate(b),
        p.as_secs_f64(),
        rate(p)
    );
    println!(
        "MB/s: compressed bytes pulled per second; berth/podman time ratio {:.2} ({})",
        b.as_secs_f64() / p.as_secs_f64(),
        if b <= p {
            "berth is not slower"
        } else {
            "berth is SLOWER"
        }
    );
    Ok(())
}

fn median(times: &[Duration]) -> Duration {
    let mut v = times.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn sync() {
    let _ = Command::new("sync").status();
}

/// One berth pull into a fresh store: resolve, download, verify, unpack, record. Returns the
/// time, the bytes the unpacked layers occupy, and the store's dir (removed when dropped).
async fn berth_pull(reference: &str) -> anyhow::Result<(Duration, u64, tempfile::TempDir)> {
    let state = tempfile::Builder::new()
        .prefix("berth-bench-pull-")
        .tempdir()
        .context("create the store dir")?;
    let t0 = Instant::now();
    let store = ImageStore::open(state.path())?;
    let image = store
        .pull(reference, &RegistryConfig::default(), &|_: PullProgress| {})
        .await?;
    let elapsed = t0.elapsed();
    if image.layers.len() != LAYERS.len() {
        bail!(
            "berth pulled {} layers, the image has {}",
            image.layers.len(),
            LAYERS.len()
        );
    }
    let usage = store.usage().await?;
    Ok((elapsed, usage.layers_bytes, state))
}

/// One `podman pull` into fresh storage (its own `--root`/`--runroot`, the host untouched).
/// Returns the time and the podman whose storage is removed when dropped.
fn podman_pull(reference: &str) -> anyhow::Result<(Duration, Podman)> {
    let podman = Podman::new(format!("{}-podman", unique_prefix()));
    let t0 = Instant::now();
    podman.command(&["pull", "--quiet", "--tls-verify=false", reference]);
    let elapsed = t0.elapsed();
    let out = podman.command(&["image", "inspect", "--format", "{{len .RootFS.Layers}}", reference]);
    let layers = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if layers != LAYERS.len().to_string() {
        bail!("podman pulled {layers} layers, the image has {}", LAYERS.len());
    }
    Ok((elapsed, podman))
}

/// Sum of the layer blob sizes of the image's manifest in the layout.
fn compressed_size(layout: &Path) -> anyhow::Result<u64> {
    let read = |p: PathBuf| -> anyhow::Result<serde_json::Value> {
        let bytes = std::fs::read(&p).with_context(|| format!("read {}", p.display()))?;
        Ok(serde_json::from_slice(&bytes)?)
    };
    let blob = |digest: &str| layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let index = read(layout.join("index.json"))?;
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json lists no manifest")?;
    let manifest = read(blob(digest))?;
    Ok(manifest["layers"]
        .as_array()
        .context("manifest has no layers")?
        .iter()
        .filter_map(|l| l["size"].as_u64())
        .sum())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let output = cmd
        .output()
        .with_context(|| format!("run {cmd:?}"))?;
    if !output.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Build the image into an OCI layout under `cache` (once; reused while the package plan is
/// the same): download the packages, then per layer `umoci unpack` the image so far, unpack
/// the layer's packages into its rootfs and `umoci repack` (umoci 0.4.7's `insert` writes
/// truncated tar streams, so it is not used).
fn build_image(cache: &Path) -> anyhow::Result<PathBuf> {
    let layout = cache.join("layout");
    let plan = format!("{LAYERS:?}");
    let marker = cache.join("plan");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == plan) && layout.join("index.json").is_file() {
        return Ok(layout);
    }
    eprintln!("building the benchmark image from Debian packages into {}", layout.display());
    let _ = std::fs::remove_dir_all(&layout);
    let _ = std::fs::remove_dir_all(cache.join("bundle"));
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).with_context(|| format!("create {}", debs.display()))?;
    let packages: Vec<&str> = LAYERS.iter().flat_map(|l| l.iter().copied()).collect();
    let download = || {
        run(Command::new("apt-get")
            .arg("download")
            .args(&packages)
            .current_dir(&debs))
    };
    let have_all = packages.iter().all(|p| find_deb(&debs, p).is_ok());
    if !have_all && download().is_err() {
        // The package lists may be missing or stale on a fresh machine.
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        download()?;
    }
    run(Command::new("umoci").arg("init").arg("--layout").arg(&layout))?;
    run(Command::new("umoci")
        .arg("new")
        .arg("--image")
        .arg(format!("{}:bench", layout.display())))?;
    let bundle = cache.join("bundle");
    for group in LAYERS {
        run(Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:bench", layout.display()))
            .arg(&bundle))?;
        for package in *group {
            let deb = find_deb(&debs, package)?;
            run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(bundle.join("rootfs")))?;
        }
        run(Command::new("umoci")
            .arg("repack")
            .arg("--image")
            .arg(format!("{}:bench", layout.display()))
            .arg(&bundle))?;
        std::fs::remove_dir_all(&bundle)?;
    }
    run(Command::new("umoci")
        .arg("config")
        .arg("--image")
        .arg(format!("{}:bench", layout.display()))
        .args(["--config.cmd", "/usr/bin/true"]))?;
    run(Command::new("umoci")
        .arg("gc")
        .arg("--layout")
        .arg(&layout))?;
    std::fs::write(&marker, plan)?;
    Ok(layout)
}

/// The `.deb` `apt-get download` saved for `package` (`NAME_VERSION_ARCH.deb`).
fn find_deb(dir: &Path, package: &str) -> anyhow::Result<PathBuf> {
    let prefix = format!("{package}_");
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(path);
        }
    }
    bail!("apt-get download left no {prefix}*.deb in {}", dir.display())
}
