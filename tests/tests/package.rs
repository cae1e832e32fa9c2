//! End to end: the Debian package that `cargo deb -p berth` builds (tests/run-all.sh builds it
//! before the tests). Installed with dpkg it puts the binary, the systemd unit (enabled, not
//! started) and a commented agent config in place; `dpkg -r` takes all of it away but the
//! conffile, as Debian does, and `dpkg --purge` that too.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const INSTALLED: [&str; 3] = [
    "/usr/bin/berth",
    "/usr/lib/systemd/system/berth.service",
    "/etc/systemd/system/multi-user.target.wants/berth.service",
];

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"))
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package `cargo deb` built: `target/debian/berth_<version>_<arch>.deb`.
fn package() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debian");
    let debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (hint: build the package first: cargo deb -p berth, as tests/run-all.sh does)",
                dir.display()
            )
        })
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("berth_"))
                && p.extension().is_some_and(|e| e == "deb")
        })
        .collect();
    let [deb] = &debs[..] else {
        panic!(
            "one berth_*.deb expected in {}, found {debs:?} (hint: cargo deb -p berth)",
            dir.display()
        );
    };
    deb.clone()
}

fn status() -> Option<String> {
    let out = run("dpkg-query", &["-W", "-f=${Status}", "berth"]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        .filter(|s| !s.ends_with("not-installed"))
}

/// Purges the package even when the test fails half way.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "berth"]);
    }
}

#[test]
fn the_debian_package_installs_enables_and_removes_cleanly() {
    let deb = package();
    let deb = deb.to_str().unwrap();
    assert_eq!(
        status(),
        None,
        "this host has a berth package already; the test would replace it"
    );

    let info = ok("dpkg-deb", &["-f", deb, "Depends"]);
    for dep in ["nftables", "iproute2"] {
        assert!(info.contains(dep), "Depends: {info}");
    }
    let files = ok("dpkg-deb", &["-c", deb]);
    for f in [
        "./usr/bin/berth",
        "./usr/lib/systemd/system/berth.service",
        "./etc/berth/agent.yaml",
    ] {
        assert!(files.contains(f), "{f} not in the package:\n{files}");
    }

    let _purge = Purge;
    ok("dpkg", &["-i", deb]);
    assert_eq!(status().as_deref(), Some("install ok installed"));
    for f in INSTALLED {
        assert!(Path::new(f).exists(), "{f} after install");
    }
    assert!(Path::new("/etc/berth/manifests.d").is_dir());
    // Enabled, not started.
    let running = run("pgrep", &["-f", "^/usr/bin/berth agent"]);
    assert!(!running.status.success(), "the package started the agent");
    // The shipped config is all comments: it loads, and it is the defaults.
    let version = ok("/usr/bin/berth", &["--version"]);
    assert!(version.starts_with("berth "), "{version}");
    let validated = ok(
        "/usr/bin/berth",
        &[
            "validate",
            "--config",
            "/etc/berth/agent.yaml",
            "/etc/berth/manifests.d",
        ],
    );
    assert_eq!(validated, "ok: 0 file(s), 0 object(s), no problems\n");
    let conffiles = ok("dpkg-query", &["-W", "-f=${Conffiles}", "berth"]);
    assert!(conffiles.contains("/etc/berth/agent.yaml"), "{conffiles}");

    ok("dpkg", &["-r", "berth"]);
    for f in INSTALLED {
        assert!(!Path::new(f).exists(), "{f} after dpkg -r");
    }
    assert!(!Path::new("/etc/berth/manifests.d").exists());
    assert_eq!(status().as_deref(), Some("deinstall ok config-files"));
    assert!(
        Path::new("/etc/berth/agent.yaml").exists(),
        "a conffile stays until purge"
    );

    ok("dpkg", &["--purge", "berth"]);
    assert_eq!(status(), None);
    assert!(
        !Path::new("/etc/berth").exists(),
        "purge leaves nothing in /etc"
    );
}
