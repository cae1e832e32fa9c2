//! Images from disk for air-gapped devices: `oci-layout:/path[:tag|@sha256:…]` (an OCI image
//! layout directory) and `oci-archive:/path.tar[:tag|@sha256:…]` (the same, as a tar). Every
//! blob is verified exactly like a registry download.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_client::manifest::OciImageIndex;

use super::content::Layout;
use super::digest::{Digest, HashingWriter};
use super::error::{ImageError, Result};
use super::fetch::{Progress, PullProgress};
use super::manifest::MAX_MANIFEST_BYTES;
use super::platform::Platform;
use super::resolve::{resolve_child, resolve_manifest, Step};
use super::store::{blocking, parse_digest, BlobSource, Image, ImageStore};
use super::unpack::clean_path;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A parsed `oci-layout:` / `oci-archive:` reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalSource {
    pub archive: bool,
    pub path: PathBuf,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl LocalSource {
    /// `None` when `reference` is not a local source (it is then a registry reference).
    pub fn parse(reference: &str) -> Option<LocalSource> {
        let (archive, rest) = if let Some(r) = reference.strip_prefix("oci-layout:") {
            (false, r)
        } else if let Some(r) = reference.strip_prefix("oci-archive:") {
            (true, r)
        } else {
            return None;
        };
        let (path, tag, digest) = if let Some((p, d)) = rest.rsplit_once('@') {
            (p, None, Some(d.to_string()))
        } else {
            match rest.rsplit_once(':') {
                Some((p, t)) if !t.contains('/') && !t.is_empty() => (p, Some(t.to_string()), None),
                _ => (rest, None, None),
            }
        };
        Some(LocalSource {
            archive,
            path: PathBuf::from(path),
            tag,
            digest,
        })
    }

    fn kind(&self) -> &'static str {
        if self.archive {
            "oci-archive"
        } else {
            "oci-layout"
        }
    }
}

/// An OCI image layout directory on disk.
pub struct OciLayoutDir {
    root: PathBuf,
}

/// Removes an extracted archive when the pull ends, however it ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn local_err(name: &str, source: &LocalSource, reason: impl Into<String>) -> ImageError {
    ImageError::Local {
        reference: name.to_string(),
        kind: source.kind(),
        path: source.path.clone(),
        reason: reason.into(),
    }
}

/// Pull from an `oci-layout:` / `oci-archive:` source.
pub(super) async fn pull_local(
    store: &ImageStore,
    reference: &str,
    source: LocalSource,
    progress: &(dyn Fn(PullProgress) + Send + Sync),
) -> Result<Image> {
    let name = reference.to_string();
    if !source.path.is_absolute() {
        return Err(local_err(&name, &source, "the path must be absolute"));
    }
    let (dir, _cleanup) = if source.archive {
        let tmp = Layout::temp_in(&store.layout.content_tmp(), "archive");
        let cleanup = TempDir(tmp.clone());
        let archive = source.path.clone();
        let tmp2 = tmp.clone();
        blocking(move || extract_archive(&archive, &tmp2))
            .await
            .map_err(|e| local_err(&name, &source, format!("read the archive: {e}")))?;
        (OciLayoutDir { root: tmp }, Some(cleanup))
    } else {
        (
            OciLayoutDir {
                root: source.path.clone(),
            },
            None,
        )
    };

    let layout_file = dir.root.join("oci-layout");
    let version = read_small(&layout_file, 4096).map_err(|e| {
        local_err(
            &name,
            &source,
            format!("read oci-layout: {e} (hint: is this an OCI image layout?)"),
        )
    })?;
    if !String::from_utf8_lossy(&version).contains("imageLayoutVersion") {
        return Err(local_err(
            &name,
            &source,
            "oci-layout has no imageLayoutVersion",
        ));
    }
    let index_bytes = read_small(&dir.root.join("index.json"), MAX_MANIFEST_BYTES)
        .map_err(|e| local_err(&name, &source, format!("read index.json: {e}")))?;
    let index: OciImageIndex = serde_json::from_slice(&index_bytes)
        .map_err(|e| local_err(&name, &source, format!("index.json is not valid: {e}")))?;

    let entry = match (&source.digest, &source.tag) {
        (Some(d), _) => index.manifests.iter().find(|m| &m.digest == d),
        (None, Some(t)) => index.manifests.iter().find(|m| {
            m.annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .is_some_and(|n| n == t)
        }),
        (None, None) if index.manifests.len() == 1 => index.manifests.first(),
        (None, None) => {
            return Err(local_err(
                &name,
                &source,
                format!(
                    "holds {} images; name one with :TAG or @DIGEST",
                    index.manifests.len()
                ),
            ))
        }
    };
    let (wanted_digest, media_type) = match (entry, &source.digest) {
        (Some(e), _) => (e.digest.clone(), Some(e.media_type.clone())),
        // A digest not listed in index.json may still be a blob of the layout.
        (None, Some(d)) => (d.clone(), None),
        (None, None) => {
            let tags: Vec<&str> = index
                .manifests
                .iter()
                .filter_map(|m| m.annotations.as_ref()?.get(REF_NAME).map(String::as_str))
                .collect();
            return Err(local_err(
                &name,
                &source,
                format!(
                    "has no image tagged {:?}; it has {}",
                    source.tag.as_deref().unwrap_or_default(),
                    if tags.is_empty() {
                        "no tags".to_string()
                    } else {
                        tags.join(", ")
                    }
                ),
            ));
        }
    };
    let digest = parse_digest(&name, "index.json", &wanted_digest)?;
    let bytes = dir
        .read_blob_small(&digest)
        .map_err(|e| local_err(&name, &source, format!("read manifest {digest}: {e}")))?;
    let resolved = match resolve_manifest(
        &name,
        &digest.to_string(),
        Some(&digest),
        bytes,
        media_type.as_deref(),
        &Platform::host(),
    )? {
        Step::Done(r) => *r,
        Step::Fetch { digest, media_type } => {
            let bytes = dir
                .read_blob_small(&digest)
                .map_err(|e| local_err(&name, &source, format!("read manifest {digest}: {e}")))?;
            resolve_child(&name, &digest, bytes, Some(&media_type))?
        }
    };
    store
        .complete(&name, resolved, &BlobSource::Layout(&dir), progress)
        .await
}

