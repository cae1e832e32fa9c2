//! The isolation probe (issue 5): one script reports what a container can see and do —
//! capabilities, no_new_privs, seccomp mode, the mounts of `/`, `/proc`, `/sys`, `/dev`, the
//! device nodes, whether a host disk can be opened, the hostname, the masked and read-only
//! paths, calls the seccomp profile decides — and runs in a berth container and in `podman
//! run` of the same image. berth must be equal or stricter on every line.
//!
//! Podman runs with its own storage, state and config in a temp dir, inside a private mount
//! namespace with a private `/run`, so nothing of it stays on the host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::agent::{leaks, Agent};
use berth_tests::podman::Podman;
use berth_tests::{push_busybox, Registry};

/// `sh -c PROBE probe HOST_HOSTNAME DISK` (DISK: `major:minor` of a host block device).
/// Busybox only; one `key value…` line per fact.
const PROBE: &str = r#"
host_hostname=$1
disk=$2
for f in CapBnd CapPrm CapEff CapInh CapAmb NoNewPrivs Seccomp; do
  echo "status.$f $(sed -n "s/^$f:[[:space:]]*//p" /proc/self/status)"
done
echo "uid $(id -u)"
awk '{ i = 7; while ($i != "-") i++; print "mount", $5, $(i + 1), $6 "," $(i + 3) }' /proc/self/mountinfo
find /dev \( -type c -o -type b \) | sort | while read -r d; do
  if [ -c "$d" ]; then t=c; else t=b; fi
  echo "device $d $t $(stat -c '%t:%T' "$d")"
done
if [ "$(hostname)" = "$host_hostname" ]; then echo "hostname.is-host yes"; else echo "hostname.is-host no"; fi
for p in /proc/acpi /proc/asound /proc/interrupts /proc/kcore /proc/keys /proc/latency_stats \
         /proc/sched_debug /proc/scsi /proc/timer_list /proc/timer_stats \
         /sys/devices/virtual/powercap /sys/firmware; do
  if [ ! -e "$p" ]; then v=absent
  elif [ -d "$p" ]; then
    if [ -n "$(ls -A "$p" 2>/dev/null)" ]; then v=visible; else v=hidden; fi
  elif [ "$(head -c 64 "$p" 2>/dev/null | wc -c)" -gt 0 ]; then v=visible
  else v=hidden; fi
  echo "masked $p $v"
done
for p in /proc/bus /proc/fs /proc/irq /proc/sys /proc/sysrq-trigger; do
  if [ -e "$p" ]; then echo "exists $p yes"; else echo "exists $p no"; fi
done
mkdir -p /tmp/.probe
if mknod /tmp/.probe/disk b "${disk%:*}" "${disk#*:}" 2>/dev/null && head -c 512 /tmp/.probe/disk >/dev/null 2>&1; then
  echo "devaccess.hostdisk readable"; else echo "devaccess.hostdisk denied"; fi
if unshare -U true 2>/dev/null; then echo "syscall.unshare-user allowed"; else echo "syscall.unshare-user denied"; fi
if unshare -n true 2>/dev/null; then echo "syscall.unshare-net allowed"; else echo "syscall.unshare-net denied"; fi
if mount -t tmpfs none /tmp/.probe 2>/dev/null; then echo "syscall.mount allowed"; else echo "syscall.mount denied"; fi
echo "probe done"
"#;

/// The mount points compared, and the paths Docker makes read-only.
const MOUNT_POINTS: [&str; 7] = [
    "/",
    "/proc",
    "/sys",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
];
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
/// Mount flags that restrict; a stricter mount has a superset of them.
const RESTRICTING: [&str; 4] = ["ro", "nosuid", "nodev", "noexec"];

/// A parsed probe report.
#[derive(Debug, Default)]
struct Report {
    facts: BTreeMap<String, String>,
    /// mount point → restricting flags, the topmost mount of each point.
    mounts: BTreeMap<String, BTreeSet<String>>,
    /// mount points in mountinfo order (later ones cover earlier ones).
    mount_order: Vec<String>,
    devices: BTreeSet<String>,
}

