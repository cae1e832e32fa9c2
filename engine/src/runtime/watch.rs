//! Following a shim until it exits: the agent's own child (spawned this run) or a shim
//! adopted after an agent restart, through a pidfd so a recycled pid is never waited on.

use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;

use crate::sys;

pub enum ShimWatch {
    /// Spawned by this agent: waiting also reaps it.
    Child(tokio::process::Child),
    /// Re-adopted after a restart: not our child, so only its exit can be seen.
    Adopted(AsyncFd<OwnedFd>),
}

impl ShimWatch {
    /// Adopts the shim `pid` if it is still the process that started at `start_time`.
    pub fn adopt(pid: i32, start_time: u64) -> Option<ShimWatch> {
        let fd = sys::pidfd::pidfd_open(pid).ok()?;
        // Checked after opening the pidfd: from here on the pid cannot be reused under us.
        if sys::process::start_time(pid).ok()? != start_time {
            return None;
        }
        sys::pidfd::async_pidfd(fd).ok().map(ShimWatch::Adopted)
    }

    /// Resolves when the shim has exited.
    pub async fn wait(self) {
        match self {
            ShimWatch::Child(mut child) => {
                let _ = child.wait().await;
            }
            ShimWatch::Adopted(fd) => {
                // A pidfd turns readable once, when the process exits.
                let _ = fd.readable().await;
            }
        }
    }
}