impl OciLayoutDir {
    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(d.hex())
    }

    fn read_blob_small(&self, d: &Digest) -> io::Result<Vec<u8>> {
        read_small(&self.blob_path(d), MAX_MANIFEST_BYTES)
    }

    /// Copy a blob into the content store, hashing it on the way; commit only if it matches.
    pub(super) async fn import_blob(
        &self,
        store: &ImageStore,
        name: &str,
        digest: &Digest,
        size: u64,
        progress: &Progress<'_>,
    ) -> Result<PathBuf> {
        let dest = store.layout.blob(digest);
        if dest.exists() {
            progress.add(size);
            return Ok(dest);
        }
        let src = self.blob_path(digest);
        let tmp = Layout::temp_in(&store.layout.content_tmp(), digest.hex());
        let (src2, tmp2, dest2, expected) =
            (src.clone(), tmp.clone(), dest.clone(), digest.clone());
        let copied = blocking(move || {
            let result = (|| {
                let mut input = open_regular(&src2)?;
                let out = File::create(&tmp2)?;
                let mut w = HashingWriter {
                    inner: out,
                    hasher: super::digest::Hasher::new(),
                };
                // One byte more than declared tells a longer file from an exact one.
                io::copy(&mut (&mut input).take(size + 1), &mut w)?;
                w.inner.flush()?;
                w.inner.sync_all()?;
                let len = w.hasher.len();
                Ok::<_, io::Error>((w.hasher.finish(), len))
            })();
            match result {
                Ok((actual, len)) if len == size && actual == expected => {
                    fs::rename(&tmp2, &dest2)?;
                    Ok(Ok(()))
                }
                Ok((actual, len)) => {
                    let _ = fs::remove_file(&tmp2);
                    Ok(Err((actual, len)))
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp2);
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| store.io_err(name, "import blob", src.clone(), e))?;
        match copied {
            Ok(()) => {
                progress.add(size);
                Ok(dest)
            }
            Err((_, len)) if len != size => Err(ImageError::Blob {
                reference: name.to_string(),
                digest: digest.to_string(),
                registry: self.root.display().to_string(),
                reason: format!(
                    "is {}{len} bytes, the manifest declares {size}",
                    if len > size { "more than " } else { "" }
                ),
            }),
            Err((actual, _)) => Err(ImageError::DigestMismatch {
                reference: name.to_string(),
                what: format!("blob {digest}"),
                expected: digest.to_string(),
                actual: actual.to_string(),
            }),
        }
    }
}

/// Open a regular file without following a final symlink or blocking on a FIFO.
fn open_regular(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(f)
}

fn read_small(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let f = open_regular(path)?;
    let mut out = Vec::new();
    f.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {limit} bytes", path.display()),
        ));
    }
    Ok(out)
}

/// Extract the layout files of an OCI archive (`oci-layout`, `index.json`,
/// `blobs/sha256/<hex>`) into `dest`; anything else in the tar is ignored, so nothing is
/// written outside `dest`.
fn extract_archive(archive: &Path, dest: &Path) -> io::Result<()> {
    fs::create_dir_all(dest.join("blobs").join("sha256"))?;
    let file = open_regular(archive)?;
    let reader: Box<dyn Read> = {
        let mut magic = [0u8; 2];
        let mut probe = open_regular(archive)?;
        let n = probe.read(&mut magic)?;
        if n == 2 && magic == [0x1f, 0x8b] {
            Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file)))
        } else {
            Box::new(io::BufReader::new(file))
        }
    };
    let mut tar = tar::Archive::new(reader);
    for entry in tar.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let Ok(rel) = clean_path(&entry.path()?) else {
            continue;
        };
        let target = match rel.to_str() {
            Some("oci-layout") | Some("index.json") => dest.join(&rel),
            Some(p) => match p
                .strip_prefix("blobs/sha256/")
                .and_then(|h| Digest::parse(&format!("sha256:{h}")))
            {
                Some(d) => dest.join("blobs").join("sha256").join(d.hex()),
                None => continue,
            },
            None => continue,
        };
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&target)?;
        io::copy(&mut entry, &mut out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_local_references() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(LocalSource::parse("docker.io/library/busybox"), None);
        assert_eq!(
            LocalSource::parse("oci-layout:/media/usb/layout:1.36"),
            Some(LocalSource {
                archive: false,
                path: "/media/usb/layout".into(),
                tag: Some("1.36".into()),
                digest: None
            })
        );
        assert_eq!(
            LocalSource::parse(&format!("oci-archive:/srv/img.tar@{d}")),
            Some(LocalSource {
                archive: true,
                path: "/srv/img.tar".into(),
                tag: None,
                digest: Some(d.clone())
            })
        );
        assert_eq!(
            LocalSource::parse("oci-layout:/srv/a:b/layout"),
            Some(LocalSource {
                archive: false,
                path: "/srv/a:b/layout".into(),
                tag: None,
                digest: None
            })
        );
    }
}
