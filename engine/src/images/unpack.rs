//! Layer extraction confined to one directory, with overlayfs whiteouts.
//!
//! Nothing is ever written outside the layer directory, whatever the archive holds: `..` is
//! refused, absolute paths are made relative (as Docker does), and no write goes through a
//! symlink or hardlink planted by an earlier entry (the CVE-2018-15664 family). The directory
//! is private to one unpack (a fresh staging dir), so checking parents with `lstat` before
//! each write leaves no race for the archive to win.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{makedev, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::digest::{Digest, HashingReader};

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("entry {entry:?} refused: {reason}")]
    Refused { entry: String, reason: String },

    #[error("entry {entry:?}: {op} {}: {source}", .path.display())]
    Io {
        entry: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("read the archive: {0}")]
    Read(#[source] io::Error),

    #[error("open {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("the layer expands to more than {limit} bytes (a decompression bomb, or not enough disk space; hint: free space under the state dir)")]
    TooLarge { limit: u64 },

    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T, E = UnpackError> = std::result::Result<T, E>;

/// Bounds on one layer.
#[derive(Clone, Copy, Debug)]
pub struct UnpackLimits {
    /// Most uncompressed tar bytes accepted; beyond this the unpack fails.
    pub max_tar_bytes: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_tar_bytes: u64::MAX,
        }
    }
}

/// What an unpack saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnpackStats {
    /// sha256 of the uncompressed tar: the layer's diff id.
    pub diff_id: Digest,
    /// Uncompressed tar size.
    pub tar_bytes: u64,
    /// Archive entries processed.
    pub entries: u64,
}

/// Open a layer blob and decompress it by its magic bytes (gzip, zstd or plain tar), on a
/// thread of its own that runs ahead of the reader.
pub fn open_blob(path: &Path) -> Result<Box<dyn Read>> {
    let open_err = |source| UnpackError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(open_err)?;
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..]).map_err(open_err)? {
            0 => break,
            n => got += n,
        }
    }
    let file = File::open(path).map_err(open_err)?;
    let reader = BufReader::with_capacity(256 * 1024, file);
    let decoded: Box<dyn Read + Send> = if got >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if got == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(super::zstd::ZstdFrames::new(reader))
    } else {
        Box::new(reader)
    };
    let ahead = super::readahead::ReadAhead::new(decoded).map_err(open_err)?;
    Ok(Box::new(ahead))
}

/// Unpack the tar stream `reader` into the empty directory `root`. `lowers` are the layers
/// below this one, topmost first: a directory the archive implies without an entry of its own
/// (`a/b/file` without `a/b/`) takes its owner, mode and mtime from them, as it would when
/// the layer is applied onto the image (umoci, containerd) rather than into an empty tree.
pub fn unpack(
    reader: impl Read,
    root: &Path,
    lowers: &[PathBuf],
    limits: UnpackLimits,
) -> Result<UnpackStats> {
    let exceeded = Rc::new(Cell::new(false));
    let limited = LimitReader {
        inner: reader,
        left: limits.max_tar_bytes,
        exceeded: exceeded.clone(),
    };
    let read_err = |e: io::Error| {
        if exceeded.get() {
            UnpackError::TooLarge {
                limit: limits.max_tar_bytes,
            }
        } else {
            UnpackError::Read(e)
        }
    };
    let mut archive = tar::Archive::new(HashingReader::new(limited));
    let mut ex = Extractor {
        root: root.to_path_buf(),
        lowers: lowers.to_vec(),
        dirs: BTreeMap::new(),
        whiteouts: HashSet::new(),
        known_dirs: HashSet::new(),
        copy_buf: vec![0u8; COPY_BUF],
    };
    let mut entries = 0u64;
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        entries += 1;
        ex.entry(&mut entry).map_err(|e| {
            // A write that failed because the limit reader stopped is the limit, not I/O.
            if exceeded.get() {
                UnpackError::TooLarge {
                    limit: limits.max_tar_bytes,
                }
            } else {
                e
            }
        })?;
    }
    ex.finish_dirs()?;
    let (diff_id, tar_bytes) = archive.into_inner().finish().map_err(read_err)?;
    Ok(UnpackStats {
        diff_id,
        tar_bytes,
        entries,
    })
}