fn parse(output: &str) -> Report {
    let mut r = Report::default();
    for line in output.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("mount") => {
                let (Some(point), Some(_fstype), Some(opts)) =
                    (words.next(), words.next(), words.next())
                else {
                    panic!("malformed mount line {line:?}");
                };
                let flags = opts
                    .split(',')
                    .filter(|o| RESTRICTING.contains(o))
                    .map(String::from)
                    .collect();
                r.mounts.insert(point.to_string(), flags);
                r.mount_order.push(point.to_string());
            }
            Some("device") => {
                r.devices.insert(words.collect::<Vec<_>>().join(" "));
            }
            Some("masked") | Some("exists") => {
                let kind = line.split_whitespace().next().unwrap_or_default();
                let path = words.next().unwrap_or_default();
                r.facts.insert(
                    format!("{kind} {path}"),
                    words.collect::<Vec<_>>().join(" "),
                );
            }
            Some(key) => {
                r.facts
                    .insert(key.to_string(), words.collect::<Vec<_>>().join(" "));
            }
            None => {}
        }
    }
    r
}

impl Report {
    /// The restricting flags of the mount that `path` is on (the longest covering mount
    /// point, the latest one when a point is mounted over).
    fn flags_of(&self, path: &str) -> BTreeSet<String> {
        let covers =
            |point: &str| point == "/" || path == point || path.starts_with(&format!("{point}/"));
        self.mount_order
            .iter()
            .filter(|p| covers(p))
            .max_by_key(|p| p.len())
            .and_then(|p| self.mounts.get(p))
            .cloned()
            .unwrap_or_default()
    }

    /// `absent`, `readonly` or `writable` for one of Docker's read-only paths.
    fn readonly_state(&self, path: &str) -> String {
        match self
            .facts
            .get(&format!("exists {path}"))
            .map(String::as_str)
        {
            Some("yes") if self.flags_of(path).contains("ro") => "readonly".into(),
            Some("yes") => "writable".into(),
            Some(_) => "absent".into(),
            None => "unreported".into(),
        }
    }
}

/// One compared line.
struct Row {
    what: String,
    berth: String,
    podman: String,
    ok: bool,
}

fn hex(v: &str) -> u64 {
    u64::from_str_radix(v, 16).unwrap_or_else(|e| panic!("capability mask {v:?}: {e}"))
}

fn number(v: &str) -> i64 {
    v.parse().unwrap_or_else(|e| panic!("number {v:?}: {e}"))
}

fn join(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "-".into()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(",")
    }
}

/// Every line, judged: is berth equal or stricter than podman?
fn compare(berth: &Report, podman: &Report) -> Vec<Row> {
    let mut rows = Vec::new();
    let fact = |r: &Report, k: &str| {
        r.facts
            .get(k)
            .cloned()
            .unwrap_or_else(|| "unreported".into())
    };
    let mut row = |what: String, b: String, p: String, ok: bool| {
        rows.push(Row {
            what,
            berth: b,
            podman: p,
            ok,
        })
    };

    for key in podman
        .facts
        .keys()
        .chain(berth.facts.keys())
        .collect::<BTreeSet<_>>()
    {
        let (b, p) = (fact(berth, key), fact(podman, key));
        if b == "unreported" || p == "unreported" {
            row(key.clone(), b, p, false);
            continue;
        }
        let ok = match key.as_str() {
            k if k.starts_with("status.Cap") => hex(&b) & !hex(&p) == 0,
            "status.NoNewPrivs" | "status.Seccomp" => number(&b) >= number(&p),
            "uid" => number(&b) != 0 || number(&p) == 0,
            "hostname.is-host" => b == "no" || p == "yes",
            k if k.starts_with("masked ") => b != "visible" || p == "visible",
            k if k.starts_with("exists ") => continue,
            "devaccess.hostdisk" => b == "denied" || p == "readable",
            k if k.starts_with("syscall.") => b == "denied" || p == "allowed",
            "probe" => b == "done" && p == "done",
            other => panic!("the probe reported {other:?}, which the comparison does not know"),
        };
        row(key.clone(), b, p, ok);
    }
    for point in MOUNT_POINTS {
        let (b, p) = (berth.mounts.get(point), podman.mounts.get(point));
        let ok = match (b, p) {
            (Some(b), Some(p)) => b.is_superset(p),
            // Not mounting something at all exposes nothing.
            (None, _) => true,
            (Some(_), None) => true,
        };
        let show = |m: Option<&BTreeSet<String>>| m.map_or("absent".to_string(), join);
        row(format!("mount {point}"), show(b), show(p), ok);
    }
    for path in READONLY_PATHS {
        let (b, p) = (berth.readonly_state(path), podman.readonly_state(path));
        let ok = b != "writable" || p == "writable";
        row(format!("readonly {path}"), b, p, ok);
    }
    let extra: BTreeSet<String> = berth.devices.difference(&podman.devices).cloned().collect();
    row(
        "devices (berth's not in podman's)".into(),
        format!("{} nodes, extra: {}", berth.devices.len(), join(&extra)),
        format!("{} nodes", podman.devices.len()),
        extra.is_empty(),
    );
    rows
}

