//! The bundle a shim runs: everything it needs to create one container, written by the agent
//! as `config.json` in the container's run dir before the shim starts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the shim reads. Paths are absolute host paths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShimConfig {
    /// Container id (also the name of its dirs and cgroup).
    pub id: String,
    /// Image layer dirs, lowest first.
    pub layers: Vec<PathBuf>,
    /// overlayfs upper and work dirs (same filesystem).
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where the overlay is mounted, inside the container's own mount namespace only.
    pub rootfs: PathBuf,
    /// argv; `args[0]` is resolved against `PATH` of `env` when it has no `/`.
    pub args: Vec<String>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    pub cwd: String,
    pub hostname: String,
    /// Every cgroup dir the init process joins (one per v1 hierarchy, one on v2).
    pub cgroups: Vec<PathBuf>,
    /// The cgroup dirs the shim moves itself to before it starts the container (`<parent>/
    /// shims` on every hierarchy): out of the agent's cgroup, which a service manager kills.
    #[serde(default)]
    pub shim_cgroups: Vec<PathBuf>,
    /// The container's stdout and stderr go here, as JSON lines (see [`super::logs`]).
    pub log_path: PathBuf,
    #[serde(default)]
    pub log: super::logs::LogConfig,
    /// Written atomically by the shim when the container's init exits.
    pub exit_path: PathBuf,
    /// Which network namespace the container gets.
    #[serde(default)]
    pub network: NetworkNamespace,
    /// (host file, path in the container) bound before the manifest's mounts: the
    /// resolv.conf, hosts and hostname the network setup wrote.
    #[serde(default)]
    pub etc_files: Vec<(PathBuf, String)>,
    /// Volumes, host paths and tmpfs, in order (parents before children).
    #[serde(default)]
    pub mounts: Vec<super::mounts::MountConfig>,
    #[serde(default)]
    pub devices: Vec<super::mounts::DeviceConfig>,
    /// Docker's defaults unless privileged.
    #[serde(default)]
    pub masked_paths: Vec<String>,
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    #[serde(default)]
    pub readonly_rootfs: bool,
    /// The process's security profile; a config without it gets Docker's defaults.
    #[serde(default)]
    pub security: super::security::SecurityConfig,
}

/// The container's network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NetworkNamespace {
    /// A new, empty one with only `lo` (networkMode: none).
    #[default]
    New,
    /// Join a prepared one, bind-mounted at this path (bridge networks).
    Join(PathBuf),
    /// The host's (networkMode: host).
    Host,
}

impl ShimConfig {
    pub const FILE: &'static str = "config.json";

    pub fn read(dir: &Path) -> std::io::Result<ShimConfig> {
        let path = dir.join(Self::FILE);
        let bytes = std::fs::read(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("parse {}: {e}", path.display()),
            )
        })
    }

    /// Written for every start and read once by the shim right away: no fsync needed.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(Self::FILE), json)
    }
}