struct LimitReader<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for LimitReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One more byte would pass the limit: probe whether the stream really goes on.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.exceeded.set(true);
                    Err(io::Error::other("layer size limit exceeded"))
                }
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Copy an entry's contents into `file` in `buf`-sized writes (a small file in one).
fn copy_contents(entry: &mut impl Read, file: &mut File, buf: &mut [u8]) -> io::Result<()> {
    use std::io::Write;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match entry.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(());
        }
        file.write_all(&buf[..filled])?;
        if filled < buf.len() {
            return Ok(());
        }
    }
}

/// Metadata of one entry.
#[derive(Clone, Debug)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

struct Extractor {
    root: PathBuf,
    /// Layers below, topmost first.
    lowers: Vec<PathBuf>,
    /// Directories whose mode and mtime are set last (writing children changes mtimes).
    dirs: BTreeMap<PathBuf, Meta>,
    /// Whiteouts this layer created, so a directory written over one becomes opaque.
    whiteouts: HashSet<PathBuf>,
    /// Directories inside the root that this unpack made or checked to be real directories on
    /// a path of real directories, so each entry does not stat every component of its parent
    /// again. Exact: whatever `clear` removes leaves it.
    known_dirs: HashSet<PathBuf>,
    /// File contents are copied through it: most files take one write.
    copy_buf: Vec<u8>,
}

const COPY_BUF: usize = 1024 * 1024;