fn table(rows: &[Row]) -> String {
    let mut out = format!("{:<40} {:<34} {:<34} verdict\n", "line", "berth", "podman");
    for r in rows {
        let verdict = if r.ok { "ok" } else { "BERTH LESS STRICT" };
        out.push_str(&format!(
            "{:<40} {:<34} {:<34} {verdict}\n",
            r.what, r.berth, r.podman
        ));
    }
    out
}

/// `major:minor` of a block device of this host, for the device-access line.
fn host_block_device() -> String {
    let mut devs: Vec<String> = std::fs::read_dir("/sys/dev/block")
        .expect("read /sys/dev/block")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    devs.sort();
    // A real disk rather than a loop device (major 7), when there is one.
    devs.iter()
        .find(|d| !d.starts_with("7:"))
        .or(devs.first())
        .cloned()
        .expect("this host has no block device to probe with")
}

fn probe_manifest(host: &str, disk: &str) -> String {
    let command = serde_json::to_string(&["sh", "-c", PROBE, "probe", host, disk]).expect("json");
    format!(
        "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: probe\nspec:\n  image: docker.io/library/busybox:1.36\n  command: {command}\n  restartPolicy: Never\n  networkMode: none\n"
    )
}

fn berth_stdout(log: &Path) -> String {
    let text =
        std::fs::read_to_string(log).unwrap_or_else(|e| panic!("read {}: {e}", log.display()));
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("log line {l:?}: {e}"))
        })
        .filter(|r| r["stream"] == "stdout")
        .map(|r| r["log"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn berth_is_as_strict_as_podman_on_every_line() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the isolation probe needs root: it runs containers"
    );
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let host = nix::unistd::gethostname()
        .expect("hostname")
        .to_string_lossy()
        .into_owned();
    let disk = host_block_device();

    // berth, through a manifest, like a user.
    let agent = Agent::start(&registry).expect("start agent");
    agent
        .write_manifest("probe.yaml", &probe_manifest(&host, &disk))
        .unwrap();
    let c = agent
        .wait_for(
            "the probe container to exit",
            Duration::from_secs(60),
            |a| {
                a.container("probe")
                    .filter(|c| c["state"] == "exited" || c["state"] == "failed")
            },
        )
        .unwrap();
    assert_eq!(
        (c["state"].as_str(), c["exitCode"].as_i64()),
        (Some("exited"), Some(0)),
        "{c}"
    );
    let id = c["id"].as_str().expect("container id");
    let log: PathBuf = agent
        .state_dir
        .join("containers")
        .join(id)
        .join("container.log");
    let berth_out = berth_stdout(&log);

    // podman, the same image from the same registry.
    let podman = Podman::new(format!("{}-podman", agent.prefix));
    let image = format!("{}/library/busybox:1.36", registry.host());
    podman.command(&["pull", "--quiet", "--tls-verify=false", &image]);
    let out = podman.command(&[
        "run",
        "--rm",
        "--network=none",
        &format!("--cgroup-parent=/{}", podman.cgroup_parent),
        &image,
        "sh",
        "-c",
        PROBE,
        "probe",
        &host,
        &disk,
    ]);
    let podman_out = String::from_utf8_lossy(&out.stdout).into_owned();

    let (b, p) = (parse(&berth_out), parse(&podman_out));
    assert_eq!(
        b.facts.get("probe").map(String::as_str),
        Some("done"),
        "berth probe output:\n{berth_out}"
    );
    assert_eq!(
        p.facts.get("probe").map(String::as_str),
        Some("done"),
        "podman probe output:\n{podman_out}"
    );
    let rows = compare(&b, &p);
    let report = table(&rows);
    println!("{report}");
    assert!(rows.len() >= 30, "too few lines compared:\n{report}");
    let failing: Vec<&str> = rows
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.what.as_str())
        .collect();
    assert!(
        failing.is_empty(),
        "berth is less strict than podman on {failing:?}:\n{report}\nberth probe output:\n{berth_out}\npodman probe output:\n{podman_out}"
    );

    let (prefix, dir) = (agent.prefix.clone(), agent.root.path().to_path_buf());
    drop(podman);
    drop(agent);
    let left = leaks(&prefix, &dir);
    assert!(left.is_empty(), "left on the host: {left:#?}");
}

