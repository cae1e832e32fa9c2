//! The agent's configuration: an optional YAML file (`/etc/berth/agent.yaml`) whose every key
//! is also a flag; flags win.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berth_engine::images::RegistryConfig;
use serde::Deserialize;

pub const DEFAULT_CONFIG: &str = "/etc/berth/agent.yaml";

/// The keys of `agent.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    pub manifests: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub cgroup_parent: Option<String>,
    #[serde(default)]
    pub registries: RegistryConfig,
}

/// Flags of `berth agent`; each overrides the key of the same name.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct AgentFlags {
    /// Agent config file (YAML). Default /etc/berth/agent.yaml when it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of manifests to converge to [default: /etc/berth/manifests.d]
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// Persistent state: database, images, container dirs [default: /var/lib/berth]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Volatile state: shim bundles and exit records [default: /run/berth]
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Address of the read-only status API and /metrics [default: 127.0.0.1:9470]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// cgroup (relative to each hierarchy's root) that holds berth's containers [default: berth]
    #[arg(long, value_name = "NAME")]
    pub cgroup_parent: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub manifests: PathBuf,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub listen: SocketAddr,
    pub cgroup_parent: String,
    pub registries: RegistryConfig,
}

impl AgentConfig {
    pub fn load(flags: &AgentFlags) -> anyhow::Result<AgentConfig> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None if Path::new(DEFAULT_CONFIG).exists() => read_file(Path::new(DEFAULT_CONFIG))?,
            None => FileConfig::default(),
        };
        let cgroup_parent = flags.cgroup_parent.clone().or(file.cgroup_parent).unwrap_or_else(|| "berth".into());
        if cgroup_parent.is_empty() || cgroup_parent.contains("..") || cgroup_parent.starts_with('/') {
            bail!("cgroupParent {cgroup_parent:?} must be a relative cgroup path without '..'");
        }
        Ok(AgentConfig {
            manifests: flags.manifests.clone().or(file.manifests).unwrap_or_else(|| "/etc/berth/manifests.d".into()),
            state_dir: flags.state_dir.clone().or(file.state_dir).unwrap_or_else(|| "/var/lib/berth".into()),
            run_dir: flags.run_dir.clone().or(file.run_dir).unwrap_or_else(|| "/run/berth".into()),
            listen: flags.listen.or(file.listen).unwrap_or_else(|| ([127, 0, 0, 1], 9470).into()),
            cgroup_parent,
            registries: file.registries,
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read agent config {}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml::from_str(&text).map_err(|e| match e.location() {
        Some(l) => anyhow::anyhow!("{}:{}:{}: {e}", path.display(), l.line(), l.column()),
        None => anyhow::anyhow!("{}: {e}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_apply_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(
            &path,
            "manifests: /m\nstateDir: /s\nlisten: 127.0.0.1:1234\nregistries:\n  mirrors:\n    docker.io: [\"http://127.0.0.1:5000\"]\n  insecure: [\"10.0.0.1:5000\"]\n",
        )
        .unwrap();
        let flags = AgentFlags { config: Some(path), state_dir: Some("/flag".into()), ..Default::default() };
        let cfg = AgentConfig::load(&flags).unwrap();
        assert_eq!(cfg.manifests, PathBuf::from("/m"));
        assert_eq!(cfg.state_dir, PathBuf::from("/flag"));
        assert_eq!(cfg.run_dir, PathBuf::from("/run/berth"));
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:1234");
        assert_eq!(cfg.registries.mirrors["docker.io"], vec!["http://127.0.0.1:5000".to_string()]);
        assert_eq!(cfg.registries.insecure, vec!["10.0.0.1:5000".to_string()]);
    }

    #[test]
    fn unknown_key_is_an_error_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, "manifests: /m\nstatedir: /s\n").unwrap();
        let flags = AgentFlags { config: Some(path.clone()), ..Default::default() };
        let err = AgentConfig::load(&flags).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:2:1: unknown field `statedir`", path.display())), "{err}");
    }
}
