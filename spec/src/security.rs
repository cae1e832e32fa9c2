//! Container security settings: capabilities, read-only root, privileged.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Security {
    #[serde(default)]
    pub capabilities: CapabilityChanges,
    #[serde(default)]
    pub read_only_root_filesystem: bool,
    #[serde(default)]
    pub privileged: bool,
}

/// Capabilities added to or dropped from the default set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CapabilityChanges {
    #[serde(default)]
    pub add: Vec<Capability>,
    #[serde(default)]
    pub drop: Vec<Capability>,
}

// Linux capability names in number order (capabilities(7)).
const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability `{0}`; hint: write a Linux capability like NET_ADMIN or CAP_NET_BIND_SERVICE, or ALL")]
pub struct CapabilityError(String);

/// A Linux capability (`CAP_NET_ADMIN`, also written `NET_ADMIN`) or `ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    All,
    /// The capability's number (its bit in the capability sets).
    Number(u8),
}

impl Capability {
    /// The canonical name: `ALL` or `CAP_…`.
    pub fn name(&self) -> &'static str {
        match self {
            Capability::All => "ALL",
            Capability::Number(n) => CAPABILITIES[usize::from(*n)],
        }
    }

    /// Every capability the kernel knows, by number.
    pub fn every() -> impl Iterator<Item = Capability> {
        (0..CAPABILITIES.len() as u8).map(Capability::Number)
    }
}

impl FromStr for Capability {
    type Err = CapabilityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        if upper == "ALL" {
            return Ok(Capability::All);
        }
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        CAPABILITIES
            .iter()
            .position(|c| *c == full)
            .map(|n| Capability::Number(n as u8))
            .ok_or_else(|| CapabilityError(s.to_string()))
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names() {
        let cases = [
            ("NET_ADMIN", "CAP_NET_ADMIN"),
            ("cap_net_raw", "CAP_NET_RAW"),
            ("all", "ALL"),
            ("CAP_CHECKPOINT_RESTORE", "CAP_CHECKPOINT_RESTORE"),
        ];
        for (text, name) in cases {
            assert_eq!(text.parse::<Capability>().unwrap().name(), name);
        }
        assert_eq!(
            "CHOWN".parse::<Capability>().unwrap(),
            Capability::Number(0)
        );
        assert_eq!("BPF".parse::<Capability>().unwrap(), Capability::Number(39));
        let err = "NET_ADMINS".parse::<Capability>().unwrap_err().to_string();
        assert!(err.contains("like NET_ADMIN"), "{err}");
        assert_eq!(Capability::every().count(), 41);
    }
}
