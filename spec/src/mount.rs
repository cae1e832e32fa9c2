//! Container mounts (named volumes, host paths, tmpfs) and devices.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::dns_label_error;
use crate::quantity::ByteSize;

/// One mount into the container at `path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "MountFields", into = "MountFields")]
pub struct Mount {
    pub path: PathBuf,
    pub read_only: bool,
    pub source: MountSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MountSource {
    /// A named `Volume`.
    Volume(String),
    HostPath(PathBuf),
    Tmpfs(Tmpfs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tmpfs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<ByteSize>,
}

/// A mount at `path` of exactly one of `volume`, `hostPath` or `tmpfs`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(
    rename = "Mount",
    extend("oneOf" = [{"required": ["volume"]}, {"required": ["hostPath"]}, {"required": ["tmpfs"]}])
)]
pub(crate) struct MountFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    volume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^/"))]
    host_path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tmpfs: Option<Tmpfs>,
    #[schemars(regex(pattern = "^/"))]
    path: PathBuf,
    #[serde(default)]
    read_only: bool,
}

fn absolute(what: &str, p: &Path) -> Result<(), String> {
    if p.is_absolute() {
        Ok(())
    } else {
        Err(format!(
            "{what} `{}` is relative; hint: write an absolute path, like /var/lib/app",
            p.display()
        ))
    }
}

impl TryFrom<MountFields> for Mount {
    type Error = String;

    fn try_from(f: MountFields) -> Result<Self, String> {
        absolute("mount path", &f.path)?;
        let source = match (f.volume, f.host_path, f.tmpfs) {
            (Some(v), None, None) => {
                if let Some(err) = dns_label_error(&v) {
                    return Err(format!("volume {err}"));
                }
                MountSource::Volume(v)
            }
            (None, Some(h), None) => {
                absolute("hostPath", &h)?;
                MountSource::HostPath(h)
            }
            (None, None, Some(t)) => MountSource::Tmpfs(t),
            _ => {
                return Err(format!(
                    "mount at `{}` needs exactly one of volume, hostPath or tmpfs; hint: for example {{volume: data, path: {}}}",
                    f.path.display(),
                    f.path.display()
                ))
            }
        };
        Ok(Mount {
            path: f.path,
            read_only: f.read_only,
            source,
        })
    }
}

impl From<Mount> for MountFields {
    fn from(m: Mount) -> Self {
        let (mut volume, mut host_path, mut tmpfs) = (None, None, None);
        match m.source {
            MountSource::Volume(v) => volume = Some(v),
            MountSource::HostPath(h) => host_path = Some(h),
            MountSource::Tmpfs(t) => tmpfs = Some(t),
        }
        MountFields {
            volume,
            host_path,
            tmpfs,
            path: m.path,
            read_only: m.read_only,
        }
    }
}

/// A host device made available in the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "DeviceFields", into = "DeviceFields")]
pub struct Device {
    pub host_path: PathBuf,
    /// Path inside the container; the host path when left out.
    pub path: PathBuf,
    pub permissions: DevicePermissions,
}

/// Device cgroup access: a non-empty subset of `rwm`, kept in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DevicePermissions {
    pub read: bool,
    pub write: bool,
    pub mknod: bool,
}

impl DevicePermissions {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut p = DevicePermissions {
            read: false,
            write: false,
            mknod: false,
        };
        for c in text.chars() {
            let slot = match c {
                'r' => &mut p.read,
                'w' => &mut p.write,
                'm' => &mut p.mknod,
                _ => return Err(Self::error(text)),
            };
            if *slot {
                return Err(Self::error(text));
            }
            *slot = true;
        }
        if text.is_empty() {
            return Err(Self::error(text));
        }
        Ok(p)
    }

    fn error(text: &str) -> String {
        format!("invalid device permissions `{text}`; hint: use letters of rwm, like rw or rwm")
    }

    pub fn as_string(&self) -> String {
        let mut s = String::new();
        for (on, c) in [(self.read, 'r'), (self.write, 'w'), (self.mknod, 'm')] {
            if on {
                s.push(c);
            }
        }
        s
    }
}

impl Default for DevicePermissions {
    fn default() -> Self {
        DevicePermissions {
            read: true,
            write: true,
            mknod: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "Device")]
pub(crate) struct DeviceFields {
    #[schemars(regex(pattern = "^/"))]
    host_path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^/"))]
    path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = "^(r?w?m?|r?m?w?|w?r?m?|w?m?r?|m?r?w?|m?w?r?)$"),
        length(min = 1)
    )]
    permissions: Option<String>,
}

impl TryFrom<DeviceFields> for Device {
    type Error = String;

    fn try_from(f: DeviceFields) -> Result<Self, String> {
        absolute("device hostPath", &f.host_path)?;
        let path = f.path.unwrap_or_else(|| f.host_path.clone());
        absolute("device path", &path)?;
        let permissions = match f.permissions {
            Some(p) => DevicePermissions::parse(&p)?,
            None => DevicePermissions::default(),
        };
        Ok(Device {
            host_path: f.host_path,
            path,
            permissions,
        })
    }
}

impl From<Device> for DeviceFields {
    fn from(d: Device) -> Self {
        DeviceFields {
            host_path: d.host_path,
            path: Some(d.path),
            permissions: Some(d.permissions.as_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_sources() {
        let m: Mount = serde_yaml::from_str("{volume: data, path: /var/lib/app}").unwrap();
        assert_eq!(m.source, MountSource::Volume("data".into()));
        assert_eq!(m.path, PathBuf::from("/var/lib/app"));
        assert!(!m.read_only);
        let m: Mount = serde_yaml::from_str(
            "{hostPath: /etc/ssl/certs, path: /etc/ssl/certs, readOnly: true}",
        )
        .unwrap();
        assert_eq!(m.source, MountSource::HostPath("/etc/ssl/certs".into()));
        assert!(m.read_only);
        let m: Mount = serde_yaml::from_str("{tmpfs: {size: 64Mi}, path: /tmp}").unwrap();
        assert_eq!(
            m.source,
            MountSource::Tmpfs(Tmpfs {
                size: Some(ByteSize::from_bytes(64 << 20))
            })
        );
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"tmpfs":{"size":"64Mi"},"path":"/tmp","readOnly":false}"#
        );
    }

    #[test]
    fn bad_mounts() {
        let cases = [
            (
                "{path: /x}",
                "needs exactly one of volume, hostPath or tmpfs",
            ),
            ("{volume: a, hostPath: /a, path: /x}", "needs exactly one"),
            ("{volume: a, path: x}", "mount path `x` is relative"),
            ("{hostPath: a, path: /x}", "hostPath `a` is relative"),
            (
                "{volume: Data, path: /x}",
                "volume name `Data` has uppercase",
            ),
        ];
        for (yaml, want) in cases {
            let err = serde_yaml::from_str::<Mount>(yaml).unwrap_err().to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }

    #[test]
    fn devices() {
        let d: Device = serde_yaml::from_str("{hostPath: /dev/ttyUSB0, permissions: rw}").unwrap();
        assert_eq!(d.path, PathBuf::from("/dev/ttyUSB0"));
        assert_eq!(d.permissions.as_string(), "rw");
        let d: Device = serde_yaml::from_str("{hostPath: /dev/fuse}").unwrap();
        assert_eq!(d.permissions.as_string(), "rwm");
        for bad in ["x", "rr", ""] {
            assert_eq!(
                DevicePermissions::parse(bad).unwrap_err(),
                format!(
                    "invalid device permissions `{bad}`; hint: use letters of rwm, like rw or rwm"
                )
            );
        }
    }
}
