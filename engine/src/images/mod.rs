//! Images: pull from OCI registries (mirrors, loopback HTTP) or OCI layouts on disk, verify
//! every blob's sha256, store content-addressed under the state dir, and unpack layers
//! (confined, with overlayfs whiteouts) for the runtime to stack.
//!
//! On disk, under the state dir: `content/sha256/<hex>` (verified blobs), `content/tmp/`
//! (downloads in progress, resumable), `layers/<hex of the layer blob>/` (unpacked layers),
//! `layers/tmp/` (unpacks in progress), `images/<sha256 of the reference>.json` (records).

mod auth;
mod commit;
mod config;
mod content;
mod digest;
mod error;
mod fetch;
mod gc;
mod layout;
mod manifest;
mod platform;
mod readahead;
mod record;
mod reference;
mod registry;
mod remote;
mod resolve;
mod store;
pub mod unpack;
mod usage;
mod zstd;

#[cfg(test)]
mod auth_tests;
#[cfg(test)]
mod unpack_tests;

pub use auth::{AuthConfig, AuthError, BasicAuth, Credentials};
pub use config::ImageConfig;
pub use digest::Digest;
pub use error::{ImageError, Result};
pub use fetch::PullProgress;
pub use gc::{GcReport, InUse};
pub use layout::LocalSource;
pub use platform::Platform;
pub use reference::{normalize_reference, pinned_reference, ImageRef};
pub use registry::{is_loopback_host, RegistryConfig};
pub use store::{Image, ImageInfo, ImageStore, StoreLimits};
pub use usage::StoreUsage;
