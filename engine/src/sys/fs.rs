//! Path resolution that an image cannot redirect: `openat2(2)` with `RESOLVE_IN_ROOT`, so
//! `..` and absolute symlinks stay inside the container's root (CVE-2021-30465 family).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// openat2's syscall number: the same on every architecture (new syscalls share one table).
const SYS_OPENAT2: libc::c_long = 437;

/// `struct open_how` of openat2(2) (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `path` beneath `root` as if `root` were `/`, refusing magic links (`/proc/*/fd`).
/// `flags` are open(2) flags; `O_CLOEXEC` is always added.
pub fn open_in_root(root: &OwnedFd, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: c_path is a valid NUL-terminated string and `how` a valid open_how; both live
    // across the call, and the size passed is the struct's own.
    let fd = unsafe {
        libc::syscall(
            SYS_OPENAT2,
            root.as_raw_fd(),
            c_path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `/proc/self/fd/N`: how a mount(2) call names an object held by a descriptor.
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_symlinks_and_dotdot_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/inside"), "in").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc", root.join("up")).unwrap();
        let root_fd: OwnedFd = std::fs::File::open(&root).unwrap().into();
        for p in ["link/inside", "up/inside", "/etc/inside", "../etc/inside"] {
            let fd = open_in_root(&root_fd, Path::new(p), libc::O_RDONLY).unwrap();
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut s).unwrap();
            assert_eq!(s, "in", "{p} escaped the root");
        }
        let err = open_in_root(&root_fd, Path::new("link/passwd"), libc::O_RDONLY).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::NotFound,
            "the host's /etc/passwd was reachable"
        );
    }
}