fn refused(entry: &str, reason: impl Into<String>) -> UnpackError {
    UnpackError::Refused {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// Make an archive path relative and plain: leading `/` stripped (Docker does the same),
/// `.` dropped, `..` refused.
pub fn clean_path(raw: &Path) -> std::result::Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Prefix(_) => return Err("has a path prefix"),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err("path contains \"..\""),
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

impl Extractor {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw_path = entry.path().map_err(UnpackError::Read)?.into_owned();
        let rel = clean_path(&raw_path).map_err(|r| refused(&name, r))?;
        let meta = read_meta(entry, &name)?;

        let Some(base) = rel.file_name().map(|b| b.to_string_lossy().into_owned()) else {
            // The archive's root ("./"): only a directory may describe it.
            if kind != EntryType::Directory {
                return Err(refused(&name, "a non-directory entry for the layer root"));
            }
            self.apply_owner_xattrs(&name, &self.root.clone(), &meta)?;
            self.dirs.insert(self.root.clone(), meta);
            return Ok(());
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        if parent_rel
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with(WHITEOUT_PREFIX))
        {
            if rel.components().next().is_some_and(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .starts_with(WHITEOUT_META_PREFIX)
            }) {
                // aufs metadata (.wh..wh.plnk/…): meaningless for overlayfs.
                return Ok(());
            }
            return Err(refused(&name, "a whiteout name used as a directory"));
        }

        if base == WHITEOUT_OPAQUE {
            let dir = self.parent_dir(&name, parent_rel)?;
            xattr::set(&dir, OPAQUE_XATTR, b"y").map_err(|source| UnpackError::Io {
                entry: name.clone(),
                op: "set opaque xattr on",
                path: dir.clone(),
                source,
            })?;
            return Ok(());
        }
        if base.starts_with(WHITEOUT_META_PREFIX) {
            return Ok(());
        }
        if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(&name, parent_rel, hidden, &meta);
        }

        let parent = self.parent_dir(&name, parent_rel)?;
        let path = parent.join(&base);
        let over_whiteout = self.whiteouts.remove(&path);
        let is_dir = kind == EntryType::Directory;
        self.clear(&name, &path, is_dir)?;

        match kind {
            EntryType::Directory => {
                if fs::symlink_metadata(&path).is_err() {
                    fs::create_dir(&path)
                        .map_err(|e| self.io(&name, "create directory", &path, e))?;
                }
                // `clear` left a real directory here, or we just made one.
                self.known_dirs.insert(path.clone());
                self.apply_owner_xattrs(&name, &path, &meta)?;
                if over_whiteout {
                    // The layer deleted the lower directory and made a new one: hide the old content.
                    xattr::set(&path, OPAQUE_XATTR, b"y")
                        .map_err(|e| self.io(&name, "set opaque xattr on", &path, e))?;
                }
                self.dirs.insert(path, meta);
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&path)
                    .map_err(|e| self.io(&name, "create file", &path, e))?;
                copy_contents(entry, &mut file, &mut self.copy_buf)
                    .map_err(|e| self.io(&name, "write file", &path, e))?;
                std::os::unix::fs::fchown(&file, Some(meta.uid), Some(meta.gid))
                    .map_err(|e| self.io(&name, "chown", &path, e))?;
                // After chown, which clears setuid/setgid bits.
                file.set_permissions(fs::Permissions::from_mode(meta.mode))
                    .map_err(|e| self.io(&name, "chmod", &path, e))?;
                drop(file);
                self.apply_xattrs(&name, &path, &meta)?;
                self.set_mtime(&name, &path, meta.mtime)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| refused(&name, "symlink without a target"))?
                    .into_owned();
                // The target is stored, never followed by the unpack, so any value is fine.
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(|e| self.io(&name, "create symlink", &path, e))?;
                self.apply_owner_xattrs(&name, &path, &meta)?;
                self.set_mtime(&name, &path, meta.mtime)?;
            }
            EntryType::Link => {
                let target_raw = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| refused(&name, "hardlink without a target"))?
                    .into_owned();
                let target_rel = clean_path(&target_raw)
                    .map_err(|r| refused(&name, format!("hardlink target {}", r)))?;
                let target = self.existing_inside(&name, &target_rel)?;
                if target == path {
                    return Ok(());
                }
                // linkat(2) without AT_SYMLINK_FOLLOW links the symlink itself, never its target.
                fs::hard_link(&target, &path)
                    .map_err(|e| self.io(&name, "create hardlink", &path, e))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let perm = Mode::from_bits_truncate(meta.mode & 0o7777);
                let result = if kind == EntryType::Fifo {
                    nix::unistd::mkfifo(&path, perm)
                } else {
                    let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                    let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                    let sflag = if kind == EntryType::Char {
                        SFlag::S_IFCHR
                    } else {
                        SFlag::S_IFBLK
                    };
                    mknod(&path, sflag, perm, makedev(major.into(), minor.into()))
                };
                result.map_err(|e| self.io(&name, "create device node", &path, e.into()))?;
                self.apply_owner_xattrs(&name, &path, &meta)?;
                // The node was just made by us, so the path cannot be a planted symlink.
                fs::set_permissions(&path, fs::Permissions::from_mode(meta.mode))
                    .map_err(|e| self.io(&name, "chmod", &path, e))?;
                self.set_mtime(&name, &path, meta.mtime)?;
            }
            other => {
                return Err(refused(
                    &name,
                    format!("unsupported tar entry type {other:?}"),
                ));
            }
        }
        Ok(())
    }

    /// `.wh.NAME` → a 0/0 character device at NAME, unless this layer wrote NAME itself.
    fn whiteout(&mut self, name: &str, parent_rel: &Path, hidden: &str, meta: &Meta) -> Result<()> {
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(refused(name, "whiteout of an invalid name"));
        }
        let parent = self.parent_dir(name, parent_rel)?;
        let path = parent.join(hidden);
        if fs::symlink_metadata(&path).is_ok() {
            // What this layer wrote stays: the whiteout only hides lower layers.
            return Ok(());
        }
        mknod(&path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
            .map_err(|e| self.io(name, "create whiteout", &path, e.into()))?;
        std::os::unix::fs::lchown(&path, Some(meta.uid), Some(meta.gid))
            .map_err(|e| self.io(name, "chown", &path, e))?;
        self.whiteouts.insert(path);
        Ok(())
    }

    /// Resolve (and create) the parent directories of an entry inside the root. Every
    /// component must be a real directory: a symlink there, even one pointing inside, is refused.
    fn parent_dir(&mut self, name: &str, parent_rel: &Path) -> Result<PathBuf> {
        let mut dir = self.root.clone();
        for c in parent_rel.components() {
            dir.push(c);
            if self.known_dirs.contains(&dir) {
                continue;
            }
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {
                    self.known_dirs.insert(dir.clone());
                }
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refused(
                        name,
                        format!("its parent {:?} is a symlink; writing through it could escape the layer", self.rel(&dir)),
                    ));
                }
                Ok(_) => {
                    return Err(refused(
                        name,
                        format!("its parent {:?} is not a directory", self.rel(&dir)),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&dir).map_err(|e| self.io(name, "create directory", &dir, e))?;
                    self.known_dirs.insert(dir.clone());
                    self.whiteouts.remove(&dir);
                    let rel = self.rel(&dir).to_path_buf();
                    match lower_dir(&self.lowers, &rel) {
                        // overlayfs shows the topmost copy of a directory: without the lower
                        // one's metadata, /tmp (1777) would turn 0755 under a new /tmp/x.
                        Some(lower) => {
                            let meta = lower_meta(&lower)
                                .map_err(|e| self.io(name, "stat lower", &lower, e))?;
                            self.apply_owner_xattrs(name, &dir, &meta)?;
                            self.dirs.insert(dir.clone(), meta);
                        }
                        // Otherwise Docker's default: root-owned 0755, whatever the umask.
                        None => fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                            .map_err(|e| self.io(name, "chmod", &dir, e))?,
                    }
                }
                Err(e) => return Err(self.io(name, "stat", &dir, e)),
            }
        }
        Ok(dir)
    }

    /// An existing non-directory inside the root, reached without crossing a symlink.
    fn existing_inside(&self, name: &str, rel: &Path) -> Result<PathBuf> {
        let Some(parent_rel) = rel.parent().filter(|_| rel.file_name().is_some()) else {
            return Err(refused(name, "hardlink to the layer root"));
        };
        let mut dir = self.root.clone();
        for c in parent_rel.components() {
            dir.push(c);
            let problem = match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => continue,
                Ok(m) if m.file_type().is_symlink() => "crosses a symlink",
                Ok(_) => "crosses a non-directory",
                Err(_) => "does not exist in this layer",
            };
            return Err(refused(name, format!("hardlink target {rel:?} {problem}")));
        }
        let target = self.root.join(rel);
        match fs::symlink_metadata(&target) {
            Ok(m) if !m.is_dir() => Ok(target),
            Ok(_) => Err(refused(
                name,
                format!("hardlink target {rel:?} is a directory"),
            )),
            Err(_) => Err(refused(
                name,
                format!("hardlink target {rel:?} does not exist in this layer"),
            )),
        }
    }

    /// Remove what is at `path` so the entry can replace it; a directory stays when the entry
    /// is a directory too (its metadata is updated).
    fn clear(&mut self, name: &str, path: &Path, entry_is_dir: bool) -> Result<()> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                if !entry_is_dir {
                    // Forget it first: whatever happens below, it is no longer a known directory.
                    self.known_dirs.retain(|d| !d.starts_with(path));
                    fs::remove_dir_all(path).map_err(|e| self.io(name, "remove", path, e))?;
                    self.dirs.retain(|d, _| !d.starts_with(path));
                    self.whiteouts.retain(|w| !w.starts_with(path));
                }
                Ok(())
            }
            Ok(_) => fs::remove_file(path).map_err(|e| self.io(name, "remove", path, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(name, "stat", path, e)),
        }
    }

    fn apply_owner_xattrs(&self, name: &str, path: &Path, meta: &Meta) -> Result<()> {
        std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))
            .map_err(|e| self.io(name, "chown", path, e))?;
        self.apply_xattrs(name, path, meta)
    }

    fn apply_xattrs(&self, name: &str, path: &Path, meta: &Meta) -> Result<()> {
        for (key, value) in &meta.xattrs {
            // lsetxattr: never follows a symlink.
            xattr::set(path, key, value).map_err(|e| self.io(name, "set xattr", path, e))?;
        }
        Ok(())
    }

    fn set_mtime(&self, name: &str, path: &Path, mtime: i64) -> Result<()> {
        let t = TimeSpec::new(mtime, 0);
        utimensat(AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| self.io(name, "set mtime of", path, e.into()))
    }

    /// Directory modes and mtimes, deepest first, once nothing more is written into them.
    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (path, meta) in dirs.iter().rev() {
            let name = self.rel(path).display().to_string();
            let dir = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| self.io(&name, "open directory", path, e))?;
            dir.set_permissions(fs::Permissions::from_mode(meta.mode))
                .map_err(|e| self.io(&name, "chmod", path, e))?;
            self.set_mtime(&name, path, meta.mtime)?;
        }
        Ok(())
    }

    fn rel<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }

    fn io(&self, name: &str, op: &'static str, path: &Path, source: io::Error) -> UnpackError {
        UnpackError::Io {
            entry: name.to_string(),
            op,
            path: self.rel(path).to_path_buf(),
            source,
        }
    }
}

