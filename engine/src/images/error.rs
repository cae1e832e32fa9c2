//! Errors of the image store. Every message names the image (or the store path) and the cause.

use std::io;
use std::path::PathBuf;

use super::unpack::UnpackError;

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("parse image reference {reference:?}: {reason} (hint: write it as Docker does, e.g. docker.io/library/busybox:1.36)")]
    Reference { reference: String, reason: String },

    #[error("pull {reference}: registry endpoint {endpoint:?} is invalid: {reason}")]
    Endpoint {
        reference: String,
        endpoint: String,
        reason: String,
    },

    #[error("pull {reference}: refusing plain HTTP to {host} ({endpoint}): it is not a loopback address (hint: list \"{host}\" under registries.insecure, or use https://)")]
    InsecureEndpoint {
        reference: String,
        endpoint: String,
        host: String,
    },

    /// One endpoint failed; `cause` is what the registry or the connection said.
    #[error("pull {reference}: {cause} (registry {registry})")]
    Registry {
        reference: String,
        registry: String,
        cause: String,
    },

    /// Every endpoint (mirrors, then the registry) failed.
    #[error("pull {reference}: {}", join_attempts(.attempts))]
    AllEndpointsFailed {
        reference: String,
        /// (registry host, cause), in the order tried.
        attempts: Vec<(String, String)>,
    },

    #[error(
        "pull {reference}: no image for this host's platform {wanted}; the index offers {offered}"
    )]
    NoPlatform {
        reference: String,
        wanted: String,
        offered: String,
    },

    #[error("pull {reference}: manifest {what}: {reason}")]
    Manifest {
        reference: String,
        what: String,
        reason: String,
    },

    #[error(
        "pull {reference}: invalid digest {digest:?} in {what} (want sha256:<64 lowercase hex>)"
    )]
    InvalidDigest {
        reference: String,
        what: String,
        digest: String,
    },

    #[error("pull {reference}: {what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        reference: String,
        what: String,
        expected: String,
        actual: String,
    },

    #[error("pull {reference}: blob {digest}: {reason} (registry {registry})")]
    Blob {
        reference: String,
        digest: String,
        registry: String,
        reason: String,
    },

    #[error("pull {reference}: image config {digest}: {reason}")]
    Config {
        reference: String,
        digest: String,
        reason: String,
    },

    #[error("pull {reference}: unpack layer {layer}: {source}")]
    Unpack {
        reference: String,
        layer: String,
        #[source]
        source: UnpackError,
    },

    #[error("pull {reference}: {op} {}: {source}", .path.display())]
    Io {
        reference: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("pull {reference}: not enough disk space under {}: need {needed} bytes, {available} free (hint: free space or remove unused images)", .path.display())]
    DiskFull {
        reference: String,
        path: PathBuf,
        needed: u64,
        available: u64,
    },

    #[error("pull {reference}: {reason} ({kind} {})", .path.display())]
    Local {
        reference: String,
        kind: &'static str,
        path: PathBuf,
        reason: String,
    },

    #[error("image store: {op} {}: {source}", .path.display())]
    Store {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("image store: record {} is corrupt: {reason} (hint: delete it; the image is pulled again)", .path.display())]
    Record { path: PathBuf, reason: String },
}

fn join_attempts(attempts: &[(String, String)]) -> String {
    attempts
        .iter()
        .map(|(registry, cause)| format!("{cause} (registry {registry})"))
        .collect::<Vec<_>>()
        .join("; ")
}
