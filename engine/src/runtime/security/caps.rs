//! The capability set a container keeps: Docker's default set, `add`/`drop` relative to it
//! (with `ALL`), and `privileged`. In the shim config it is a list of `CAP_…` names.

use std::fmt;

use berth_spec::{Capability, CapabilityChanges};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Capability numbers (capabilities(7)) the runtime refers to by name.
pub mod number {
    pub const CHOWN: u8 = 0;
    pub const DAC_OVERRIDE: u8 = 1;
    pub const DAC_READ_SEARCH: u8 = 2;
    pub const FOWNER: u8 = 3;
    pub const FSETID: u8 = 4;
    pub const KILL: u8 = 5;
    pub const SETGID: u8 = 6;
    pub const SETUID: u8 = 7;
    pub const SETPCAP: u8 = 8;
    pub const NET_BIND_SERVICE: u8 = 10;
    pub const NET_ADMIN: u8 = 12;
    pub const NET_RAW: u8 = 13;
    pub const SYS_MODULE: u8 = 16;
    pub const SYS_RAWIO: u8 = 17;
    pub const SYS_CHROOT: u8 = 18;
    pub const SYS_PTRACE: u8 = 19;
    pub const SYS_PACCT: u8 = 20;
    pub const SYS_ADMIN: u8 = 21;
    pub const SYS_BOOT: u8 = 22;
    pub const SYS_NICE: u8 = 23;
    pub const SYS_TIME: u8 = 25;
    pub const SYS_TTY_CONFIG: u8 = 26;
    pub const MKNOD: u8 = 27;
    pub const AUDIT_WRITE: u8 = 29;
    pub const SETFCAP: u8 = 31;
    pub const SYSLOG: u8 = 34;
    pub const PERFMON: u8 = 38;
    pub const BPF: u8 = 39;
}

/// Docker's default capabilities (moby `oci/caps/defaults.go`), which users expect.
pub const DOCKER_DEFAULT: [u8; 14] = [
    number::CHOWN,
    number::DAC_OVERRIDE,
    number::FSETID,
    number::FOWNER,
    number::MKNOD,
    number::NET_RAW,
    number::SETGID,
    number::SETUID,
    number::SETFCAP,
    number::SETPCAP,
    number::NET_BIND_SERVICE,
    number::SYS_CHROOT,
    number::KILL,
    number::AUDIT_WRITE,
];

/// A set of capabilities, one bit per capability number (the kernel's own layout).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CapSet(u64);

impl CapSet {
    pub const EMPTY: CapSet = CapSet(0);

    pub const fn from_bits(bits: u64) -> CapSet {
        CapSet(bits)
    }

    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Docker's default set: `0x00000000a80425fb` in `/proc/PID/status`.
    pub fn docker_default() -> CapSet {
        DOCKER_DEFAULT.iter().fold(CapSet::EMPTY, |s, c| s.with(*c))
    }

    /// Every capability berth knows a name for (the kernel may know fewer).
    pub fn all() -> CapSet {
        Capability::every().fold(CapSet::EMPTY, |s, c| s.with_capability(c))
    }

    /// Capabilities numbered `0..=last` (what the running kernel knows).
    pub fn up_to(last: u32) -> CapSet {
        if last >= 63 {
            CapSet(u64::MAX)
        } else {
            CapSet((1u64 << (last + 1)) - 1)
        }
    }

    pub fn contains(self, cap: u8) -> bool {
        cap < 64 && self.0 & (1 << cap) != 0
    }

    pub fn with(self, cap: u8) -> CapSet {
        if cap < 64 {
            CapSet(self.0 | 1 << cap)
        } else {
            self
        }
    }

    pub fn without(self, cap: u8) -> CapSet {
        if cap < 64 {
            CapSet(self.0 & !(1 << cap))
        } else {
            self
        }
    }

    pub fn intersect(self, other: CapSet) -> CapSet {
        CapSet(self.0 & other.0)
    }

    fn with_capability(self, cap: Capability) -> CapSet {
        match cap {
            Capability::All => CapSet::all(),
            Capability::Number(n) => self.with(n),
        }
    }

    fn without_capability(self, cap: Capability) -> CapSet {
        match cap {
            Capability::All => CapSet::EMPTY,
            Capability::Number(n) => self.without(n),
        }
    }