/// The directory `rel` as the layers below show it (topmost first), honoring their whiteouts
/// and opaque directories; `None` when they do not show a directory there.
fn lower_dir(lowers: &[PathBuf], rel: &Path) -> Option<PathBuf> {
    let comps: Vec<_> = rel.components().collect();
    'layers: for layer in lowers {
        let mut p = layer.clone();
        for (i, c) in comps.iter().enumerate() {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                // A whiteout, file or symlink here hides any directory further down.
                Ok(_) => return None,
                Err(_) => {
                    // Absent from this layer: an opaque ancestor here hides the lower ones.
                    let mut ancestor = layer.clone();
                    for a in &comps[..i] {
                        ancestor.push(a);
                        if xattr::get(&ancestor, OPAQUE_XATTR).ok().flatten().is_some() {
                            return None;
                        }
                    }
                    continue 'layers;
                }
            }
        }
        return Some(p);
    }
    None
}

/// Owner, mode, mtime and xattrs (but never overlayfs' own) of a lower directory.
fn lower_meta(path: &Path) -> io::Result<Meta> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(path)?;
    let mut xattrs = Vec::new();
    for key in xattr::list(path)? {
        let k = key.to_string_lossy();
        if k.starts_with("trusted.overlay.") || k.starts_with("user.overlay.") {
            continue;
        }
        if let Some(value) = xattr::get(path, &key)? {
            xattrs.push((key, value));
        }
    }
    Ok(Meta {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: m.mtime(),
        xattrs,
    })
}

