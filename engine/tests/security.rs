//! The security profile on real containers (root): each test runs busybox in a berth
//! container started through `Runtime` (the real shim, namespaces, cgroups) and reads what
//! the kernel says about the process: `/proc/self/status`, `/proc/self/limits`, the effect of
//! calls the profile forbids.
//!
//! Needs root, `/bin/busybox` (busybox-static) and the `berth` binary (`cargo build -p berth`).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_engine::runtime::security::{CapSet, Resource, Rlimit, SecurityConfig};
use berth_engine::runtime::{ExitRecord, RuntimeError};
use common::lab::{read_log, status_fields, Lab, DOCKER_CAPS};

const CAP_NET_RAW: u8 = 13;
const CAP_SYS_ADMIN: u8 = 21;

/// What a finished container left: its exit record and its output.
struct Output {
    exit: ExitRecord,
    stdout: String,
    stderr: String,
}

impl Lab {
    /// Starts `sh -c script` with `security`; the setup error when it does not start.
    fn try_run(&self, script: &str, security: SecurityConfig) -> Result<Output, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = format!("sec-{}", N.fetch_add(1, Ordering::SeqCst));
        let req = self.request(&id, script, security);
        let started = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(self.runtime.start(req));
        let result = match started {
            Err(RuntimeError::Setup(msg)) => Err(msg),
            Err(other) => panic!("start container {id}: {other}"),
            Ok(_) => {
                let deadline = Instant::now() + Duration::from_secs(30);
                let exit = loop {
                    if let Some(rec) = self.runtime.exit_record(&id) {
                        break rec;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "container {id} did not exit within 30s"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                };
                let (stdout, stderr) = read_log(&self.runtime.log_path(&id));
                Ok(Output {
                    exit,
                    stdout,
                    stderr,
                })
            }
        };
        self.remove(&id);
        result
    }

    fn run(&self, script: &str, security: SecurityConfig) -> Output {
        let out = self
            .try_run(script, security)
            .unwrap_or_else(|e| panic!("container did not start: {e}"));
        assert_eq!(
            out.exit.error, None,
            "container error; stderr: {}",
            out.stderr
        );
        out
    }
}

fn caps_hex(set: CapSet) -> String {
    format!("{:016x}", set.bits())
}

#[test]
fn default_profile_is_dockers() {
    let lab = Lab::new("security");
    let out = lab.run("cat /proc/self/status", SecurityConfig::default());
    assert_eq!(out.exit.exit_code, 0, "stderr: {}", out.stderr);
    let s = status_fields(&out.stdout);
    for set in ["CapBnd", "CapPrm", "CapEff"] {
        assert_eq!(s[set], DOCKER_CAPS, "{set}");
    }
    assert_eq!(
        (s["CapInh"].as_str(), s["CapAmb"].as_str()),
        ("0000000000000000", "0000000000000000")
    );
    assert_eq!(s["NoNewPrivs"], "1");
    assert_eq!(s["Seccomp"], "2");
    // Root, with root's supplementary groups from the image's /etc/group.
    assert_eq!(s["Uid"], "0\t0\t0\t0");
    assert_eq!(s["Gid"], "0\t0\t0\t0");
    assert_eq!(s["Groups"], "10");
}

