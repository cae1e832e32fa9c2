//! The image store: pull (resolve, download, verify, unpack, record) and local lookup.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use oci_client::manifest::{OciDescriptor, OciImageManifest};

use super::auth::AuthConfig;
use super::commit::{PulledLayer, Staged};
use super::config::{self, ImageConfig};
use super::content::{self, Layout};
use super::digest::Digest;
use super::error::{ImageError, Result};
use super::fetch::{fetch_blob, FetchError, Progress, PullProgress};
use super::manifest::{self, Compression, MAX_CONFIG_BYTES};
use super::record::{self, ImageRecord};
use super::reference::ImageRef;
use super::registry::{endpoints_for, EndpointProblem, RegistryConfig};
use super::remote::Remote;
use super::resolve;
use super::unpack::{self, UnpackLimits};

/// Layers downloaded and unpacked at the same time.
const CONCURRENT_LAYERS: usize = 3;

/// A pulled image, ready to be stacked with overlayfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Normalized reference, e.g. `docker.io/library/busybox:1.36`.
    pub reference: String,
    /// Digest of the platform manifest, `sha256:<64 hex>`.
    pub digest: String,
    pub config: ImageConfig,
    /// Unpacked layer directories, LOWEST FIRST (overlayfs `lowerdir=` wants them reversed).
    pub layers: Vec<PathBuf>,
}

/// A recorded image, as `berth images` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub reference: String,
    pub digest: String,
    /// Compressed size of config and layers, in bytes.
    pub size: u64,
    /// Unix seconds of the pull.
    pub pulled_at: u64,
    /// Layer digests, lowest first.
    pub layers: Vec<String>,
}

/// Bounds that protect the host from hostile or oversized images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// A layer may expand to at most this many times its compressed size…
    pub max_expansion_ratio: u64,
    /// …or this many bytes, whichever is larger (small layers of zeros are normal).
    pub expansion_floor: u64,
    /// Bytes always left free on the state dir's filesystem.
    pub reserve_bytes: u64,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_expansion_ratio: 100,
            expansion_floor: 512 * 1024 * 1024,
            reserve_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Verified blobs, unpacked layers and image records under a state dir.
pub struct ImageStore {
    pub(super) layout: Layout,
    pub(super) limits: StoreLimits,
    /// One download or unpack per digest at a time within this process.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Pulls hold it shared; garbage collection holds it exclusively.
    pub(super) gc_lock: tokio::sync::RwLock<()>,
    /// Where registry credentials come from; read at each pull.
    auth: AuthConfig,
}

