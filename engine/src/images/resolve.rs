//! Resolving a reference to one platform manifest: verify the manifest a tag or digest names,
//! and pick this host's platform when it is an index.

use super::auth::Credentials;
use super::digest::Digest;
use super::error::{ImageError, Result};
use super::manifest::{self, Manifest};
use super::platform::{self, Platform};
use super::reference::ImageRef;
use super::registry::Endpoint;
use super::remote::Remote;
use super::store::{parse_digest, Resolved};

/// Why resolving at one endpoint failed: try the next one, or stop.
pub(super) enum ResolveFailure {
    Next(String),
    Fatal(ImageError),
}

/// Resolve `image` at one endpoint (with its credentials, if any) to a platform manifest.
pub(super) async fn resolve(
    endpoint: &Endpoint,
    image: &ImageRef,
    name: &str,
    credentials: Option<Credentials>,
) -> std::result::Result<(Remote, Resolved), ResolveFailure> {
    let remote = Remote::connect(endpoint, image, credentials)
        .await
        .map_err(ResolveFailure::Next)?;
    let wanted = image.manifest_ref();
    let raw = remote
        .manifest(&wanted)
        .await
        .map_err(ResolveFailure::Next)?;
    let resolved = resolve_manifest(
        name,
        &wanted,
        image.digest.as_ref(),
        raw.bytes,
        raw.content_type.as_deref(),
        &Platform::host(),
    )
    .map_err(ResolveFailure::Fatal)?;
    match resolved {
        Step::Done(r) => Ok((remote, *r)),
        Step::Fetch { digest, media_type } => {
            let raw = remote
                .manifest(&digest.to_string())
                .await
                .map_err(ResolveFailure::Next)?;
            let child = resolve_child(name, &digest, raw.bytes, Some(&media_type))
                .map_err(ResolveFailure::Fatal)?;
            Ok((remote, child))
        }
    }
}

/// The next step after reading the manifest a reference names.
pub(super) enum Step {
    Done(Box<Resolved>),
    /// An index: fetch the platform manifest with this digest.
    Fetch {
        digest: Digest,
        media_type: String,
    },
}

/// Verify a top-level manifest (against a pinned digest) and pick the platform from an index.
pub(super) fn resolve_manifest(
    name: &str,
    wanted: &str,
    pinned: Option<&Digest>,
    bytes: Vec<u8>,
    content_type: Option<&str>,
    host: &Platform,
) -> Result<Step> {
    let digest = Digest::of(&bytes);
    if let Some(pinned) = pinned {
        if &digest != pinned {
            return Err(ImageError::DigestMismatch {
                reference: name.to_string(),
                what: "manifest".to_string(),
                expected: pinned.to_string(),
                actual: digest.to_string(),
            });
        }
    }
    let parsed = manifest::parse(&bytes, content_type).map_err(|reason| ImageError::Manifest {
        reference: name.to_string(),
        what: wanted.to_string(),
        reason,
    })?;
    match parsed {
        Manifest::Image(manifest) => Ok(Step::Done(Box::new(Resolved {
            manifest: *manifest,
            digest,
            bytes,
        }))),
        Manifest::Index(index) => {
            let entry =
                platform::select(&index.manifests, host).ok_or_else(|| ImageError::NoPlatform {
                    reference: name.to_string(),
                    wanted: host.to_string(),
                    offered: platform::offered(&index.manifests),
                })?;
            let digest = parse_digest(name, "the image index", &entry.digest)?;
            Ok(Step::Fetch {
                digest,
                media_type: entry.media_type.clone(),
            })
        }
    }
}

/// Verify a platform manifest fetched by digest from an index.
pub(super) fn resolve_child(
    name: &str,
    digest: &Digest,
    bytes: Vec<u8>,
    media_type: Option<&str>,
) -> Result<Resolved> {
    let actual = Digest::of(&bytes);
    if &actual != digest {
        return Err(ImageError::DigestMismatch {
            reference: name.to_string(),
            what: format!("manifest {digest}"),
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    match manifest::parse(&bytes, media_type) {
        Ok(Manifest::Image(manifest)) => Ok(Resolved {
            manifest: *manifest,
            digest: digest.clone(),
            bytes,
        }),
        Ok(Manifest::Index(_)) => Err(ImageError::Manifest {
            reference: name.to_string(),
            what: digest.to_string(),
            reason: "is an index inside an index, which berth does not follow".to_string(),
        }),
        Err(reason) => Err(ImageError::Manifest {
            reference: name.to_string(),
            what: digest.to_string(),
            reason,
        }),
    }
}
