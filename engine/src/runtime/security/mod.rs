//! The container's security profile, applied by its init right before `execve`: Docker's
//! default capabilities (with the manifest's `add`/`drop`), no_new_privs, Docker's default
//! seccomp profile, the user from the image's `/etc/passwd` and `/etc/group`, rlimits, and
//! namespaced sysctls.
//!
//! `privileged: true` is an explicit opt-in that turns the profile off: every capability the
//! host grants, no no_new_privs, no seccomp. Use it only for containers trusted like the host.
//!
//! The order follows runc (ENGINE-NOTES.md, step 8): sysctls (while `/proc/sys` is still
//! writable), then rlimits, no_new_privs, the bounding set, groups, gid and uid with
//! keep-caps, the final capability sets, and the seccomp filter last.

pub mod caps;
pub mod profile;
pub mod rlimits;
pub mod seccomp;
mod syscalls_aarch64;
mod syscalls_x86_64;
pub mod sysctl;
pub mod user;

use std::collections::BTreeMap;
use std::path::Path;

use berth_spec::ContainerSpec;
use nix::errno::Errno;
use serde::{Deserialize, Serialize};

pub use caps::CapSet;
pub use rlimits::{Resource, Rlimit};
pub use seccomp::{Arch, Filter};
pub use user::ExecUser;

use crate::sys;

/// The security part of the shim config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecurityConfig {
    /// Capabilities the process keeps: bounding, permitted and effective set (inheritable
    /// and ambient stay empty). Capped by what the host grants the shim.
    pub capabilities: CapSet,
    /// `PR_SET_NO_NEW_PRIVS`: setuid binaries and file capabilities grant nothing.
    pub no_new_privileges: bool,
    /// Docker's default seccomp profile (EPERM for every call it does not allow).
    pub seccomp: bool,
    /// `uid`, `uid:gid`, `name` or `name:group` in the image's databases; `None` is root.
    pub user: Option<String>,
    /// Limits to set; empty means the shim's limits are inherited.
    pub rlimits: Vec<Rlimit>,
    /// Namespaced sysctls to write in the container's `/proc/sys`.
    pub sysctls: BTreeMap<String, String>,
    /// The explicit opt-out (documented above); the other fields already say what it means
    /// for this module, and the mount code may read it too.
    pub privileged: bool,
}

impl Default for SecurityConfig {
    /// Docker's defaults: the secure profile, root, inherited limits.
    fn default() -> Self {
        SecurityConfig {
            capabilities: CapSet::docker_default(),
            no_new_privileges: true,
            seccomp: true,
            user: None,
            rlimits: Vec::new(),
            sysctls: BTreeMap::new(),
            privileged: false,
        }
    }
}