/// A platform manifest chosen from some source, with what it came from.
pub(super) struct Resolved {
    pub manifest: OciImageManifest,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

/// A layer of the manifest, validated.
#[derive(Clone)]
pub(super) struct LayerDesc {
    pub desc: OciDescriptor,
    pub digest: Digest,
    pub size: u64,
    pub compression: Compression,
}

impl ImageStore {
    /// Open (creating) the store under `state_dir`: `content/sha256`, `content/tmp`,
    /// `layers/`, `layers/tmp`, `images/`.
    pub fn open(state_dir: &Path) -> Result<ImageStore> {
        let layout = Layout {
            root: state_dir.to_path_buf(),
        };
        for dir in [
            layout.blobs(),
            layout.content_tmp(),
            layout.layers(),
            layout.layers_tmp(),
            layout.images(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| ImageError::Store {
                op: "create",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(ImageStore {
            layout,
            limits: StoreLimits::default(),
            locks: Mutex::new(HashMap::new()),
            gc_lock: tokio::sync::RwLock::new(()),
            auth: AuthConfig::default(),
        })
    }

    /// Pull with these registry credentials (default: anonymous everywhere).
    pub fn with_auth(mut self, auth: AuthConfig) -> ImageStore {
        self.auth = auth;
        self
    }

    /// Replace the default [`StoreLimits`].
    pub fn with_limits(mut self, limits: StoreLimits) -> ImageStore {
        self.limits = limits;
        self
    }

    /// The state dir this store lives in.
    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    /// Pull `reference` (Docker syntax) through the configured mirrors, verify every blob,
    /// unpack the layers and record the image. Blobs and layers already present are reused.
    pub async fn pull(
        &self,
        reference: &str,
        registries: &RegistryConfig,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<Image> {
        if let Some(source) = super::layout::LocalSource::parse(reference) {
            let _shared = self.gc_lock.read().await;
            return super::layout::pull_local(self, reference, source, progress).await;
        }
        let image = ImageRef::parse(reference).map_err(|reason| ImageError::Reference {
            reference: reference.to_string(),
            reason,
        })?;
        let name = image.to_string();
        let endpoints = endpoints_for(registries, &image.registry).map_err(|p| match p {
            EndpointProblem::Invalid { endpoint, reason } => ImageError::Endpoint {
                reference: name.clone(),
                endpoint,
                reason,
            },
            EndpointProblem::Insecure { endpoint, host } => ImageError::InsecureEndpoint {
                reference: name.clone(),
                endpoint,
                host,
            },
        })?;
        let _shared = self.gc_lock.read().await;
        let mut attempts = Vec::new();
        for endpoint in &endpoints {
            // Each endpoint (a mirror, the registry) gets its own host's credentials only.
            let credentials = match self.auth.credentials_for(&endpoint.host) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(image = %name, registry = %endpoint.host, error = %e, "registry credentials unreadable");
                    attempts.push((endpoint.host.clone(), e.to_string()));
                    continue;
                }
            };
            match resolve::resolve(endpoint, &image, &name, credentials).await {
                Ok((remote, resolved)) => {
                    tracing::info!(image = %name, registry = %endpoint.host, digest = %resolved.digest, "resolved image");
                    return self
                        .complete(&name, resolved, &BlobSource::Registry(&remote), progress)
                        .await;
                }
                Err(resolve::ResolveFailure::Next(cause)) => {
                    tracing::warn!(image = %name, registry = %endpoint.host, error = %cause, "registry endpoint failed");
                    attempts.push((endpoint.host.clone(), cause));
                }
                Err(resolve::ResolveFailure::Fatal(e)) => return Err(e),
            }
        }
        Err(match attempts.len() {
            1 => {
                let (registry, cause) = attempts.remove(0);
                ImageError::Registry {
                    reference: name,
                    registry,
                    cause,
                }
            }
            _ => ImageError::AllEndpointsFailed {
                reference: name,
                attempts,
            },
        })
    }

    /// The image recorded for `reference`, without any network access. `None` when it was
    /// never pulled, or when one of its layers is gone (so the caller pulls again).
    pub fn lookup(&self, reference: &str) -> Result<Option<Image>> {
        let name = if super::layout::LocalSource::parse(reference).is_some() {
            reference.to_string()
        } else {
            ImageRef::parse(reference)
                .map_err(|reason| ImageError::Reference {
                    reference: reference.to_string(),
                    reason,
                })?
                .to_string()
        };
        let path = record::record_path(&self.layout, &name);
        let Some(rec) = record::read(&path)? else {
            return Ok(None);
        };
        if rec.reference != name {
            return Err(ImageError::Record {
                path,
                reason: format!("holds {:?}, not {name:?}", rec.reference),
            });
        }
        let mut layers = Vec::new();
        for d in rec.layer_digests(&path)? {
            let dir = self.layout.layer(&d);
            if !dir.is_dir() {
                tracing::info!(image = %name, layer = %d, "recorded layer is missing; the image must be pulled again");
                return Ok(None);
            }
            layers.push(dir);
        }
        Ok(Some(Image {
            reference: rec.reference,
            digest: rec.digest,
            config: rec.config,
            layers,
        }))
    }

    /// Every image recorded in the store, sorted by reference (for `berth images`).
    /// An image recorded under a tag and under its pinned digest is listed once, by its tag.
    pub fn list(&self) -> Result<Vec<ImageInfo>> {
        let records = record::list(&self.layout)?;
        let tagged: std::collections::HashSet<String> = records
            .iter()
            .filter(|(_, r)| !r.reference.contains('@'))
            .map(|(_, r)| r.digest.clone())
            .collect();
        let mut out: Vec<ImageInfo> = records
            .into_iter()
            .filter(|(_, r)| !(r.reference.contains('@') && tagged.contains(&r.digest)))
            .map(|(_, r)| ImageInfo {
                reference: r.reference,
                digest: r.digest,
                size: r.size,
                pulled_at: r.pulled_at,
                layers: r.layers,
            })
            .collect();
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Download config and layers of a resolved manifest, unpack and record the image.
    pub(super) async fn complete(
        &self,
        name: &str,
        resolved: Resolved,
        source: &BlobSource<'_>,
        progress_cb: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<Image> {
        let m = &resolved.manifest;
        let bad_manifest = |reason: String| ImageError::Manifest {
            reference: name.to_string(),
            what: resolved.digest.to_string(),
            reason,
        };
        manifest::check_config_type(&m.config).map_err(bad_manifest)?;
        let config_digest = parse_digest(name, "the image config descriptor", &m.config.digest)?;
        let config_size = manifest::declared_size(&m.config).map_err(bad_manifest)?;
        if config_size > MAX_CONFIG_BYTES {
            return Err(ImageError::Config {
                reference: name.to_string(),
                digest: config_digest.to_string(),
                reason: format!(
                    "declares {config_size} bytes, more than the {MAX_CONFIG_BYTES} allowed"
                ),
            });
        }
        if m.layers.is_empty() {
            return Err(bad_manifest("lists no layers".to_string()));
        }
        let mut layers = Vec::new();
        for l in &m.layers {
            let digest = parse_digest(name, "a layer descriptor", &l.digest)?;
            let compression = manifest::layer_compression(l).map_err(bad_manifest)?;
            let size = manifest::declared_size(l).map_err(bad_manifest)?;
            layers.push(LayerDesc {
                desc: l.clone(),
                digest,
                size,
                compression,
            });
        }

        // Keep the manifest itself: it is what the record's digest names.
        let layout = self.layout.clone();
        let (digest, bytes) = (resolved.digest.clone(), resolved.bytes.clone());
        blocking(move || content::put_verified(&layout, &digest, &bytes).map_err(io::Error::other))
            .await
            .map_err(|source| {
                self.io_err(name, "store manifest in", self.layout.blobs(), source)
            })?;

        self.check_disk_space(name, &config_digest, config_size, &layers)?;

        let total = config_size + layers.iter().map(|l| l.size).sum::<u64>();
        let progress = Progress::new(total, progress_cb);

        let config_path = {
            let _guard = self.lock(&format!("blob:{}", config_digest.hex())).await;
            source
                .fetch(
                    self,
                    name,
                    &m.config,
                    &config_digest,
                    config_size,
                    &progress,
                )
                .await?
        };
        let config_bytes = tokio::fs::read(&config_path)
            .await
            .map_err(|e| self.io_err(name, "read", config_path.clone(), e))?;
        let parsed = config::parse(&config_bytes).map_err(|reason| ImageError::Config {
            reference: name.to_string(),
            digest: config_digest.to_string(),
            reason,
        })?;
        if parsed.diff_ids.len() != layers.len() {
            return Err(ImageError::Config {
                reference: name.to_string(),
                digest: config_digest.to_string(),
                reason: format!(
                    "lists {} layer diff ids but the manifest has {} layers",
                    parsed.diff_ids.len(),
                    layers.len()
                ),
            });
        }

        // Downloads run concurrently; unpacks run in order, each onto the layers below it
        // (a directory a layer only implies takes its metadata from them), overlapping with the
        // downloads still going on.
        let progress = &progress;
        // Collected first: a lazy iterator adapter inside the future makes it non-Send for
        // callers that spawn the pull (rustc's higher-ranked lifetime limitation).
        let jobs: Vec<_> = layers
            .iter()
            .map(|l| self.layer_blob(name, source, l, progress))
            .collect();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Option<PathBuf>>>(CONCURRENT_LAYERS);
        let producer = async move {
            let mut downloads =
                std::pin::pin!(futures_util::stream::iter(jobs).buffered(CONCURRENT_LAYERS));
            while let Some(blob) = downloads.next().await {
                if tx.send(blob).await.is_err() {
                    break;
                }
            }
        };
        let consumer = async {
            let mut pulled: Vec<PulledLayer> = Vec::new();
            for (layer, diff_id) in layers.iter().zip(&parsed.diff_ids) {
                let Some(blob) = rx.recv().await else {
                    break;
                };
                let lowers: Vec<PathBuf> =
                    pulled.iter().map(|l| l.current().to_path_buf()).collect();
                let unpacked = match blob {
                    Ok(blob) => self.unpack_layer(name, layer, blob, diff_id, &lowers).await,
                    Err(e) => Err(e),
                };
                match unpacked {
                    Ok(l) => pulled.push(l),
                    Err(e) => return (pulled, Err(e)),
                }
            }
            (pulled, Ok(()))
        };
        // When an unpack fails, dropping the producer cancels the downloads still running
        // (their partial files stay, to be resumed).
        let (pulled, outcome) =
            match futures_util::future::select(std::pin::pin!(producer), std::pin::pin!(consumer))
                .await
            {
                futures_util::future::Either::Left(((), consumer)) => consumer.await,
                futures_util::future::Either::Right((done, _producer)) => done,
            };
        if let Err(e) = outcome {
            self.discard_layers(pulled).await;
            return Err(e);
        }
        let layer_dirs = self.commit_layers(name, pulled).await?;
        progress.finish();

        let layer_digests: Vec<Digest> = layers.iter().map(|l| l.digest.clone()).collect();
        let rec = ImageRecord::new(
            name.to_string(),
            &resolved.digest,
            &config_digest,
            parsed.config.clone(),
            &layer_digests,
            total,
        );
        // Also under the digest it resolved to (`repo@sha256:…`), so this exact image can be
        // found again offline after the tag moves (a rollback runs it again).
        let mut names = vec![name.to_string()];
        if !name.contains('@') {
            names.extend(super::reference::pinned_reference(
                name,
                &resolved.digest.to_string(),
            ));
        }
        for n in names {
            let mut rec = rec.clone();
            rec.reference = n.clone();
            let path = record::record_path(&self.layout, &n);
            let write_path = path.clone();
            blocking(move || record::write(&write_path, &rec))
                .await
                .map_err(|e| self.io_err(name, "write image record", path, e))?;
        }
        tracing::info!(image = %name, digest = %resolved.digest, layers = layer_dirs.len(), "image ready");
        Ok(Image {
            reference: name.to_string(),
            digest: resolved.digest.to_string(),
            config: parsed.config,
            layers: layer_dirs,
        })
    }

    /// The layer's blob in the content store, or `None` when the layer is unpacked already.
    async fn layer_blob(
        &self,
        name: &str,
        source: &BlobSource<'_>,
        layer: &LayerDesc,
        progress: &Progress<'_>,
    ) -> Result<Option<PathBuf>> {
        if tokio::fs::try_exists(self.layout.layer(&layer.digest))
            .await
            .unwrap_or(false)
        {
            progress.add(layer.size);
            return Ok(None);
        }
        let _guard = self.lock(&format!("blob:{}", layer.digest.hex())).await;
        source
            .fetch(self, name, &layer.desc, &layer.digest, layer.size, progress)
            .await
            .map(Some)
    }

    /// The layer in the store, or unpacked into `layers/tmp/` onto `lowers` (the layers below
    /// it, lowest first) and flushing, for [`ImageStore::commit_layers`]. `blob` is `None` when
    /// the layer was already unpacked.
    async fn unpack_layer(
        &self,
        name: &str,
        layer: &LayerDesc,
        blob: Option<PathBuf>,
        diff_id: &str,
        lowers: &[PathBuf],
    ) -> Result<PulledLayer> {
        let _guard = self.lock(&format!("layer:{}", layer.digest.hex())).await;
        let dir = self.layout.layer(&layer.digest);
        if tokio::fs::try_exists(&dir).await.unwrap_or(false) {
            return Ok(PulledLayer::Present(dir));
        }
        let expected_diff = parse_digest(name, "the image config's diff ids", diff_id)?;
        // `None` means the layer was there when its download was skipped; a concurrent pull
        // cannot remove it (garbage collection waits for pulls), so this is a store edited by hand.
        let blob = blob.unwrap_or_else(|| self.layout.blob(&layer.digest));
        let lowers: Vec<PathBuf> = lowers.iter().rev().cloned().collect();
        let staging = self.layout.layer_staging(&layer.digest);
        let limits = self.unpack_limits(layer)?;
        let (staging2, expected) = (staging.clone(), expected_diff.clone());
        let outcome = blocking(
            move || -> io::Result<std::result::Result<(), UnpackOutcome>> {
                std::fs::create_dir(&staging2)?;
                std::fs::set_permissions(
                    &staging2,
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                )?;
                let stats = match unpack::open_blob(&blob)
                    .and_then(|r| unpack::unpack(r, &staging2, &lowers, limits))
                {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&staging2);
                        return Ok(Err(UnpackOutcome::Failed(e)));
                    }
                };
                if stats.diff_id != expected {
                    let _ = std::fs::remove_dir_all(&staging2);
                    return Ok(Err(UnpackOutcome::DiffMismatch(stats.diff_id)));
                }
                Ok(Ok(()))
            },
        )
        .await
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(&staging);
            self.io_err(name, "unpack layer into", staging.clone(), e)
        })?;
        match outcome {
            // Flushed in the background while the next layer unpacks; renamed into place
            // once all are on disk.
            Ok(()) => Ok(PulledLayer::Staged(Staged::new(staging, dir))),
            Err(UnpackOutcome::Failed(source)) => Err(ImageError::Unpack {
                reference: name.to_string(),
                layer: layer.digest.to_string(),
                source,
            }),
            Err(UnpackOutcome::DiffMismatch(actual)) => Err(ImageError::DigestMismatch {
                reference: name.to_string(),
                what: format!("layer {} uncompressed (diff id)", layer.digest),
                expected: expected_diff.to_string(),
                actual: actual.to_string(),
            }),
        }
    }

