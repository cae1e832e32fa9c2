//! Interoperability: the root filesystem berth's layers give under overlayfs equals the tree
//! `umoci unpack` produces for the same multi-layer image (deletions, opaque directories,
//! hardlinks, symlinks, modes, owners, contents). Needs root and overlayfs.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_engine::images::{ImageStore, RegistryConfig};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Build a three-layer image with umoci: files, a hardlink pair, symlinks, odd modes and
/// owners, then deletions, a replaced directory, and an edit through a hardlink.
const BUILD: &str = r#"
set -eu
L=$1/layout B=$1/bundle
umoci init --layout "$L"
umoci new --image "$L:t"
umoci unpack --image "$L:t" "$B" >/dev/null
R=$B/rootfs
mkdir -p "$R/a/b" "$R/opq/sub" "$R/keep"
echo one > "$R/a/file"
ln "$R/a/file" "$R/a/hard"
ln -s a/file "$R/sym"
ln -s /nowhere "$R/dangling"
echo old > "$R/opq/old"
echo old > "$R/opq/sub/deeper"
echo gone > "$R/gone"
echo kept > "$R/keep/kept"
chown 1000:1001 "$R/a/file" "$R/keep"
chmod 0750 "$R/a/b"
chmod 4755 "$R/a/file"
mkfifo "$R/fifo"
umoci repack --refresh-bundle --image "$L:t" "$B" >/dev/null
rm "$R/gone"
rm -rf "$R/opq"
mkdir "$R/opq"
echo new > "$R/opq/new"
echo two >> "$R/a/file"
rm "$R/keep/kept"
echo later > "$R/keep/later"
umoci repack --refresh-bundle --image "$L:t" "$B" >/dev/null
ln -sf /elsewhere "$R/sym"
rmdir "$R/a/b"
mkdir "$R/a/b"
chmod 0700 "$R/a/b"
umoci repack --refresh-bundle --image "$L:t" "$B" >/dev/null
umoci unpack --image "$L:t" "$1/reference" >/dev/null
"#;

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    content: Vec<u8>,
    link: Option<PathBuf>,
    /// Index of the first path sharing this inode (hardlink groups), if any.
    hardlink_of: Option<PathBuf>,
}

fn tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut children: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        children.sort();
        for path in children {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                stack.push(path.clone());
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_fifo() {
                "fifo"
            } else if ft.is_char_device() {
                "char"
            } else {
                "file"
            };
            let hardlink_of = if kind == "file" && meta.nlink() > 1 {
                let first = inodes
                    .entry((meta.dev(), meta.ino()))
                    .or_insert_with(|| rel.clone());
                (first != &rel).then(|| first.clone())
            } else {
                None
            };
            out.insert(
                rel,
                Node {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    content: if kind == "file" {
                        std::fs::read(&path).unwrap()
                    } else {
                        vec![]
                    },
                    link: (kind == "symlink").then(|| std::fs::read_link(&path).unwrap()),
                    hardlink_of,
                },
            );
        }
    }
    out
}

#[tokio::test]
async fn overlay_of_berth_layers_equals_umoci_unpack() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (overlayfs mount, owners)"
    );
    berth_tests::require_tool("umoci", "umoci").unwrap();
    let work = tempfile::Builder::new()
        .prefix("berth-test-images-")
        .tempdir()
        .unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(BUILD)
        .arg("sh")
        .arg(work.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the image with umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let state = work.path().join("state");
    let store = ImageStore::open(&state).unwrap();
    let reference = format!("oci-layout:{}:t", work.path().join("layout").display());
    let image = store
        .pull(&reference, &RegistryConfig::default(), &|_| {})
        .await
        .unwrap();
    assert_eq!(image.layers.len(), 3);

    // overlayfs wants the topmost lower first.
    let lower = image
        .layers
        .iter()
        .rev()
        .map(|l| l.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let (upper, workdir, merged) = (
        work.path().join("upper"),
        work.path().join("work"),
        work.path().join("merged"),
    );
    for d in [&upper, &workdir, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        workdir.display()
    );
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .unwrap_or_else(|e| {
        panic!("mount overlay ({data}): {e} (hint: the kernel needs CONFIG_OVERLAY_FS)")
    });
    let _mounted = Mounted(merged.clone());

    let ours = tree(&merged);
    let theirs = tree(&work.path().join("reference/rootfs"));
    let our_paths: Vec<_> = ours.keys().collect();
    let their_paths: Vec<_> = theirs.keys().collect();
    assert_eq!(our_paths, their_paths, "the same names");
    for (path, node) in &theirs {
        assert_eq!(&ours[path], node, "{}", path.display());
    }
    // The image really exercised what it claims to.
    assert!(!ours.contains_key(Path::new("gone")));
    assert!(!ours.contains_key(Path::new("opq/old")) && !ours.contains_key(Path::new("opq/sub")));
    assert_eq!(ours[Path::new("a/file")].content, b"one\ntwo\n");
    assert_eq!(
        ours[Path::new("a/hard")].hardlink_of.as_deref(),
        Some(Path::new("a/file"))
    );
    assert_eq!(ours[Path::new("a/file")].mode, 0o4755);
    assert_eq!(
        ours[Path::new("sym")].link.as_deref(),
        Some(Path::new("/elsewhere"))
    );
    assert_eq!(ours[Path::new("a/b")].mode, 0o700);
    assert_eq!(
        (ours[Path::new("keep")].uid, ours[Path::new("keep")].gid),
        (1000, 1001)
    );
}