impl SecurityConfig {
    /// The profile a manifest asks for; the process runs as the manifest's `user`, else as
    /// the image's `User` (`image_user`), else as root, as Docker does.
    pub fn from_spec(spec: &ContainerSpec, image_user: Option<&str>) -> SecurityConfig {
        let privileged = spec.security.privileged;
        SecurityConfig {
            capabilities: if privileged {
                CapSet::all()
            } else {
                CapSet::from_changes(&spec.security.capabilities)
            },
            no_new_privileges: !privileged,
            seccomp: !privileged,
            user: spec.user.clone().or_else(|| image_user.map(str::to_string)),
            rlimits: Vec::new(),
            sysctls: spec.sysctls.clone(),
            privileged,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    User(#[from] user::UserError),
    #[error("read {path}: {reason}")]
    ReadDatabase { path: String, reason: String },
    #[error("{op}: {reason}")]
    Identity { op: String, reason: String },
    #[error(transparent)]
    Sysctl(#[from] sysctl::SysctlError),
    #[error("write sysctl {key} ({path}): {reason}")]
    WriteSysctl {
        key: String,
        path: String,
        reason: String,
    },
    #[error("set rlimit {resource}: {reason}")]
    Rlimit { resource: String, reason: String },
    #[error("set no_new_privs: {0}")]
    NoNewPrivs(String),
    #[error("read capabilities: {0}")]
    ReadCapabilities(String),
    #[error("drop {cap} from the bounding set: {reason}")]
    DropBounding { cap: String, reason: String },
    #[error("clear ambient capabilities: {0}")]
    ClearAmbient(String),
    #[error("set capabilities {caps}: {reason}")]
    SetCapabilities { caps: String, reason: String },
    #[error("seccomp: no system call table for this architecture (hint: berth knows x86_64 and aarch64; only privileged containers run without seccomp)")]
    SeccompArch,
    #[error("seccomp: {0}")]
    SeccompCompile(#[from] seccomp::CompileError),
    #[error("seccomp: read kernel version: {0}")]
    KernelVersion(String),
    #[error("apply seccomp profile: {0}")]
    SeccompInstall(String),
}

pub type Result<T, E = SecurityError> = std::result::Result<T, E>;

/// The init reports failures as plain messages (they become the container's status).
impl From<SecurityError> for String {
    fn from(e: SecurityError) -> String {
        e.to_string()
    }
}

/// errno text the way Go prints it ("operation not permitted").
fn errno_text(e: Errno) -> String {
    super::init::errno_text(e)
}

fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_text(Errno::from_raw(n)),
        None => e.to_string(),
    }
}

/// Writes the container's sysctls. Call after `/proc` is mounted and before `/proc/sys` is
/// made read-only. `host_network`: the container shares the host's network namespace, so
/// `net.*` would change the host and is refused.
pub fn apply_sysctls(cfg: &SecurityConfig, host_network: bool) -> Result<()> {
    sysctl::apply(&cfg.sysctls, host_network, Path::new("/proc/sys"))
}

/// Applies everything but the sysctls, in the container's init after `pivot_root` and
/// `chdir`, right before `execve`. Afterwards the process holds only `cfg.capabilities`,
/// runs as the configured user, and is under the seccomp filter. Returns the user it became
/// (its `home` is what Docker puts in `HOME` when the environment has none).
pub fn apply(cfg: &SecurityConfig) -> Result<ExecUser> {
    // Everything that reads files or can fail for a reason the operator should fix comes
    // first, while nothing has been given up yet.
    let user = user::resolve_in_root(cfg.user.as_deref())?;
    let last = sys::caps::last_cap().map_err(|e| SecurityError::ReadCapabilities(io_text(&e)))?;
    let held = sys::caps::get().map_err(|e| SecurityError::ReadCapabilities(io_text(&e)))?;
    // What the kernel knows and the shim holds: a capability the host withholds cannot be
    // granted, and asking for it must not make the container fail.
    let keep = cfg
        .capabilities
        .intersect(CapSet::up_to(last))
        .intersect(CapSet::from_bits(held.permitted));
    let filter = if cfg.seccomp {
        let arch = Arch::native().ok_or(SecurityError::SeccompArch)?;
        let kernel = sys::seccomp::kernel_version()
            .map_err(|e| SecurityError::KernelVersion(io_text(&e)))?;
        Some(Filter::docker_default(arch, keep, kernel).compile()?)
    } else {
        None
    };

    rlimits::apply(&cfg.rlimits)?;
    if cfg.no_new_privileges {
        sys::caps::set_no_new_privs().map_err(|e| SecurityError::NoNewPrivs(io_text(&e)))?;
    }
    for cap in 0..=last {
        if !keep.contains(cap as u8) {
            sys::caps::drop_bounding(cap).map_err(|e| SecurityError::DropBounding {
                cap: CapSet::EMPTY.with(cap as u8).names().join(""),
                reason: io_text(&e),
            })?;
        }
    }
    sys::caps::clear_ambient().map_err(|e| SecurityError::ClearAmbient(io_text(&e)))?;
    user::switch_to(&user)?;
    let sets = sys::caps::CapSets {
        effective: keep.bits(),
        permitted: keep.bits(),
        inheritable: 0,
    };
    sys::caps::set(sets).map_err(|e| SecurityError::SetCapabilities {
        caps: format!("{:#x}", keep.bits()),
        reason: io_text(&e),
    })?;
    if let Some(program) = filter {
        sys::seccomp::install_filter(&program)
            .map_err(|e| SecurityError::SeccompInstall(io_text(&e)))?;
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_spec::{Capability, CapabilityChanges, Security};

    #[test]
    fn config_from_spec() {
        let mut spec = ContainerSpec::new("docker.io/library/busybox:1.36");
        assert_eq!(
            SecurityConfig::from_spec(&spec, None),
            SecurityConfig::default()
        );
        let from_image = SecurityConfig::from_spec(&spec, Some("101:101"));
        assert_eq!(
            from_image.user.as_deref(),
            Some("101:101"),
            "the image's User is the default"
        );

        spec.user = Some("nobody".into());
        spec.sysctls
            .insert("net.ipv4.ip_unprivileged_port_start".into(), "0".into());
        spec.security.capabilities = CapabilityChanges {
            add: vec![],
            drop: vec!["NET_RAW".parse().expect("name")],
        };
        let cfg = SecurityConfig::from_spec(&spec, Some("101:101"));
        assert_eq!(
            cfg.capabilities,
            CapSet::docker_default().without(caps::number::NET_RAW)
        );
        assert_eq!(
            cfg.user.as_deref(),
            Some("nobody"),
            "the manifest's user wins"
        );
        assert_eq!(cfg.sysctls["net.ipv4.ip_unprivileged_port_start"], "0");
        assert!(cfg.no_new_privileges && cfg.seccomp && !cfg.privileged);

        spec.security = Security {
            privileged: true,
            ..Security::default()
        };
        spec.security.capabilities.drop = vec![Capability::All];
        let cfg = SecurityConfig::from_spec(&spec, None);
        assert_eq!(
            cfg.capabilities,
            CapSet::all(),
            "privileged ignores add/drop"
        );
        assert!(!cfg.no_new_privileges && !cfg.seccomp && cfg.privileged);
    }

    #[test]
    fn config_json_defaults_to_the_secure_profile() {
        let cfg: SecurityConfig = serde_json::from_str("{}").expect("empty object");
        assert_eq!(cfg, SecurityConfig::default());
        let json = serde_json::to_value(SecurityConfig::default()).expect("serialize");
        assert_eq!(json["noNewPrivileges"], true);
        assert_eq!(json["capabilities"].as_array().map(Vec::len), Some(14));
        let back: SecurityConfig = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, SecurityConfig::default());
    }

    #[test]
    fn errors_read_like_runc() {
        let e: String = SecurityError::from(user::UserError::NoUser("nobody2".into())).into();
        assert_eq!(
            e,
            "unable to find user nobody2: no matching entries in passwd file"
        );
        let e = SecurityError::DropBounding {
            cap: "CAP_KILL".into(),
            reason: errno_text(Errno::EPERM),
        };
        assert_eq!(
            e.to_string(),
            "drop CAP_KILL from the bounding set: operation not permitted"
        );
    }
}
