//! The `Container` kind's spec: what to run, and how.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::duration::DurationSpec;
use crate::healthcheck::Healthcheck;
use crate::image::image_ref;
use crate::mount::{Device, Mount};
use crate::names::{dns_label, dns_labels, scalar_map, CheckedList, CheckedNumber};
use crate::port::Port;
use crate::quantity::{ByteSize, Cpus};
use crate::security::Security;
use crate::signal::Signal;

/// `spec` of a `Container`. Field names are the camelCase names of MANIFESTS.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerSpec {
    /// Image reference: a tag or an `@sha256:` digest.
    #[serde(deserialize_with = "image_ref")]
    pub image: String,
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// Replaces the image's ENTRYPOINT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Replaces the image's CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, deserialize_with = "scalar_map")]
    #[schemars(with = "BTreeMap<String, crate::schema::ScalarString>")]
    pub env: BTreeMap<String, String>,
    /// Absolute paths of `KEY=value` files; their content is part of the spec hash.
    #[serde(default, deserialize_with = "absolute_paths")]
    #[schemars(inner(regex(pattern = "^/")))]
    pub env_files: Vec<PathBuf>,
    /// The user the process runs as: a name or uid, with `:group` optionally [default: the
    /// image's USER, else root]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Networks to join; `[default]` in bridge mode when left out, empty otherwise.
    #[serde(default, deserialize_with = "dns_labels")]
    #[schemars(inner(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    ))]
    pub networks: Vec<String>,
    #[serde(default)]
    pub network_mode: NetworkMode,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default)]
    pub depends_on: Vec<Dependency>,
    #[serde(default)]
    pub security: Security,
    #[serde(default)]
    pub stop_signal: Signal,
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: DurationSpec,
    #[serde(default)]
    pub update: Update,
    #[serde(default)]
    pub logging: Logging,
    #[serde(default, deserialize_with = "scalar_map")]
    #[schemars(with = "BTreeMap<String, crate::schema::ScalarString>")]
    pub sysctls: BTreeMap<String, String>,
}

/// The built-in network every bridge-mode container joins unless it names others.
pub const DEFAULT_NETWORK: &str = "default";

fn default_stop_timeout() -> DurationSpec {
    DurationSpec::from_secs(10)
}

impl ContainerSpec {
    /// A spec with every default and the given image.
    pub fn new(image: impl Into<String>) -> Self {
        let mut spec = ContainerSpec {
            image: image.into(),
            image_pull_policy: PullPolicy::default(),
            command: None,
            args: None,
            working_dir: None,
            env: BTreeMap::new(),
            env_files: Vec::new(),
            user: None,
            hostname: None,
            ports: Vec::new(),
            networks: Vec::new(),
            network_mode: NetworkMode::default(),
            mounts: Vec::new(),
            devices: Vec::new(),
            resources: Resources::default(),
            restart_policy: RestartPolicy::default(),
            healthcheck: None,
            depends_on: Vec::new(),
            security: Security::default(),
            stop_signal: Signal::default(),
            stop_timeout: default_stop_timeout(),
            update: Update::default(),
            logging: Logging::default(),
            sysctls: BTreeMap::new(),
        };
        spec.apply_defaults();
        spec
    }

    /// Defaults that depend on other fields; serde's `default`s cover the rest.
    pub(crate) fn apply_defaults(&mut self) {
        if self.network_mode == NetworkMode::Bridge && self.networks.is_empty() {
            self.networks = vec![DEFAULT_NETWORK.to_string()];
        }
    }
}

fn absolute_paths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    let paths = d.deserialize_seq(CheckedList(|p| {
        if p.starts_with('/') {
            Ok(())
        } else {
            Err(format!("env file path `{p}` is relative; hint: write an absolute path, like /etc/berth/env/web.env"))
        }
    }))?;
    Ok(paths.into_iter().map(PathBuf::from).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    #[default]
    IfNotPresent,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Bridge,
    Host,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dependency {
    #[serde(deserialize_with = "dns_label")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    #[serde(default)]
    pub condition: DependencyCondition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum DependencyCondition {
    #[default]
    Started,
    Healthy,
    Completed,
}

/// How a changed container replaces the running one, and when an update is rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Update {
    #[serde(default)]
    pub strategy: UpdateStrategy,
    /// Without a healthcheck, an updated container is ready once it has run this long.
    // Defaults are left out of the JSON so objects written before these fields existed keep
    // their spec hash.
    #[serde(
        default = "default_min_ready",
        skip_serializing_if = "is_default_min_ready"
    )]
    pub min_ready: DurationSpec,
    /// An updated container that is not ready (healthy, or running for `minReady`) this long
    /// after the update is put back on its previous revision.
    #[serde(
        default = "default_rollback_after",
        skip_serializing_if = "is_default_rollback_after"
    )]
    pub rollback_after: DurationSpec,
}

fn default_min_ready() -> DurationSpec {
    DurationSpec::from_secs(10)
}

fn default_rollback_after() -> DurationSpec {
    DurationSpec::from_secs(300)
}

fn is_default_min_ready(d: &DurationSpec) -> bool {
    *d == default_min_ready()
}

fn is_default_rollback_after(d: &DurationSpec) -> bool {
    *d == default_rollback_after()
}

impl Default for Update {
    fn default() -> Self {
        Update {
            strategy: UpdateStrategy::default(),
            min_ready: default_min_ready(),
            rollback_after: default_rollback_after(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum UpdateStrategy {
    /// Pull the new image before the old container stops.
    #[default]
    DownloadThenKill,
    /// Stop first, then pull: for disks too small to hold both images.
    KillThenDownload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    #[serde(default = "default_log_size")]
    pub max_size: ByteSize,
    #[serde(default = "default_log_files", deserialize_with = "at_least_one")]
    #[schemars(range(min = 1))]
    pub max_files: u32,
}

fn default_log_size() -> ByteSize {
    ByteSize::from_bytes(10 << 20)
}

fn default_log_files() -> u32 {
    3
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = d.deserialize_u64(CheckedNumber {
        min: 1,
        max: u64::from(u32::MAX),
        error: |n| format!("maxFiles {n} is out of range; hint: 1 keeps only the current log file; at most 4294967295"),
    })?;
    Ok(n as u32)
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            max_size: default_log_size(),
            max_files: default_log_files(),
        }
    }
}