    /// How far one layer may expand: its ratio bound, and never past the free disk space.
    fn unpack_limits(&self, layer: &LayerDesc) -> Result<UnpackLimits> {
        let by_ratio = match layer.compression {
            Compression::None => layer.size,
            _ => layer
                .size
                .saturating_mul(self.limits.max_expansion_ratio)
                .max(self.limits.expansion_floor),
        };
        let free = free_bytes(&self.layout.layers()).map_err(|source| ImageError::Store {
            op: "statvfs",
            path: self.layout.layers(),
            source,
        })?;
        Ok(UnpackLimits {
            max_tar_bytes: by_ratio.min(free.saturating_sub(self.limits.reserve_bytes)),
        })
    }

    /// Refuse a pull that cannot fit: the blobs still to download, plus the layers still to
    /// unpack (estimated at twice their compressed size when compressed).
    fn check_disk_space(
        &self,
        name: &str,
        config_digest: &Digest,
        config_size: u64,
        layers: &[LayerDesc],
    ) -> Result<()> {
        let mut needed = 0u64;
        if !self.layout.blob(config_digest).exists() {
            needed += config_size;
        }
        for l in layers {
            if self.layout.layer(&l.digest).exists() {
                continue;
            }
            if !self.layout.blob(&l.digest).exists() {
                needed += l.size;
            }
            needed += match l.compression {
                Compression::None => l.size,
                _ => l.size.saturating_mul(2),
            };
        }
        let free = free_bytes(&self.layout.root).map_err(|source| ImageError::Store {
            op: "statvfs",
            path: self.layout.root.clone(),
            source,
        })?;
        let available = free.saturating_sub(self.limits.reserve_bytes);
        if needed > available {
            return Err(ImageError::DiskFull {
                reference: name.to_string(),
                path: self.layout.root.clone(),
                needed,
                available,
            });
        }
        Ok(())
    }

