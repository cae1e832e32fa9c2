//! Installing a classic-BPF seccomp filter on the calling thread (`seccomp(2)`,
//! `SECCOMP_SET_MODE_FILTER`), and the kernel release the profile's `minKernel` rules need.

use std::io;

/// Installs `program`. The kernel checks it (length, jumps, that it ends in returns) and
/// refuses it without no_new_privs or CAP_SYS_ADMIN. A filter cannot be removed again.
pub fn install_filter(program: &[libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "seccomp program longer than 65535 instructions",
        )
    })?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: the kernel copies `len` instructions from `filter` during the call; `program`
    // is that long and outlives the call, and the kernel never writes through the pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            0 as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `(major, minor)` of the running kernel, from `uname(2)`'s release ("6.1.0-18-amd64").
pub fn kernel_version() -> io::Result<(u32, u32)> {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname(2) fills the struct, which lives for the whole call.
    if unsafe { libc::uname(&mut uts) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let release: String = uts
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8 as char)
        .collect();
    parse_release(&release).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("kernel release {release:?}"),
        )
    })
}

fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_release_is_parsed() {
        assert_eq!(parse_release("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_release("4.19.0"), Some((4, 19)));
        assert_eq!(parse_release("5.10.0+"), Some((5, 10)));
        assert_eq!(parse_release("garbage"), None);
        let (major, _) = kernel_version().expect("uname");
        assert!(major >= 4, "kernel major {major}");
    }
}
