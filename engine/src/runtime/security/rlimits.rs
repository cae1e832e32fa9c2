//! Resource limits of the container's process. By default a container inherits the limits
//! of its shim (as Docker's containers inherit the daemon's); configured limits are applied
//! but never raised above the current hard limit: many hosts refuse that even to root, and a
//! container must not fail to start over it.

use serde::{Deserialize, Serialize};

use super::{io_text, SecurityError};
use crate::sys;

/// `u64::MAX` is "unlimited" (`RLIM_INFINITY`).
pub const UNLIMITED: u64 = u64::MAX;

/// The limits setrlimit(2) knows, named as in `ulimit`/OCI (`RLIMIT_NOFILE` is `nofile`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

impl Resource {
    pub fn number(self) -> libc::c_int {
        let n = match self {
            Resource::As => libc::RLIMIT_AS,
            Resource::Core => libc::RLIMIT_CORE,
            Resource::Cpu => libc::RLIMIT_CPU,
            Resource::Data => libc::RLIMIT_DATA,
            Resource::Fsize => libc::RLIMIT_FSIZE,
            Resource::Locks => libc::RLIMIT_LOCKS,
            Resource::Memlock => libc::RLIMIT_MEMLOCK,
            Resource::Msgqueue => libc::RLIMIT_MSGQUEUE,
            Resource::Nice => libc::RLIMIT_NICE,
            Resource::Nofile => libc::RLIMIT_NOFILE,
            Resource::Nproc => libc::RLIMIT_NPROC,
            Resource::Rss => libc::RLIMIT_RSS,
            Resource::Rtprio => libc::RLIMIT_RTPRIO,
            Resource::Rttime => libc::RLIMIT_RTTIME,
            Resource::Sigpending => libc::RLIMIT_SIGPENDING,
            Resource::Stack => libc::RLIMIT_STACK,
        };
        n as libc::c_int
    }

    /// `RLIMIT_NOFILE`, for messages.
    pub fn name(self) -> String {
        let json = serde_json::to_value(self).unwrap_or_default();
        format!(
            "RLIMIT_{}",
            json.as_str().unwrap_or("?").to_ascii_uppercase()
        )
    }
}

/// One limit to set: `soft` ≤ `hard`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// The values actually set for a request, given the current hard limit: the hard limit is
/// never raised, and the soft limit never exceeds the hard one.
pub fn clamp(soft: u64, hard: u64, current_hard: u64) -> (u64, u64) {
    let hard = hard.min(current_hard);
    (soft.min(hard), hard)
}

/// Applies every limit of `limits`, clamped with [`clamp`].
pub fn apply(limits: &[Rlimit]) -> Result<(), SecurityError> {
    for l in limits {
        let fail = |e: std::io::Error| SecurityError::Rlimit {
            resource: l.resource.name(),
            reason: io_text(&e),
        };
        let (_, current_hard) = sys::rlimit::get(l.resource.number()).map_err(fail)?;
        let (soft, hard) = clamp(l.soft, l.hard, current_hard);
        sys::rlimit::set(l.resource.number(), soft, hard).map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_raises_the_hard_limit() {
        // Lowering works as asked.
        assert_eq!(clamp(512, 1024, 20_000), (512, 1024));
        // Above the hard limit: capped at it.
        assert_eq!(clamp(1 << 20, 1 << 20, 20_000), (20_000, 20_000));
        assert_eq!(clamp(1024, UNLIMITED, 20_000), (1024, 20_000));
        // The soft limit follows a capped hard limit down.
        assert_eq!(clamp(50_000, 60_000, 20_000), (20_000, 20_000));
        assert_eq!(
            clamp(UNLIMITED, UNLIMITED, UNLIMITED),
            (UNLIMITED, UNLIMITED)
        );
    }

    #[test]
    fn names_and_serde() {
        assert_eq!(Resource::Nofile.name(), "RLIMIT_NOFILE");
        assert_eq!(
            Resource::Nofile.number(),
            libc::RLIMIT_NOFILE as libc::c_int
        );
        let l: Rlimit =
            serde_json::from_str(r#"{"resource":"nproc","soft":10,"hard":20}"#).expect("parse");
        assert_eq!(
            l,
            Rlimit {
                resource: Resource::Nproc,
                soft: 10,
                hard: 20
            }
        );
    }
}