fn or_zero_if_empty(raw: &[u8], parsed: io::Result<u64>) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        other => other,
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta> {
    let header = entry.header();
    let bad = |what: &str, e: io::Error| refused(name, format!("bad {what} in header: {e}"));
    // An empty numeric field reads as 0, as GNU tar does; garbage is refused.
    let old = header.as_old();
    let mode = or_zero_if_empty(&old.mode, header.mode().map(u64::from))
        .map_err(|e| bad("mode", e))? as u32
        & 0o7777;
    let uid = or_zero_if_empty(&old.uid, header.uid()).map_err(|e| bad("uid", e))?;
    let gid = or_zero_if_empty(&old.gid, header.gid()).map_err(|e| bad("gid", e))?;
    let mtime = or_zero_if_empty(&old.mtime, header.mtime()).map_err(|e| bad("mtime", e))?;
    let uid =
        u32::try_from(uid).map_err(|_| refused(name, format!("uid {uid} is out of range")))?;
    let gid =
        u32::try_from(gid).map_err(|_| refused(name, format!("gid {gid} is out of range")))?;
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(UnpackError::Read)? {
        for ext in exts {
            let ext = ext.map_err(UnpackError::Read)?;
            let Some(key) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                continue;
            };
            // overlayfs' own attributes must come from whiteouts, never from the archive:
            // a forged redirect or opaque flag would change what lower layers show.
            if key.starts_with(b"trusted.overlay.") || key.starts_with(b"user.overlay.") {
                continue;
            }
            xattrs.push((OsString::from_vec(key.to_vec()), ext.value_bytes().to_vec()));
        }
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime: i64::try_from(mtime).unwrap_or(i64::MAX),
        xattrs,
    })
}
