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
use nix::sys::resource::{getrusage, UsageWho};

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
        ("mkfs.ext4", "e2fsprogs"),
        ("mount", "mount"),
    ] {
        require_tool(tool, package)?;
    }
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-pull");
    let layout = build_image(&cache)?;
    // Declared first, so it is unmounted last, after everything in it is gone.
    let scratch = ScratchFs::mount()?;
    // Every temp dir from here on (registry storage, berth stores, podman roots) is on it.
    std::env::set_var("TMPDIR", scratch.path());
    let registry = Registry::start()?;
    registry.push(&format!("oci:{}:bench", layout.display()), REPO_TAG)?;
    let reference = format!("{}/{REPO_TAG}", registry.host());
    let compressed = compressed_size(&layout)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start a tokio runtime")?;
    // Every run's store stays until the end, so no run pays for removing the one before.
    let mut keep = Vec::new();
    if std::env::args().any(|a| a == "--berth-only") {
        for run in 1..=RUNS {
            sync();
            let (t, bytes, store) = runtime.block_on(berth_pull(&reference))?;
            keep.push(store);
            println!(
                "run {run}: berth {:.2} s ({:.2} s CPU), {:.1} MB compressed, {:.1} MB unpacked",
                t.wall.as_secs_f64(),
                t.cpu.as_secs_f64(),
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
    // Interleaved, taking turns at going first, so a slow moment of the machine hits both
    // alike; `sync` before each, so neither pays for the other's writeback.
    for run in 1..=RUNS {
        for berth_turn in [run % 2 == 1, run % 2 == 0] {
            sync();
            if berth_turn {
                let (t, bytes, store) = runtime.block_on(berth_pull(&reference))?;
                keep.push(store);
                unpacked = bytes;
                berth.push(t);
            } else {
                let (t, store) = podman_pull(&reference)?;
                podman.push(t);
                kept_podman.push(store);
            }
        }
        eprintln!(
            "run {run}: berth {:.2} s, podman {:.2} s",
            berth[run - 1].wall.as_secs_f64(),
            podman[run - 1].wall.as_secs_f64()
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
        "{:<6} {:>9} {:>8} {:>6}   {:>9} {:>8} {:>6}",
        "run", "berth", "MB/s", "CPU", "podman", "MB/s", "CPU"
    );
    let rate = |t: Duration| mb(compressed) / t.as_secs_f64();
    let row = |label: &str, b: Took, p: Took| {
        println!(
            "{label:<6} {:>7.2} s {:>8.1} {:>4.2} s   {:>7.2} s {:>8.1} {:>4.2} s",
            b.wall.as_secs_f64(),
            rate(b.wall),
            b.cpu.as_secs_f64(),
            p.wall.as_secs_f64(),
            rate(p.wall),
            p.cpu.as_secs_f64()
        )
    };
    for (i, (b, p)) in berth.iter().zip(&podman).enumerate() {
        row(&(i + 1).to_string(), *b, *p);
    }
    let median_of = |v: &[Took]| Took {
        wall: median(&v.iter().map(|t| t.wall).collect::<Vec<_>>()),
        cpu: median(&v.iter().map(|t| t.cpu).collect::<Vec<_>>()),
    };
    let (b, p) = (median_of(&berth), median_of(&podman));
    row("median", b, p);
    println!(
        "MB/s: compressed bytes pulled per second of wall time; CPU: user + system seconds.\n\
         berth/podman: wall {:.2}, CPU {:.2} ({})",
        b.wall.as_secs_f64() / p.wall.as_secs_f64(),
        b.cpu.as_secs_f64() / p.cpu.as_secs_f64(),
        if b.wall <= p.wall {
            "berth is not slower"
        } else {
            "berth is SLOWER"
        }
    );
    Ok(())
}

/// A fresh ext4 (with its journal, as a host's usually is) on a loop device, for everything
/// the benchmark writes: a shared machine's own filesystem is slow to allocate inodes right
/// after other work deleted many (ext4 without a journal skips recently freed ones), which
/// made runs differ by a factor of three.
struct ScratchFs {
    /// Holds the image file.
    image_dir: tempfile::TempDir,
    /// The mount point: a short path, since podman refuses a run root of over 50 characters.
    mnt: tempfile::TempDir,
}

impl ScratchFs {
    const SIZE: u64 = 8 << 30;

    fn mount() -> anyhow::Result<ScratchFs> {
        let image_dir = tempfile::Builder::new()
            .prefix("berth-bench-fs-")
            .tempdir_in("/var/tmp")
            .context("create the scratch filesystem's dir")?;
        let image = image_dir.path().join("fs.img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(Self::SIZE))
            .with_context(|| format!("create {}", image.display()))?;
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))?;
        let mnt = tempfile::Builder::new()
            .prefix("bpfs-")
            .tempdir_in("/tmp")
            .context("create the scratch mount point")?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(mnt.path()))?;
        Ok(ScratchFs { image_dir, mnt })
    }

    fn path(&self) -> PathBuf {
        self.mnt.path().to_path_buf()
    }
}

impl Drop for ScratchFs {
    fn drop(&mut self) {
        // A loop device set up by `mount -o loop` is released by the unmount.
        if let Err(e) = run(Command::new("umount").arg(self.path())) {
            eprintln!(
                "unmount the scratch filesystem: {e:#} (its image is {})",
                self.image_dir.path().display()
            );
        }
    }
}

fn median(times: &[Duration]) -> Duration {
    let mut v = times.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn sync() {
    let _ = Command::new("sync").status();
}

/// Wall-clock time, and the CPU time (user + system) of the puller's own processes: the
/// machine may be busy with other work, which stretches the first but hardly the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Took {
    wall: Duration,
    cpu: Duration,
}

fn cpu_time(who: UsageWho) -> anyhow::Result<Duration> {
    let u = getrusage(who).context("getrusage")?;
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    Ok(tv(u.user_time()) + tv(u.system_time()))
}

/// One berth pull into a fresh store: resolve, download, verify, unpack, record. Returns the
/// time, the bytes the unpacked layers occupy, and the store's dir (removed when dropped).
async fn berth_pull(reference: &str) -> anyhow::Result<(Took, u64, tempfile::TempDir)> {
    let state = tempfile::Builder::new()
        .prefix("berth-bench-pull-")
        .tempdir()
        .context("create the store dir")?;
    // This process does nothing else meanwhile (the registry is a child, counted apart).
    let cpu0 = cpu_time(UsageWho::RUSAGE_SELF)?;
    let t0 = Instant::now();
    let store = ImageStore::open(state.path())?;
    let image = store
        .pull(reference, &RegistryConfig::default(), &|_: PullProgress| {})
        .await?;
    let elapsed = Took {
        wall: t0.elapsed(),
        cpu: cpu_time(UsageWho::RUSAGE_SELF)? - cpu0,
    };
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
fn podman_pull(reference: &str) -> anyhow::Result<(Took, Podman)> {
    let podman = Podman::new(format!("{}-podman", unique_prefix()));
    // Children's CPU counts once they are reaped: podman (and unshare) are, the registry is not.
    let cpu0 = cpu_time(UsageWho::RUSAGE_CHILDREN)?;
    let t0 = Instant::now();
    podman.command(&["pull", "--quiet", "--tls-verify=false", reference]);
    let elapsed = Took {
        wall: t0.elapsed(),
        cpu: cpu_time(UsageWho::RUSAGE_CHILDREN)? - cpu0,
    };
    let out = podman.command(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        reference,
    ]);
    let layers = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if layers != LAYERS.len().to_string() {
        bail!(
            "podman pulled {layers} layers, the image has {}",
            LAYERS.len()
        );
    }
    Ok((elapsed, podman))
}

/// Sum of the layer blob sizes of the image's manifest in the layout.
fn compressed_size(layout: &Path) -> anyhow::Result<u64> {
    let read = |p: PathBuf| -> anyhow::Result<serde_json::Value> {
        let bytes = std::fs::read(&p).with_context(|| format!("read {}", p.display()))?;
        Ok(serde_json::from_slice(&bytes)?)
    };
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
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
    let output = cmd.output().with_context(|| format!("run {cmd:?}"))?;
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
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == plan)
        && layout.join("index.json").is_file()
    {
        return Ok(layout);
    }
    eprintln!(
        "building the benchmark image from Debian packages into {}",
        layout.display()
    );
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
    run(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout))?;
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
            run(Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(bundle.join("rootfs")))?;
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
    run(Command::new("umoci").arg("gc").arg("--layout").arg(&layout))?;
    std::fs::write(&marker, plan)?;
    Ok(layout)
}

/// The `.deb` `apt-get download` saved for `package` (`NAME_VERSION_ARCH.deb`).
fn find_deb(dir: &Path, package: &str) -> anyhow::Result<PathBuf> {
    let prefix = format!("{package}_");
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(path);
        }
    }
    bail!(
        "apt-get download left no {prefix}*.deb in {}",
        dir.display()
    )
}
