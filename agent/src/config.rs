//! The agent's configuration: an optional YAML file (`/etc/berth/agent.yaml`) whose every key
//! is also a flag; flags win.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use berth_engine::images::{AuthConfig, BasicAuth, RegistryConfig};
use berth_engine::network::NetworkConfig;

use crate::reconcile::backoff::Backoff;
use crate::source::config::{GitSource, SourceFileConfig};
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
    pub registries: RegistriesFileConfig,
    #[serde(default)]
    pub images: ImagesFileConfig,
    /// Host paths (and device nodes) that manifests may mount. Default: none.
    #[serde(default)]
    pub allowed_host_paths: Vec<PathBuf>,
    #[serde(default)]
    pub networks: NetworksFileConfig,
    /// An empty manifest directory removes everything berth runs [default: false: it
    /// removes nothing, and says so].
    pub allow_empty: Option<bool>,
    /// The restart back-off of crashing containers.
    #[serde(default)]
    pub restart_backoff: BackoffFileConfig,
    /// Actions (pulls, starts, stops) that run at once [default: 4].
    pub parallel_actions: Option<usize>,
    /// How often the agent looks at the whole host again and repairs drift [default: 30s].
    pub resync_interval: Option<berth_spec::DurationSpec>,
    /// A file holding the API's bearer token: every request to `listen` but /healthz and
    /// /readyz then needs it. Required when `listen` is not a loopback address.
    pub api_token_file: Option<PathBuf>,
    /// This host's labels, for `{label.NAME}` in `source.git.paths`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Manifests from git instead of the manifest directory.
    pub source: Option<SourceFileConfig>,
}

/// `restartBackoff:` of agent.yaml.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackoffFileConfig {
    /// The wait before the first restart after a failed run [default: 1s]
    pub initial: Option<berth_spec::DurationSpec>,
    /// The longest wait; each failure in a row doubles it up to this [default: 5m]
    pub max: Option<berth_spec::DurationSpec>,
    /// A run this long starts the count again [default: 10m]
    pub reset_after: Option<berth_spec::DurationSpec>,
}

/// `registries:` of agent.yaml: where images come from and with which credentials.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistriesFileConfig {
    /// Registry host → endpoints tried before it, e.g. `docker.io: ["http://127.0.0.1:5000"]`.
    #[serde(default)]
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Hosts allowed over plain HTTP although they are not loopback.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Registry host → `{username, password}` or `{username, passwordFile}`.
    #[serde(default)]
    pub auth: BTreeMap<String, BasicAuth>,
    /// A Docker `config.json` (`auths.<host>.auth`) for hosts not under `auth`.
    pub docker_config: Option<PathBuf>,
}

/// `images:` of agent.yaml.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImagesFileConfig {
    /// How often unused images are collected [default: 1h]
    pub gc_interval: Option<berth_spec::DurationSpec>,
    /// Images, blobs and layers younger than this are never collected [default: 24h]
    pub gc_grace_period: Option<berth_spec::DurationSpec>,
}

/// Image housekeeping of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagesConfig {
    pub gc_interval: Duration,
    pub gc_grace_period: Duration,
}

impl ImagesConfig {
    pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(3600);
    pub const DEFAULT_GC_GRACE_PERIOD: Duration = Duration::from_secs(24 * 3600);
}

/// `networks:` of agent.yaml.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworksFileConfig {
    /// Prefix of berth's bridges, veths and nftables table (1 to 7 of [a-z0-9]) [default: berth]
    pub bridge_prefix: Option<String>,
    /// Where subnets of networks without one come from [default: 10.89.0.0/16]
    pub pool: Option<String>,
    /// Prefix length of those subnets [default: 24]
    pub subnet_length: Option<u8>,
    /// The built-in network `default` [default: true]
    pub default_network: Option<bool>,
    /// The embedded DNS responder on each bridge's gateway [default: true]
    pub dns: Option<bool>,
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
    /// Registry credentials, read at each pull.
    pub registry_auth: AuthConfig,
    pub images: ImagesConfig,
    pub allowed_host_paths: Vec<PathBuf>,
    pub networks: NetworkConfig,
    pub default_network: bool,
    pub allow_empty: bool,
    pub restart_backoff: Backoff,
    pub parallel_actions: usize,
    pub resync_interval: Duration,
    /// Manifests from git; `manifests` is then unused.
    pub source: Option<GitSource>,
    /// The file of the API's bearer token, read when the agent starts.
    pub api_token_file: Option<PathBuf>,
}

