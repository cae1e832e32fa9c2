//! Sysctls of a container: only the ones that live in a namespace the container has of its
//! own are written (in `/proc/sys` of the container, before it is made read-only); any
//! other would change the whole host and is refused.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use super::{io_text, SecurityError};

/// Why a sysctl may not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SysctlError {
    #[error("sysctl {0:?} is not a valid sysctl name")]
    Name(String),
    #[error("sysctl {0:?} is not in a separate kernel namespace (hint: only net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* can be set per container)")]
    NotNamespaced(String),
    #[error("sysctl {0:?} not allowed in host network namespace (hint: it would change the host; use networkMode bridge or none)")]
    HostNetwork(String),
}

/// The dotted name of `key` (`net/ipv4/ip_forward` → `net.ipv4.ip_forward`) and its file
/// under `/proc/sys`. A key with a `/` is in slash form, where a `.` is part of a name (an
/// interface like `eth0.100`), as in sysctl(8).
fn split(key: &str) -> Result<Vec<&str>, SysctlError> {
    let sep = if key.contains('/') { '/' } else { '.' };
    let parts: Vec<&str> = key.split(sep).collect();
    let bad = |p: &&str| p.is_empty() || *p == "." || *p == ".." || p.contains('\0');
    if parts.len() < 2 || parts.iter().any(bad) {
        return Err(SysctlError::Name(key.to_string()));
    }
    Ok(parts)
}

/// Checks that `key` may be set in a container (`host_network`: it shares the host's network
/// namespace), and returns its path relative to `/proc/sys`.
pub fn check(key: &str, host_network: bool) -> Result<PathBuf, SysctlError> {
    let parts = split(key)?;
    let first = parts[0];
    let second = parts[1];
    let namespaced = match first {
        // The network namespace.
        "net" => {
            if host_network {
                return Err(SysctlError::HostNetwork(key.to_string()));
            }
            true
        }
        // The IPC namespace (ipc_sysctls in ipc/ipc_sysctl.c, fs.mqueue in ipc/mq_sysctl.c).
        "kernel" => {
            parts.len() == 2
                && (second.starts_with("shm") || second.starts_with("msg") || second == "sem")
        }
        "fs" => second == "mqueue" && parts.len() == 3,
        _ => false,
    };
    if !namespaced {
        return Err(SysctlError::NotNamespaced(key.to_string()));
    }
    Ok(parts.iter().collect())
}

/// Writes every sysctl under `proc_sys` (`/proc/sys` in the container). All keys are checked
/// before the first write.
pub fn apply(
    sysctls: &BTreeMap<String, String>,
    host_network: bool,
    proc_sys: &std::path::Path,
) -> Result<(), SecurityError> {
    let mut writes = Vec::with_capacity(sysctls.len());
    for (key, value) in sysctls {
        writes.push((key, check(key, host_network)?, value));
    }
    for (key, rel, value) in writes {
        let path = proc_sys.join(rel);
        let fail = |e: std::io::Error| SecurityError::WriteSysctl {
            key: key.clone(),
            path: path.display().to_string(),
            reason: io_text(&e),
        };
        // No O_CREAT: a name the kernel does not have is an error, not a new file.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(fail)?;
        f.write_all(value.as_bytes()).map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespaced_sysctls() {
        let ok = [
            (
                "net.ipv4.ip_unprivileged_port_start",
                "net/ipv4/ip_unprivileged_port_start",
            ),
            (
                "net/ipv4/conf/eth0.100/rp_filter",
                "net/ipv4/conf/eth0.100/rp_filter",
            ),
            ("kernel.shmmax", "kernel/shmmax"),
            ("kernel.shm_rmid_forced", "kernel/shm_rmid_forced"),
            ("kernel.msgmnb", "kernel/msgmnb"),
            ("kernel.sem", "kernel/sem"),
            ("fs.mqueue.msg_max", "fs/mqueue/msg_max"),
        ];
        for (key, path) in ok {
            assert_eq!(check(key, false).expect(key), PathBuf::from(path));
        }
        for key in [
            "kernel.hostname",
            "kernel.panic",
            "vm.swappiness",
            "fs.file-max",
            "kernel.semx.y",
            "kernel.sem.x",
        ] {
            assert_eq!(
                check(key, false),
                Err(SysctlError::NotNamespaced(key.into())),
                "{key}"
            );
        }
        assert_eq!(
            check("net.ipv4.ip_forward", true),
            Err(SysctlError::HostNetwork("net.ipv4.ip_forward".into()))
        );
        assert_eq!(
            check("kernel.shmmax", true).expect("ipc sysctl with host network"),
            PathBuf::from("kernel/shmmax")
        );
        for key in ["net..ipv4", "net/../../etc/passwd", "net", "", "net.ipv4."] {
            assert_eq!(
                check(key, false),
                Err(SysctlError::Name(key.into())),
                "{key:?}"
            );
        }
        let msg = SysctlError::NotNamespaced("vm.swappiness".into()).to_string();
        assert!(
            msg.starts_with(
                "sysctl \"vm.swappiness\" is not in a separate kernel namespace (hint:"
            ),
            "{msg}"
        );
    }

    #[test]
    fn writes_files_and_refuses_before_writing() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("kernel")).expect("mkdir");
        std::fs::write(dir.path().join("kernel/shmmax"), "1\n").expect("seed");
        let mut sysctls = BTreeMap::from([("kernel.shmmax".to_string(), "4096".to_string())]);
        apply(&sysctls, false, dir.path()).expect("apply");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("kernel/shmmax")).expect("read"),
            "4096"
        );

        // A bad key anywhere means nothing is written.
        sysctls.insert("kernel.shmmax".into(), "8192".into());
        sysctls.insert("vm.swappiness".into(), "1".into());
        let err = apply(&sysctls, false, dir.path()).unwrap_err().to_string();
        assert!(err.contains("vm.swappiness"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("kernel/shmmax")).expect("read"),
            "4096"
        );

        let missing = BTreeMap::from([("kernel.shmall".to_string(), "1".to_string())]);
        let err = apply(&missing, false, dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with("write sysctl kernel.shmall")
                && err.ends_with("no such file or directory"),
            "{err}"
        );
    }
}
