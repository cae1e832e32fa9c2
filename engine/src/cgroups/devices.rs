//! The device allow-list of a container: deny everything, then allow Docker's default nodes
//! and exactly the devices its manifest names. cgroup v1 through `devices.deny` /
//! `devices.allow`; cgroup v2 through an eBPF device program attached to the cgroup (v2 has
//! no device files). In hybrid mode both: the v1 controller and a program on the unified
//! tree, each enforced by the kernel.

use super::control;
use super::detect::Controller;
use super::error::{Error, Result};
use super::{Cgroup, Mode};
use crate::sys::bpf::{attach_device_filter, DeviceAllow};

/// One rule in the kernel's format: `c 1:3 rwm`, `c 136:* rwm`, `b *:* m`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRule {
    /// 'c' (char) or 'b' (block).
    pub kind: char,
    /// None: any.
    pub major: Option<u64>,
    pub minor: Option<u64>,
    /// A subset of "rwm".
    pub access: String,
}

impl DeviceRule {
    pub fn new(kind: char, major: Option<u64>, minor: Option<u64>, access: &str) -> DeviceRule {
        DeviceRule {
            kind,
            major,
            minor,
            access: access.to_string(),
        }
    }

    /// The same rule for the eBPF device filter (cgroup v2).
    pub fn to_bpf(&self) -> DeviceAllow {
        let kind = match self.kind {
            'b' => Some(1),
            'c' => Some(2),
            _ => None,
        };
        let access = self.access.chars().map(|c| match c {
            'm' => 1,
            'r' => 2,
            'w' => 4,
            _ => 0,
        });
        DeviceAllow {
            kind,
            major: self.major.map(|m| m as u32),
            minor: self.minor.map(|m| m as u32),
            access: access.fold(0, |a, b| a | b),
        }
    }

    pub fn to_kernel(&self) -> String {
        let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "*".into());
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }
}

/// Docker's default allow-list: mknod of anything (the nodes still need to exist to be
/// used), null, zero, full, random, urandom, tty, console, ptmx, the pts devices and tun.
pub fn default_rules() -> Vec<DeviceRule> {
    vec![
        DeviceRule::new('c', None, None, "m"),
        DeviceRule::new('b', None, None, "m"),
        DeviceRule::new('c', Some(1), Some(3), "rwm"),
        DeviceRule::new('c', Some(1), Some(5), "rwm"),
        DeviceRule::new('c', Some(1), Some(7), "rwm"),
        DeviceRule::new('c', Some(1), Some(8), "rwm"),
        DeviceRule::new('c', Some(1), Some(9), "rwm"),
        DeviceRule::new('c', Some(5), Some(0), "rwm"),
        DeviceRule::new('c', Some(5), Some(1), "rwm"),
        DeviceRule::new('c', Some(5), Some(2), "rwm"),
        DeviceRule::new('c', Some(136), None, "rwm"),
        DeviceRule::new('c', Some(10), Some(200), "rwm"),
    ]
}

impl Cgroup {
    /// Replaces the device allow-list with exactly `allow`.
    pub fn set_devices(&self, allow: &[DeviceRule]) -> Result<()> {
        self.check()?;
        if self.mode() != Mode::V2 {
            let dir = self.require(Controller::Devices)?;
            control::write(&dir.join("devices.deny"), "a")?;
            for rule in allow {
                control::write(&dir.join("devices.allow"), &rule.to_kernel())?;
            }
        }
        if let Some(unified) = self.unified_path() {
            let rules: Vec<DeviceAllow> = allow.iter().map(DeviceRule::to_bpf).collect();
            attach_device_filter(unified, &rules).map_err(|source| Error::Write {
                path: unified.to_path_buf(),
                value: "eBPF device filter".into(),
                source,
            })?;
        }
        Ok(())
    }

    /// The allow-list as the kernel reports it (v1 `devices.list`).
    pub fn device_list(&self) -> Result<Vec<String>> {
        self.check()?;
        let dir = self.require(Controller::Devices)?;
        Ok(control::read(&dir.join("devices.list"))?
            .lines()
            .map(str::to_string)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_render_in_kernel_format() {
        assert_eq!(
            DeviceRule::new('c', Some(1), Some(3), "rwm").to_kernel(),
            "c 1:3 rwm"
        );
        assert_eq!(
            DeviceRule::new('c', Some(136), None, "rwm").to_kernel(),
            "c 136:* rwm"
        );
        assert_eq!(DeviceRule::new('b', None, None, "m").to_kernel(), "b *:* m");
    }
}