fn network_config(file: &NetworksFileConfig, run_dir: &Path) -> anyhow::Result<NetworkConfig> {
    let pool_text = file.pool.as_deref().unwrap_or(NetworkConfig::DEFAULT_POOL);
    let pool = pool_text.parse().map_err(|e| {
        anyhow::anyhow!(
            "networks.pool {pool_text:?}: {e} (hint: an IPv4 network like 10.89.0.0/16)"
        )
    })?;
    let prefix = file
        .bridge_prefix
        .as_deref()
        .unwrap_or(NetworkConfig::DEFAULT_PREFIX);
    let len = file
        .subnet_length
        .unwrap_or(NetworkConfig::DEFAULT_SUBNET_LEN);
    let mut cfg = NetworkConfig::new(prefix, pool, len, run_dir)
        .map_err(|e| anyhow::anyhow!("networks: {e}"))?;
    cfg.dns = file.dns.unwrap_or(true);
    Ok(cfg)
}

impl AgentConfig {
    pub fn load(flags: &AgentFlags) -> anyhow::Result<AgentConfig> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None if Path::new(DEFAULT_CONFIG).exists() => read_file(Path::new(DEFAULT_CONFIG))?,
            None => FileConfig::default(),
        };
        let cgroup_parent = flags
            .cgroup_parent
            .clone()
            .or(file.cgroup_parent)
            .unwrap_or_else(|| "berth".into());
        if cgroup_parent.is_empty()
            || cgroup_parent.contains("..")
            || cgroup_parent.starts_with('/')
        {
            bail!("cgroupParent {cgroup_parent:?} must be a relative cgroup path without '..'");
        }
        let run_dir: PathBuf = flags
            .run_dir
            .clone()
            .or(file.run_dir)
            .unwrap_or_else(|| "/run/berth".into());
        let networks = network_config(&file.networks, &run_dir)?;
        let registry_auth = AuthConfig {
            auth: file.registries.auth,
            docker_config: file.registries.docker_config,
        };
        registry_auth.validate()?;
        let gc_interval = file
            .images
            .gc_interval
            .map_or(ImagesConfig::DEFAULT_GC_INTERVAL, |d| d.get());
        if gc_interval.is_zero() {
            bail!("images.gcInterval must be more than 0s");
        }
        let images = ImagesConfig {
            gc_interval,
            gc_grace_period: file
                .images
                .gc_grace_period
                .map_or(ImagesConfig::DEFAULT_GC_GRACE_PERIOD, |d| d.get()),
        };
        let defaults = Backoff::default();
        let restart_backoff = Backoff {
            initial: file
                .restart_backoff
                .initial
                .map_or(defaults.initial, |d| d.get()),
            max: file.restart_backoff.max.map_or(defaults.max, |d| d.get()),
            reset_after: file
                .restart_backoff
                .reset_after
                .map_or(defaults.reset_after, |d| d.get()),
        };
        if restart_backoff.initial.is_zero() || restart_backoff.max < restart_backoff.initial {
            bail!(
                "restartBackoff: initial must be more than 0s and max at least initial (hint: like initial: 1s, max: 5m)"
            );
        }
        let parallel_actions = file.parallel_actions.unwrap_or(4);
        if parallel_actions == 0 {
            bail!("parallelActions must be at least 1");
        }
        let resync_interval = file
            .resync_interval
            .map_or(Duration::from_secs(30), |d| d.get());
        if resync_interval < Duration::from_secs(1) {
            bail!("resyncInterval must be at least 1s");
        }
        let source = match file.source.and_then(|s| s.git) {
            None => None,
            Some(git) => {
                if flags.manifests.is_some() || file.manifests.is_some() {
                    bail!("source.git and manifests exclude each other: the manifests come from git (hint: remove one)");
                }
                let hostname = nix::unistd::gethostname()
                    .context("read the hostname for source.git.paths")?
                    .to_string_lossy()
                    .into_owned();
                Some(GitSource::resolve(git, &hostname, &file.labels)?)
            }
        };
        let listen = flags
            .listen
            .or(file.listen)
            .unwrap_or_else(|| ([127, 0, 0, 1], 9470).into());
        if file.api_token_file.is_none() && !listen.ip().is_loopback() {
            bail!(
                "listen {listen} is not a loopback address: set apiTokenFile, whose token every request will then need (hint: or listen on 127.0.0.1; the unix socket <runDir>/berth.sock serves root and the berth group)"
            );
        }
        Ok(AgentConfig {
            api_token_file: file.api_token_file,
            source,
            resync_interval,
            networks,
            default_network: file.networks.default_network.unwrap_or(true),
            allow_empty: file.allow_empty.unwrap_or(false),
            restart_backoff,
            parallel_actions,
            manifests: flags
                .manifests
                .clone()
                .or(file.manifests)
                .unwrap_or_else(|| "/etc/berth/manifests.d".into()),
            state_dir: flags
                .state_dir
                .clone()
                .or(file.state_dir)
                .unwrap_or_else(|| "/var/lib/berth".into()),
            run_dir,
            listen,
            cgroup_parent,
            registries: RegistryConfig {
                mirrors: file.registries.mirrors,
                insecure: file.registries.insecure,
            },
            registry_auth,
            images,
            allowed_host_paths: file.allowed_host_paths,
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read agent config {}", path.display()))?;
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

    /// The commented keys of the packaged /etc/berth/agent.yaml, uncommented.
    fn packaged_keys() -> String {
        let key = |l: &str| {
            let t = l.trim_start();
            let name = t.split(':').next().unwrap_or_default();
            t.contains(':')
                && !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        };
        include_str!("../debian/agent.yaml")
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            // `# text` is prose; `#key:` and `#  nested:` are keys.
            .filter(|l| (!l.starts_with(' ') || l.starts_with("  ")) && key(l))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_packaged_config_file_shows_real_keys_and_values() {
        let text = packaged_keys();
        let file: FileConfig =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(file.manifests.is_some() && file.allowed_host_paths.len() == 2);
        let git = file
            .source
            .and_then(|s| s.git)
            .expect("the git source example");
        let src = GitSource::resolve(git, "edge-7", &file.labels).unwrap();
        assert_eq!(src.paths, ["common", "sites/berlin", "hosts/edge-7"]);
        assert_eq!(
            src.allowed_signers.as_deref(),
            Some(Path::new("/etc/berth/allowed_signers"))
        );
    }

    #[test]
    fn file_keys_apply_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(
            &path,
            "manifests: /m\nstateDir: /s\nlisten: 127.0.0.1:1234\nregistries:\n  mirrors:\n    docker.io: [\"http://127.0.0.1:5000\"]\n  insecure: [\"10.0.0.1:5000\"]\n",
        )
        .unwrap();
        let flags = AgentFlags {
            config: Some(path),
            state_dir: Some("/flag".into()),
            ..Default::default()
        };
        let cfg = AgentConfig::load(&flags).unwrap();
        assert_eq!(cfg.manifests, PathBuf::from("/m"));
        assert_eq!(cfg.state_dir, PathBuf::from("/flag"));
        assert_eq!(cfg.run_dir, PathBuf::from("/run/berth"));
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:1234");
        assert_eq!(
            cfg.registries.mirrors["docker.io"],
            vec!["http://127.0.0.1:5000".to_string()]
        );
        assert_eq!(cfg.registries.insecure, vec!["10.0.0.1:5000".to_string()]);
    }

    #[test]
    fn registry_credentials_and_image_gc_keys_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(
            &path,
            "registries:\n  auth:\n    reg.example.com: {username: bob, passwordFile: /etc/berth/reg-pass}\n  dockerConfig: /root/.docker/config.json\nimages:\n  gcInterval: 10m\n  gcGracePeriod: 2h\n",
        )
        .unwrap();
        let cfg = AgentConfig::load(&AgentFlags {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        let bob = &cfg.registry_auth.auth["reg.example.com"];
        assert_eq!(
            (bob.username.as_str(), bob.password_file.as_deref()),
            ("bob", Some(Path::new("/etc/berth/reg-pass")))
        );
        assert_eq!(
            cfg.registry_auth.docker_config.as_deref(),
            Some(Path::new("/root/.docker/config.json"))
        );
        assert_eq!(
            cfg.images,
            ImagesConfig {
                gc_interval: Duration::from_secs(600),
                gc_grace_period: Duration::from_secs(7200)
            }
        );

        std::fs::write(&path, "").unwrap();
        let cfg = AgentConfig::load(&AgentFlags {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            cfg.images,
            ImagesConfig {
                gc_interval: Duration::from_secs(3600),
                gc_grace_period: Duration::from_secs(86400)
            }
        );
        assert_eq!(cfg.registry_auth, AuthConfig::default());

        std::fs::write(
            &path,
            "registries:\n  auth:\n    reg.example.com: {username: bob}\n",
        )
        .unwrap();
        let err = AgentConfig::load(&AgentFlags {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "registries.auth \"reg.example.com\": needs password or passwordFile"
        );
        std::fs::write(&path, "images:\n  gcInterval: 0s\n").unwrap();
        let err = AgentConfig::load(&AgentFlags {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert_eq!(err, "images.gcInterval must be more than 0s");
    }

    #[test]
    fn unknown_key_is_an_error_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, "manifests: /m\nstatedir: /s\n").unwrap();
        let flags = AgentFlags {
            config: Some(path.clone()),
            ..Default::default()
        };
        let err = AgentConfig::load(&flags).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:2:1: unknown field `statedir`", path.display())),
            "{err}"
        );
    }

    #[test]
    fn network_keys_apply_and_bad_ones_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, "runDir: /r\nnetworks:\n  bridgePrefix: t1\n  pool: 10.90.0.0/20\n  subnetLength: 26\n  defaultNetwork: false\n  dns: false\n").unwrap();
        let cfg = AgentConfig::load(&AgentFlags {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (
                cfg.networks.prefix.as_str(),
                cfg.networks.pool.to_string(),
                cfg.networks.subnet_len
            ),
            ("t1", "10.90.0.0/20".into(), 26)
        );
        assert_eq!((cfg.default_network, cfg.networks.dns), (false, false));
        assert_eq!(
            cfg.networks.netns_path("c-1"),
            PathBuf::from("/r/netns/c-1")
        );
        let defaults = AgentConfig::load(&AgentFlags {
            config: Some(dir.path().join("none.yaml")),
            ..Default::default()
        });
        assert!(
            defaults.is_err(),
            "a missing config file named by --config is an error"
        );
        std::fs::write(&path, "networks:\n  bridgePrefix: Berth-Bridge\n").unwrap();
        let err = AgentConfig::load(&AgentFlags {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("networks: network prefix \"Berth-Bridge\" must be"),
            "{err}"
        );
        std::fs::write(&path, "networks:\n  pool: 10.90.0.0\n").unwrap();
        let err = AgentConfig::load(&AgentFlags {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("networks.pool \"10.90.0.0\": "), "{err}");
    }

    #[test]
    fn reconciler_keys_apply_with_their_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, "").unwrap();
        let load = |path: &Path| {
            AgentConfig::load(&AgentFlags {
                config: Some(path.to_path_buf()),
                ..Default::default()
            })
        };
        let cfg = load(&path).unwrap();
        assert_eq!(
            (cfg.allow_empty, cfg.restart_backoff, cfg.parallel_actions),
            (false, Backoff::default(), 4)
        );
        assert_eq!(cfg.resync_interval, Duration::from_secs(30));
        std::fs::write(
            &path,
            "allowEmpty: true\nparallelActions: 2\nresyncInterval: 5s\nrestartBackoff: {initial: 200ms, max: 10s, resetAfter: 1m}\n",
        )
        .unwrap();
        let cfg = load(&path).unwrap();
        assert_eq!(
            (cfg.allow_empty, cfg.restart_backoff, cfg.parallel_actions),
            (
                true,
                Backoff {
                    initial: Duration::from_millis(200),
                    max: Duration::from_secs(10),
                    reset_after: Duration::from_secs(60)
                },
                2
            )
        );
        assert_eq!(cfg.resync_interval, Duration::from_secs(5));
        std::fs::write(&path, "restartBackoff: {initial: 1m, max: 10s}\n").unwrap();
        assert!(load(&path)
            .unwrap_err()
            .to_string()
            .starts_with("restartBackoff: initial must be more than 0s"));
        std::fs::write(&path, "parallelActions: 0\n").unwrap();
        assert_eq!(
            load(&path).unwrap_err().to_string(),
            "parallelActions must be at least 1"
        );
    }
}
