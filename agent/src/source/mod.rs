//! Where the manifests come from: the manifest directory (watched), or a git repository
//! (fetched every `interval`, verified, checked out into snapshots, switched atomically).

pub mod config;
pub mod fetch;
pub mod signers;
pub mod snapshot;
pub mod status;
pub mod sync;
pub mod verify;