#[test]
fn user_by_name_with_groups() {
    let lab = Lab::new("security");
    let cfg = SecurityConfig {
        user: Some("nobody".into()),
        ..SecurityConfig::default()
    };
    let out = lab.run("cat /proc/self/status; id -u; id -g", cfg);
    assert_eq!(out.exit.exit_code, 0, "stderr: {}", out.stderr);
    let s = status_fields(&out.stdout);
    assert_eq!(s["Uid"], "65534\t65534\t65534\t65534");
    assert_eq!(s["Gid"], "65534\t65534\t65534\t65534");
    assert_eq!(s["Groups"], "29 44");
    // A non-root program gets no capabilities from execve; the bounding set still limits.
    assert_eq!(
        (s["CapPrm"].as_str(), s["CapEff"].as_str()),
        ("0000000000000000", "0000000000000000")
    );
    assert_eq!(s["CapBnd"], DOCKER_CAPS);
    assert!(out.stdout.ends_with("65534\n65534\n"), "{}", out.stdout);

    let cfg = SecurityConfig {
        user: Some("app:44".into()),
        ..SecurityConfig::default()
    };
    let s = status_fields(&lab.run("cat /proc/self/status", cfg).stdout);
    assert_eq!(
        (s["Uid"].as_str(), s["Gid"].as_str()),
        ("1000\t1000\t1000\t1000", "44\t44\t44\t44")
    );
    assert_eq!(
        s["Groups"], "",
        "an explicit group drops supplementary groups"
    );

    let cfg = SecurityConfig {
        user: Some("4242:4343".into()),
        ..SecurityConfig::default()
    };
    let s = status_fields(&lab.run("cat /proc/self/status", cfg).stdout);
    assert_eq!(
        (s["Uid"].as_str(), s["Gid"].as_str()),
        ("4242\t4242\t4242\t4242", "4343\t4343\t4343\t4343")
    );
}

#[test]
fn unknown_user_is_a_clear_error() {
    let lab = Lab::new("security");
    let cfg = SecurityConfig {
        user: Some("nobody2".into()),
        ..SecurityConfig::default()
    };
    let err = lab
        .try_run("true", cfg)
        .err()
        .expect("a missing user must fail the start");
    assert_eq!(
        err,
        "unable to find user nobody2: no matching entries in passwd file"
    );
    let cfg = SecurityConfig {
        user: Some("app:staff".into()),
        ..SecurityConfig::default()
    };
    let err = lab
        .try_run("true", cfg)
        .err()
        .expect("a missing group must fail the start");
    assert_eq!(
        err,
        "unable to find group staff: no matching entries in group file"
    );
}