#[test]
fn comparison_judges_each_kind_of_line() {
    let podman = parse(
        "status.CapEff 00000000a80425fb\nstatus.Seccomp 2\nstatus.NoNewPrivs 0\nuid 0\n\
         mount / overlay rw,relatime,rw\nmount /dev tmpfs rw,nosuid,noexec,rw\nmount /proc proc rw,nosuid,nodev,noexec,rw\n\
         mount /proc/sys proc ro,nosuid,nodev,noexec,rw\nexists /proc/sys yes\n\
         device /dev/null c 1:3\nmasked /proc/keys hidden\nhostname.is-host no\n\
         devaccess.hostdisk denied\nsyscall.mount denied\nsyscall.unshare-user allowed\nprobe done\n",
    );
    let judge = |berth: &str| -> BTreeMap<String, bool> {
        compare(&parse(berth), &podman)
            .into_iter()
            .map(|r| (r.what, r.ok))
            .collect()
    };
    let strict = judge(
        "status.CapEff 00000000a80405fb\nstatus.Seccomp 2\nstatus.NoNewPrivs 1\nuid 0\n\
         mount / overlay rw,relatime,rw\nmount /dev tmpfs rw,nosuid,noexec,rw\nmount /proc proc rw,nosuid,nodev,noexec,rw\n\
         mount /proc/sys proc ro,nosuid,nodev,noexec,rw\nexists /proc/sys yes\n\
         device /dev/null c 1:3\nmasked /proc/keys absent\nhostname.is-host no\n\
         devaccess.hostdisk denied\nsyscall.mount denied\nsyscall.unshare-user denied\nprobe done\n",
    );
    assert!(strict.values().all(|ok| *ok), "{strict:?}");
    let loose = judge(
        "status.CapEff 00000000a80425ff\nstatus.Seccomp 0\nstatus.NoNewPrivs 0\nuid 0\n\
         mount / overlay rw,relatime,rw\nmount /dev tmpfs rw,nosuid,rw\nmount /proc proc rw,nosuid,nodev,noexec,rw\n\
         exists /proc/sys yes\n\
         device /dev/null c 1:3\ndevice /dev/vda b fe:0\nmasked /proc/keys visible\nhostname.is-host yes\n\
         devaccess.hostdisk readable\nsyscall.mount allowed\nsyscall.unshare-user allowed\nprobe done\n",
    );
    let failing: BTreeSet<&str> = loose
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(k, _)| k.as_str())
        .collect();
    let want: BTreeSet<&str> = [
        "status.CapEff",
        "status.Seccomp",
        "mount /dev",
        "readonly /proc/sys",
        "devices (berth's not in podman's)",
        "masked /proc/keys",
        "hostname.is-host",
        "devaccess.hostdisk",
        "syscall.mount",
    ]
    .into();
    assert_eq!(failing, want);
}
