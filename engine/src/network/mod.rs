//! Container networking: bridge and macvlan networks, IPAM leases in the state db, a network
//! namespace per container wired with a veth pair (or a macvlan link), published ports, NAT
//! and isolation in one nftables table, an embedded DNS responder per bridge, and the
//! container's `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname`.
//!
//! [`NetworkManager`] is the entry point; the other modules are its parts, one concern each.
//! The design and its decisions are in `docs/network.md`.

pub mod config;
pub mod counters;
pub mod dns;
pub mod etc_files;
pub mod ipam;
mod manager;
pub mod netlink;
pub mod nft;
pub mod ports;
pub mod sysctl;

use std::path::PathBuf;

pub use config::NetworkConfig;
pub use counters::InterfaceCounters;
pub use manager::{AttachRequest, Attachment, NetworkDef, NetworkManager};

use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Netlink(#[from] netlink::NetlinkError),
    #[error(transparent)]
    Nft(#[from] nft::NftError),
    #[error(transparent)]
    Port(#[from] ports::PortError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network {network}: {message}")]
    Invalid { network: String, message: String },
    #[error(
        "network {network} is not ready (hint: the agent log says why it could not be created)"
    )]
    NotReady { network: String },
    #[error(
        "network {network} is still used by {holders} (hint: it is removed once they are gone)"
    )]
    InUse { network: String, holders: String },
    #[error("network task failed: {0}")]
    Task(String),
}

pub type Result<T, E = NetworkError> = std::result::Result<T, E>;