    /// The container's set from a manifest, with Docker's rules: `add: [ALL]` is every
    /// capability except those dropped; `drop: [ALL]` is exactly the added ones; otherwise
    /// the default set minus `drop`, plus `add` (a name in both is kept).
    pub fn from_changes(changes: &CapabilityChanges) -> CapSet {
        let has_all = |list: &[Capability]| list.contains(&Capability::All);
        if has_all(&changes.add) {
            // Docker drops only named capabilities here: `drop: [ALL]` does not undo `add: [ALL]`.
            changes.drop.iter().fold(CapSet::all(), |s, c| match c {
                Capability::All => s,
                Capability::Number(n) => s.without(*n),
            })
        } else if has_all(&changes.drop) {
            changes
                .add
                .iter()
                .fold(CapSet::EMPTY, |s, c| s.with_capability(*c))
        } else {
            let kept = changes
                .drop
                .iter()
                .fold(CapSet::docker_default(), |s, c| s.without_capability(*c));
            changes.add.iter().fold(kept, |s, c| s.with_capability(*c))
        }
    }

    /// The capabilities in the set, by number.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        (0..64u8).filter(move |c| self.contains(*c))
    }

    /// `CAP_…` names, in number order; a number berth has no name for is written `CAP_<n>`.
    pub fn names(self) -> Vec<String> {
        let known = CapSet::all();
        self.iter()
            .map(|c| {
                if known.contains(c) {
                    Capability::Number(c).name().to_string()
                } else {
                    format!("CAP_{c}")
                }
            })
            .collect()
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CapSet({:#018x}: {})", self.0, self.names().join(","))
    }
}

impl Serialize for CapSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for CapSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut set = CapSet::EMPTY;
        for name in names {
            let cap = match name.strip_prefix("CAP_").and_then(|n| n.parse::<u8>().ok()) {
                Some(n) => Capability::Number(n),
                None => name
                    .parse::<Capability>()
                    .map_err(serde::de::Error::custom)?,
            };
            set = set.with_capability(cap);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> Vec<Capability> {
        names
            .iter()
            .map(|n| n.parse().expect("capability name"))
            .collect()
    }

    fn changes(add: &[&str], drop: &[&str]) -> CapabilityChanges {
        CapabilityChanges {
            add: caps(add),
            drop: caps(drop),
        }
    }

    #[test]
    fn docker_default_mask() {
        // The value Docker containers show as CapBnd/CapPrm/CapEff.
        assert_eq!(CapSet::docker_default().bits(), 0x0000_0000_a804_25fb);
        assert_eq!(
            CapSet::from_changes(&CapabilityChanges::default()),
            CapSet::docker_default()
        );
    }

    #[test]
    fn add_and_drop_relative_to_default() {
        let set = CapSet::from_changes(&changes(
            &["NET_ADMIN", "sys_ptrace"],
            &["NET_RAW", "CAP_MKNOD"],
        ));
        assert_eq!(
            set.bits(),
            (0xa804_25fb | 1 << 12 | 1 << 19) & !(1 << 13 | 1 << 27)
        );
        assert!(set.contains(number::NET_ADMIN) && !set.contains(number::NET_RAW));
        // A name in both lists is kept, as in Docker.
        let both = CapSet::from_changes(&changes(&["NET_RAW"], &["NET_RAW"]));
        assert!(both.contains(number::NET_RAW));
    }

    #[test]
    fn all_in_add_or_drop() {
        let everything_but = CapSet::from_changes(&changes(&["ALL"], &["SYS_ADMIN", "NET_ADMIN"]));
        assert_eq!(
            everything_but.bits(),
            CapSet::all().bits() & !(1 << 21 | 1 << 12)
        );
        assert_eq!(CapSet::all().bits(), (1u64 << 41) - 1);
        let only = CapSet::from_changes(&changes(&["CHOWN", "KILL"], &["ALL"]));
        assert_eq!(only.bits(), 1 << 0 | 1 << 5);
        assert_eq!(CapSet::from_changes(&changes(&[], &["ALL"])), CapSet::EMPTY);
        // add ALL wins over drop ALL, like Docker's switch.
        assert_eq!(
            CapSet::from_changes(&changes(&["ALL"], &["ALL"])),
            CapSet::all()
        );
    }

    #[test]
    fn kernel_range_and_names() {
        assert_eq!(CapSet::up_to(40).bits(), (1u64 << 41) - 1);
        assert_eq!(CapSet::up_to(63).bits(), u64::MAX);
        let names = CapSet::EMPTY
            .with(number::KILL)
            .with(number::CHOWN)
            .with(45)
            .names();
        assert_eq!(names, ["CAP_CHOWN", "CAP_KILL", "CAP_45"]);
    }

    #[test]
    fn serde_round_trip() {
        let set = CapSet::docker_default().with(45);
        let json = serde_json::to_string(&set).expect("serialize");
        assert!(
            json.starts_with(r#"["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FOWNER""#),
            "{json}"
        );
        let back: CapSet = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, set);
        let short: CapSet = serde_json::from_str(r#"["net_raw", "KILL"]"#).expect("short names");
        assert_eq!(short.bits(), 1 << 13 | 1 << 5);
        let err = serde_json::from_str::<CapSet>(r#"["NOPE"]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown capability `NOPE`"), "{err}");
    }
}
