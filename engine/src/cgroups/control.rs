//! Reading and writing cgroupfs control files, and creating and removing cgroup directories.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::error::{Error, Result};

/// Writes `value` to an existing control file in one `write(2)`.
///
/// The file is never created: the kernel makes every control file with the directory, so a
/// missing one means the controller is absent, and that must be an error rather than a
/// stray regular file.
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    let werr = |source| Error::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(werr)?;
    file.write_all(value.as_bytes()).map_err(werr)
}

/// Like [`write`], but a missing file is fine (used to reset limits the kernel may not offer).
pub(crate) fn write_if_present(path: &Path, value: &str) -> Result<bool> {
    match write(path, value) {
        Ok(()) => Ok(true),
        Err(Error::Write { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

pub(crate) fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a file holding one unsigned number.
pub(crate) fn read_u64(path: &Path) -> Result<u64> {
    let text = read(path)?;
    parse_u64(path, text.trim())
}

pub(crate) fn parse_u64(path: &Path, text: &str) -> Result<u64> {
    text.parse().map_err(|_| Error::Parse {
        path: path.to_path_buf(),
        what: format!("expected an unsigned number, found {text:?}"),
    })
}

/// Reads the value of `key` from a flat keyed file (`memory.stat`, `cpu.stat`,
/// `memory.events`, `memory.oom_control`): lines of `key value`.
pub(crate) fn read_keyed(path: &Path, key: &str) -> Result<u64> {
    let text = read(path)?;
    let value = text
        .lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim())
        .ok_or_else(|| Error::Parse {
            path: path.to_path_buf(),
            what: format!("no {key:?} line"),
        })?;
    parse_u64(path, value)
}

/// Reads a `cgroup.procs` file. A missing file means the cgroup does not exist, which has no
/// processes.
pub(crate) fn read_pids(dir: &Path) -> Result<Vec<i32>> {
    let path = dir.join("cgroup.procs");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Read { path, source }),
    };
    text.split_whitespace()
        .map(|word| {
            word.parse().map_err(|_| Error::Parse {
                path: path.clone(),
                what: format!("expected a pid, found {word:?}"),
            })
        })
        .collect()
}

/// Creates one directory; an existing one is fine (create is idempotent). Returns whether
/// this call made it.
pub(crate) fn mkdir(path: &Path) -> Result<bool> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(Error::Mkdir {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// How long `rmdir` retries a cgroup the kernel still reports busy: a killed process leaves
/// its cgroup a moment after it is reaped.
const RMDIR_BUSY_RETRY: Duration = Duration::from_millis(500);

/// Removes a cgroup directory and every child cgroup below it, deepest first. A missing
/// directory is fine. Only directories are removed: in cgroupfs the control files go with
/// their directory, and anything else is not ours to delete.
pub(crate) fn rmdir_tree(path: &Path) -> std::result::Result<(), Vec<Error>> {
    let mut errors = Vec::new();
    match fs::read_dir(path) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if is_dir {
                    if let Err(mut errs) = rmdir_tree(&entry.path()) {
                        errors.append(&mut errs);
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => errors.push(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
    if let Err(e) = rmdir(path) {
        errors.push(e);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Removes one empty cgroup directory, retrying briefly while the kernel says it is busy.
pub(crate) fn rmdir(path: &Path) -> Result<()> {
    let deadline = Instant::now() + RMDIR_BUSY_RETRY;
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(Error::Rmdir {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_does_not_create_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.max");
        let err = write(&path, "1").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "write {}: No such file or directory; hint: the kernel does not offer this control file; \
                 check that the controller is mounted (v1) or enabled in the parent's cgroup.subtree_control (v2)",
                path.display()
            )
        );
        assert!(!path.exists());
        assert!(!write_if_present(&path, "max").unwrap());
    }

    #[test]
    fn write_replaces_the_whole_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pids.max");
        fs::write(&path, "max\n").unwrap();
        write(&path, "7").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "7");
        assert_eq!(read_u64(&path).unwrap(), 7);
    }

    #[test]
    fn keyed_files_and_pid_lists_parse() {
        let dir = tempfile::tempdir().unwrap();
        let stat = dir.path().join("memory.stat");
        fs::write(&stat, "anon 10\nfile 20\ninactive_file 5\n").unwrap();
        assert_eq!(read_keyed(&stat, "inactive_file").unwrap(), 5);
        assert_eq!(
            read_keyed(&stat, "nope").unwrap_err().to_string(),
            format!("parse {}: no \"nope\" line", stat.display())
        );
        fs::write(dir.path().join("cgroup.procs"), "12\n345\n").unwrap();
        assert_eq!(read_pids(dir.path()).unwrap(), vec![12, 345]);
        assert_eq!(
            read_pids(&dir.path().join("gone")).unwrap(),
            Vec::<i32>::new()
        );
    }

    #[test]
    fn rmdir_tree_removes_nested_dirs_and_reports_non_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        fs::create_dir_all(top.join("a/b")).unwrap();
        fs::create_dir_all(top.join("c")).unwrap();
        fs::write(top.join("c/file"), "").unwrap();
        let errs = rmdir_tree(&top).unwrap_err();
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].starts_with(&format!(
            "remove cgroup {}: Directory not empty",
            top.join("c").display()
        )));
        assert!(msgs[1].starts_with(&format!(
            "remove cgroup {}: Directory not empty",
            top.display()
        )));
        assert!(!top.join("a").exists());
        fs::remove_file(top.join("c/file")).unwrap();
        rmdir_tree(&top).unwrap();
        assert!(!top.exists());
        rmdir_tree(&top).unwrap();
    }
}
