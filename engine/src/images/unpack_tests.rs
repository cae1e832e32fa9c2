//! Unpack tests with hand-built archives: confinement, whiteouts, metadata, limits.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tar::{Builder, EntryType, Header};

use super::digest::Digest;
use super::unpack::{clean_path, open_blob, unpack, UnpackError, UnpackLimits};

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it creates device nodes, trusted.* xattrs and foreign owners); run the tests as root"
    );
}

/// Append an entry with a raw name (the `tar` crate refuses `..` and absolute paths, which
/// is exactly what these tests need to write).
fn raw(b: &mut Builder<Vec<u8>>, name: &str, kind: EntryType, data: &[u8], link: Option<&str>) {
    let mut h = Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn file(b: &mut Builder<Vec<u8>>, name: &str, data: &[u8]) {
    raw(b, name, EntryType::Regular, data, None);
}

fn dir(b: &mut Builder<Vec<u8>>, name: &str) {
    raw(b, name, EntryType::Directory, &[], None);
}

fn build(f: impl FnOnce(&mut Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    f(&mut b);
    b.into_inner().unwrap()
}

/// A sandbox: `outside/` next to the layer root `root/`, to check nothing lands outside.
struct Sandbox {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn sandbox() -> Sandbox {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir(&root).unwrap();
    fs::create_dir(&outside).unwrap();
    Sandbox {
        _tmp: tmp,
        root,
        outside,
    }
}

fn run(s: &Sandbox, tar: &[u8]) -> Result<super::unpack::UnpackStats, UnpackError> {
    unpack(tar, &s.root, &[], UnpackLimits::default())
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn refused_reason(e: UnpackError) -> (String, String) {
    match e {
        UnpackError::Refused { entry, reason } => (entry, reason),
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn clean_path_strips_root_and_refuses_parent() {
    assert_eq!(
        clean_path(Path::new("/etc/passwd")).unwrap(),
        Path::new("etc/passwd")
    );
    assert_eq!(
        clean_path(Path::new("./a//b/./c")).unwrap(),
        Path::new("a/b/c")
    );
    assert_eq!(clean_path(Path::new("./")).unwrap(), Path::new(""));
    assert_eq!(
        clean_path(Path::new("a/../../b")),
        Err("path contains \"..\"")
    );
}

#[test]
fn unpacks_files_dirs_links_and_metadata() {
    require_root();
    let s = sandbox();
    let tar = build(|b| {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Directory);
        h.set_mode(0o750);
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_mtime(1_500_000_000);
        h.set_size(0);
        b.append_data(&mut h, "app/", &[][..]).unwrap();

        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o4755);
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_mtime(1_400_000_000);
        h.set_size(5);
        b.append_pax_extensions([
            ("SCHILY.xattr.user.berth", &b"v1"[..]),
            ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
        ])
        .unwrap();
        b.append_data(&mut h, "app/run", &b"hello"[..]).unwrap();

        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Symlink);
        h.set_mode(0o777);
        h.set_mtime(1_300_000_000);
        h.set_size(0);
        b.append_link(&mut h, "app/link", "/etc/passwd").unwrap();

        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Link);
        h.set_size(0);
        b.append_link(&mut h, "app/hard", "app/run").unwrap();

        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Fifo);
        h.set_mode(0o600);
        h.set_size(0);
        b.append_data(&mut h, "app/fifo", &[][..]).unwrap();

        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Char);
        h.set_mode(0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_size(0);
        b.append_data(&mut h, "dev/null", &[][..]).unwrap();
    });
    let stats = run(&s, &tar).unwrap();
    assert_eq!(stats.diff_id, Digest::of(&tar));
    assert_eq!(stats.tar_bytes, tar.len() as u64);
    assert_eq!(stats.entries, 6);

    let app = fs::symlink_metadata(s.root.join("app")).unwrap();
    assert_eq!(app.permissions().mode() & 0o7777, 0o750);
    assert_eq!((app.uid(), app.gid()), (1000, 1001));
    // Set last, after the children were written.
    assert_eq!(app.mtime(), 1_500_000_000);

    let run_meta = fs::symlink_metadata(s.root.join("app/run")).unwrap();
    assert_eq!(fs::read(s.root.join("app/run")).unwrap(), b"hello");
    assert_eq!(
        run_meta.permissions().mode() & 0o7777,
        0o4755,
        "setuid survives chown"
    );
    assert_eq!((run_meta.uid(), run_meta.gid()), (1000, 1001));
    assert_eq!(run_meta.mtime(), 1_400_000_000);
    assert_eq!(run_meta.nlink(), 2, "app/hard is a hardlink of app/run");
    assert_eq!(
        xattr::get(s.root.join("app/run"), "user.berth").unwrap(),
        Some(b"v1".to_vec())
    );
    assert_eq!(
        xattr::get(s.root.join("app/run"), "trusted.overlay.redirect").unwrap(),
        None,
        "overlay xattrs from the archive are dropped"
    );

    assert_eq!(
        fs::read_link(s.root.join("app/link")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::symlink_metadata(s.root.join("app/link"))
            .unwrap()
            .mtime(),
        1_300_000_000
    );
    assert!(fs::symlink_metadata(s.root.join("app/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let null = fs::symlink_metadata(s.root.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(null.permissions().mode() & 0o777, 0o666);
    // The implicit parent `dev/` is 0755.
    assert_eq!(
        fs::metadata(s.root.join("dev"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
}

#[test]
fn refuses_parent_dir_entries() {
    let s = sandbox();
    let tar = build(|b| file(b, "../outside/evil", b"x"));
    let (entry, reason) = refused_reason(run(&s, &tar).unwrap_err());
    assert_eq!(entry, "../outside/evil");
    assert_eq!(reason, "path contains \"..\"");
    assert!(names(&s.outside).is_empty());
    let tar = build(|b| file(b, "a/../../outside/evil", b"x"));
    assert!(matches!(run(&s, &tar), Err(UnpackError::Refused { .. })));
    assert!(names(&s.outside).is_empty());
}

#[test]
fn absolute_paths_land_inside_the_layer() {
    require_root();
    let s = sandbox();
    let abs = format!("{}/abs", s.outside.display());
    let tar = build(|b| file(b, &abs, b"inside"));
    run(&s, &tar).unwrap();
    assert!(
        names(&s.outside).is_empty(),
        "nothing written at the absolute path"
    );
    let inside = s.root.join(abs.trim_start_matches('/'));
    assert_eq!(fs::read(inside).unwrap(), b"inside");
}

#[test]
fn refuses_writing_through_a_planted_symlink() {
    require_root();
    let s = sandbox();
    let target = s.outside.display().to_string();
    let tar = build(|b| {
        raw(b, "escape", EntryType::Symlink, &[], Some(&target));
        file(b, "escape/pwned", b"x");
    });
    let (entry, reason) = refused_reason(run(&s, &tar).unwrap_err());
    assert_eq!(entry, "escape/pwned");
    assert!(reason.contains("is a symlink"), "{reason}");
    assert!(names(&s.outside).is_empty());

    // Relative symlinks climbing out are refused the same way, and so is a directory entry.
    let s = sandbox();
    let tar = build(|b| {
        raw(b, "up", EntryType::Symlink, &[], Some("../outside"));
        dir(b, "up/newdir");
    });
    assert!(matches!(run(&s, &tar), Err(UnpackError::Refused { .. })));
    assert!(names(&s.outside).is_empty());

    // A later entry named like the symlink replaces the link itself, never its target.
    let s = sandbox();
    fs::write(s.outside.join("victim"), b"keep").unwrap();
    let victim = format!("{}/victim", s.outside.display());
    let tar = build(|b| {
        raw(b, "v", EntryType::Symlink, &[], Some(&victim));
        file(b, "v", b"overwritten");
    });
    run(&s, &tar).unwrap();
    assert_eq!(fs::read(s.outside.join("victim")).unwrap(), b"keep");
    assert_eq!(fs::read(s.root.join("v")).unwrap(), b"overwritten");
}

#[test]
fn refuses_hardlinks_pointing_outside() {
    require_root();
    let s = sandbox();
    fs::write(s.outside.join("secret"), b"secret").unwrap();
    let tar = build(|b| raw(b, "h", EntryType::Link, &[], Some("../outside/secret")));
    let (entry, reason) = refused_reason(run(&s, &tar).unwrap_err());
    assert_eq!(entry, "h");
    assert!(reason.contains(".."), "{reason}");

    // An absolute target is read inside the layer, where it does not exist.
    let s = sandbox();
    fs::write(s.outside.join("secret"), b"secret").unwrap();
    let abs = format!("{}/secret", s.outside.display());
    let tar = build(|b| raw(b, "h", EntryType::Link, &[], Some(&abs)));
    let (_, reason) = refused_reason(run(&s, &tar).unwrap_err());
    assert!(reason.contains("does not exist in this layer"), "{reason}");

    // Through a planted symlink to the outside.
    let s = sandbox();
    fs::write(s.outside.join("secret"), b"secret").unwrap();
    let outside = s.outside.display().to_string();
    let tar = build(|b| {
        raw(b, "s", EntryType::Symlink, &[], Some(&outside));
        raw(b, "h", EntryType::Link, &[], Some("s/secret"));
    });
    let (_, reason) = refused_reason(run(&s, &tar).unwrap_err());
    assert!(reason.contains("crosses a symlink"), "{reason}");
    assert_eq!(fs::metadata(s.outside.join("secret")).unwrap().nlink(), 1);
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    require_root();
    let s = sandbox();
    let tar = build(|b| {
        dir(b, "etc/");
        file(b, "etc/.wh.removed", b"");
        dir(b, "opaque/");
        file(b, "opaque/new", b"n");
        file(b, "opaque/.wh..wh..opq", b"");
        // The same layer wrote `kept`: its whiteout must not remove it.
        file(b, "kept", b"mine");
        file(b, ".wh.kept", b"");
        // Deleted and then written again by this layer: the file wins.
        file(b, ".wh.again", b"");
        file(b, "again", b"new");
        // Deleted and made a directory again: the directory hides the lower one.
        file(b, ".wh.redo", b"");
        dir(b, "redo/");
        // aufs metadata is skipped.
        file(b, ".wh..wh.plnk/123.456", b"");
    });
    run(&s, &tar).unwrap();
    let wh = fs::symlink_metadata(s.root.join("etc/removed")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!s.root.join("etc/.wh.removed").exists());
    assert_eq!(
        xattr::get(s.root.join("opaque"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert_eq!(fs::read(s.root.join("opaque/new")).unwrap(), b"n");
    assert_eq!(fs::read(s.root.join("kept")).unwrap(), b"mine");
    assert_eq!(fs::read(s.root.join("again")).unwrap(), b"new");
    assert!(fs::symlink_metadata(s.root.join("redo")).unwrap().is_dir());
    assert_eq!(
        xattr::get(s.root.join("redo"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert_eq!(
        names(&s.root),
        vec!["again", "etc", "kept", "opaque", "redo"]
    );
}

#[test]
fn refuses_whiteout_tricks() {
    require_root();
    let s = sandbox();
    let tar = build(|b| file(b, ".wh...", b""));
    let (_, reason) = refused_reason(run(&s, &tar).unwrap_err());
    assert_eq!(reason, "whiteout of an invalid name");
    let s = sandbox();
    let tar = build(|b| file(b, ".wh.dir/file", b""));
    let (_, reason) = refused_reason(run(&s, &tar).unwrap_err());
    assert_eq!(reason, "a whiteout name used as a directory");
}

#[test]
fn stops_a_decompression_bomb() {
    require_root();
    let s = sandbox();
    let big = vec![0u8; 4 * 1024 * 1024];
    let tar = build(|b| file(b, "zeros", &big));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    assert!(
        gz.len() < 64 * 1024,
        "the bomb compresses well ({} bytes)",
        gz.len()
    );
    let blob = s.outside.join("blob");
    fs::write(&blob, &gz).unwrap();
    let err = unpack(
        open_blob(&blob).unwrap(),
        &s.root,
        &[],
        UnpackLimits {
            max_tar_bytes: 1024 * 1024,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, UnpackError::TooLarge { limit: 1048576 }),
        "{err}"
    );
    assert!(err.to_string().contains("more than 1048576 bytes"));

    // Under the limit the same blob unpacks, and its diff id is the tar's digest.
    let s2 = sandbox();
    let stats = unpack(
        open_blob(&blob).unwrap(),
        &s2.root,
        &[],
        UnpackLimits {
            max_tar_bytes: tar.len() as u64,
        },
    )
    .unwrap();
    assert_eq!(stats.diff_id, Digest::of(&tar));
    assert_eq!(
        fs::metadata(s2.root.join("zeros")).unwrap().len(),
        big.len() as u64
    );
}

#[test]
fn unpacks_zstd_layers() {
    require_root();
    let s = sandbox();
    let tar = build(|b| {
        dir(b, "etc/");
        file(b, "etc/motd", b"zstd works");
    });
    let blob = s.outside.join("blob");
    fs::write(
        &blob,
        ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest),
    )
    .unwrap();
    let stats = unpack(
        open_blob(&blob).unwrap(),
        &s.root,
        &[],
        UnpackLimits::default(),
    )
    .unwrap();
    assert_eq!(stats.diff_id, Digest::of(&tar));
    assert_eq!(fs::read(s.root.join("etc/motd")).unwrap(), b"zstd works");
}

#[test]
fn implicit_parents_take_their_metadata_from_the_layers_below() {
    require_root();
    let s = sandbox();
    // Two lower layers: the bottom one has tmp/ 1777 and etc/ owned 7:8; the middle one
    // whites out opt/ and makes var/ opaque.
    let bottom = s.outside.join("bottom");
    let middle = s.outside.join("middle");
    for (dir, mode, owner) in [
        ("tmp", 0o1777, (0, 0)),
        ("etc/conf.d", 0o750, (7, 8)),
        ("opt/app", 0o700, (5, 5)),
        ("var/lib", 0o711, (3, 3)),
    ] {
        let p = bottom.join(dir);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&p, Some(owner.0), Some(owner.1)).unwrap();
    }
    fs::create_dir_all(middle.join("var")).unwrap();
    xattr::set(middle.join("var"), "trusted.overlay.opaque", b"y").unwrap();
    nix::sys::stat::mknod(
        &middle.join("opt"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();

    let tar = build(|b| {
        file(b, "tmp/x", b"");
        file(b, "etc/conf.d/y", b"");
        file(b, "opt/app/z", b"");
        file(b, "var/lib/w", b"");
        file(b, "new/dir/v", b"");
    });
    unpack(
        &tar[..],
        &s.root,
        &[middle.clone(), bottom.clone()],
        UnpackLimits::default(),
    )
    .unwrap();
    let meta = |rel: &str| {
        let m = fs::symlink_metadata(s.root.join(rel)).unwrap();
        (m.permissions().mode() & 0o7777, m.uid(), m.gid())
    };
    assert_eq!(meta("tmp"), (0o1777, 0, 0));
    assert_eq!(meta("etc/conf.d"), (0o750, 7, 8));
    // etc/ itself comes from the bottom layer too (0755 root there, as created).
    assert_eq!(meta("etc").1, 0);
    // opt/ was whited out above the bottom layer: Docker's default, not the hidden dir's.
    assert_eq!(meta("opt/app"), (0o755, 0, 0));
    // var/ is opaque in the middle layer: var/lib of the bottom one is hidden.
    assert_eq!(meta("var/lib"), (0o755, 0, 0));
    assert_eq!(meta("new/dir"), (0o755, 0, 0));
}