    /// Serialize work on one digest within this process.
    pub(super) async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let mutex = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Drop entries nobody holds or waits for.
            map.retain(|_, m| Arc::strong_count(m) > 1);
            map.entry(key.to_string()).or_default().clone()
        };
        mutex.lock_owned().await
    }

    pub(super) fn io_err(
        &self,
        name: &str,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    ) -> ImageError {
        ImageError::Io {
            reference: name.to_string(),
            op,
            path,
            source,
        }
    }
}

enum UnpackOutcome {
    Failed(unpack::UnpackError),
    DiffMismatch(Digest),
}

/// Where blobs come from: a registry endpoint, or an OCI layout on disk.
pub(super) enum BlobSource<'a> {
    Registry(&'a Remote),
    Layout(&'a super::layout::OciLayoutDir),
}

impl BlobSource<'_> {
    /// Put the blob into the content store (verified), unless it is there already.
    async fn fetch(
        &self,
        store: &ImageStore,
        name: &str,
        desc: &OciDescriptor,
        digest: &Digest,
        size: u64,
        progress: &Progress<'_>,
    ) -> Result<PathBuf> {
        match self {
            BlobSource::Registry(remote) => {
                fetch_blob(remote, &store.layout, desc, digest, size, progress)
                    .await
                    .map_err(|e| match e {
                        FetchError::Registry(reason) => ImageError::Blob {
                            reference: name.to_string(),
                            digest: digest.to_string(),
                            registry: remote.endpoint.host.clone(),
                            reason,
                        },
                        FetchError::Mismatch { expected, actual } => ImageError::DigestMismatch {
                            reference: name.to_string(),
                            what: format!("blob {digest}"),
                            expected,
                            actual,
                        },
                        FetchError::TooLong { declared } => ImageError::Blob {
                            reference: name.to_string(),
                            digest: digest.to_string(),
                            registry: remote.endpoint.host.clone(),
                            reason: format!(
                                "the registry sent more than the declared {declared} bytes"
                            ),
                        },
                        FetchError::Io { op, path, source } => store.io_err(name, op, path, source),
                    })
            }
            BlobSource::Layout(dir) => dir.import_blob(store, name, digest, size, progress).await,
        }
    }
}

pub(super) fn parse_digest(name: &str, what: &str, digest: &str) -> Result<Digest> {
    Digest::parse(digest).ok_or_else(|| ImageError::InvalidDigest {
        reference: name.to_string(),
        what: what.to_string(),
        digest: digest.to_string(),
    })
}

/// Free bytes for an unprivileged writer (root may use a little more).
pub(super) fn free_bytes(path: &Path) -> io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// Run blocking filesystem work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking task failed: {e}")))?
}