#[test]
fn capabilities_add_and_drop() {
    let lab = Lab::new("security");
    // With NET_RAW, root pings over a raw socket; without it, busybox falls back to an ICMP
    // datagram socket, which a fresh network namespace does not allow (ping_group_range).
    let ping = "ping -c 1 -W 2 127.0.0.1 >/dev/null && echo ping=ok || echo ping=failed";
    let out = lab.run(ping, SecurityConfig::default());
    assert_eq!(out.stdout, "ping=ok\n", "stderr: {}", out.stderr);

    let no_raw = SecurityConfig {
        capabilities: CapSet::docker_default().without(CAP_NET_RAW),
        ..SecurityConfig::default()
    };
    let out = lab.run(&format!("grep CapEff /proc/self/status; {ping}"), no_raw);
    assert_eq!(
        out.stdout,
        format!(
            "CapEff:\t{}\nping=failed\n",
            caps_hex(CapSet::docker_default().without(CAP_NET_RAW))
        )
    );
    assert!(
        out.stderr.contains("ping:"),
        "ping's own error expected: {}",
        out.stderr
    );

    // CAP_SYS_ADMIN also opens the profile's mount/unshare entries.
    let admin = SecurityConfig {
        capabilities: CapSet::docker_default().with(CAP_SYS_ADMIN),
        ..SecurityConfig::default()
    };
    let out = lab.run(
        "mount -t tmpfs none /mnt && echo mount=ok; unshare -n true && echo unshare=ok",
        admin,
    );
    assert_eq!(
        out.stdout, "mount=ok\nunshare=ok\n",
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn seccomp_refuses_calls_outside_the_profile() {
    let lab = Lab::new("security");
    // A user namespace needs no capability, so only the filter stands in the way.
    let script = "unshare -U true && echo userns=ok || echo userns=refused; \
                  mount -t tmpfs none /mnt && echo mount=ok || echo mount=refused; \
                  unshare -n true && echo netns=ok || echo netns=refused";
    let out = lab.run(script, SecurityConfig::default());
    assert_eq!(out.stdout, "userns=refused\nmount=refused\nnetns=refused\n");
    // Every refusal is EPERM (busybox mount words it its own way).
    let errors: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        errors,
        [
            "unshare: unshare(0x10000000): Operation not permitted",
            "mount: permission denied (are you root?)",
            "unshare: unshare(0x40000000): Operation not permitted",
        ]
    );

    // The same calls without the filter: the user namespace is created, so the refusal
    // above came from seccomp and not from missing capabilities.
    let no_filter = SecurityConfig {
        seccomp: false,
        ..SecurityConfig::default()
    };
    let out = lab.run(
        "grep Seccomp: /proc/self/status; unshare -U true && echo userns=ok || echo userns=refused",
        no_filter,
    );
    assert_eq!(
        out.stdout, "Seccomp:\t0\nuserns=ok\n",
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn privileged_is_the_hosts_full_set_without_filters() {
    let lab = Lab::new("security");
    let cfg = SecurityConfig {
        capabilities: CapSet::all(),
        no_new_privileges: false,
        seccomp: false,
        privileged: true,
        ..SecurityConfig::default()
    };
    let host = status_fields(&std::fs::read_to_string("/proc/self/status").expect("own status"));
    let s = status_fields(&lab.run("cat /proc/self/status", cfg).stdout);
    assert_eq!(s["CapBnd"], host["CapBnd"]);
    assert_eq!(s["CapEff"], host["CapBnd"]);
    assert_eq!(
        (s["NoNewPrivs"].as_str(), s["Seccomp"].as_str()),
        ("0", "0")
    );
}

#[test]
fn rlimits_lower_but_never_raise() {
    let lab = Lab::new("security");
    let (_, nofile_hard) = berth_engine::sys::rlimit::get(libc::RLIMIT_NOFILE as libc::c_int)
        .expect("own RLIMIT_NOFILE");
    let cfg = SecurityConfig {
        rlimits: vec![
            // Far above any hard limit: capped at the current one, not an error.
            Rlimit {
                resource: Resource::Nofile,
                soft: u64::MAX,
                hard: u64::MAX,
            },
            Rlimit {
                resource: Resource::Core,
                soft: 0,
                hard: 4096,
            },
        ],
        ..SecurityConfig::default()
    };
    let out = lab.run("cat /proc/self/limits", cfg);
    let field = |name: &str| -> Vec<String> {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {}", out.stdout));
        line[name.len()..]
            .split_whitespace()
            .take(2)
            .map(String::from)
            .collect()
    };
    let hard = if nofile_hard == u64::MAX {
        "unlimited".to_string()
    } else {
        nofile_hard.to_string()
    };
    assert_eq!(field("Max open files"), [hard.clone(), hard]);
    assert_eq!(field("Max core file size"), ["0", "4096"]);
}

#[test]
fn namespaced_sysctls_only() {
    let lab = Lab::new("security");
    let host_port_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .expect("host sysctl");
    let cfg = SecurityConfig {
        sysctls: BTreeMap::from([
            (
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "123".to_string(),
            ),
            ("kernel.shmmni".to_string(), "1234".to_string()),
        ]),
        ..SecurityConfig::default()
    };
    let out = lab.run(
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmni",
        cfg,
    );
    assert_eq!(out.stdout, "123\n1234\n", "stderr: {}", out.stderr);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .expect("host sysctl"),
        host_port_start,
        "the host's value changed"
    );

    let cfg = SecurityConfig {
        sysctls: BTreeMap::from([("vm.swappiness".to_string(), "1".to_string())]),
        ..SecurityConfig::default()
    };
    let err = lab
        .try_run("true", cfg)
        .err()
        .expect("a host-wide sysctl must fail the start");
    assert!(
        err.starts_with("sysctl \"vm.swappiness\" is not in a separate kernel namespace (hint:"),
        "{err}"
    );
}
