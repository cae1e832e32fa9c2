//! Resource limits of the calling process through `prlimit64(2)` (the same call on every
//! libc and architecture). `u64::MAX` is `RLIM_INFINITY`.

use std::io;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Rlimit64 {
    soft: u64,
    hard: u64,
}

fn prlimit(resource: libc::c_int, new: Option<Rlimit64>) -> io::Result<(u64, u64)> {
    let mut old = Rlimit64::default();
    let new_ptr = new
        .as_ref()
        .map_or(std::ptr::null(), |n| n as *const Rlimit64);
    // SAFETY: prlimit64(2) on pid 0 (ourselves) reads `new` when it is non-null and writes
    // `old`; both are valid Rlimit64 values (the kernel's struct rlimit64) for the whole call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0 as libc::pid_t,
            resource,
            new_ptr,
            &mut old as *mut Rlimit64,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok((old.soft, old.hard))
}

/// `(soft, hard)` of `resource` (`libc::RLIMIT_*`).
pub fn get(resource: libc::c_int) -> io::Result<(u64, u64)> {
    prlimit(resource, None)
}

/// Sets `resource`. Raising the hard limit needs CAP_SYS_RESOURCE, and some hosts refuse it
/// even to root.
pub fn set(resource: libc::c_int, soft: u64, hard: u64) -> io::Result<()> {
    prlimit(resource, Some(Rlimit64 { soft, hard })).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_rewrites_own_limit() {
        let (soft, hard) = get(libc::RLIMIT_NOFILE as libc::c_int).expect("get RLIMIT_NOFILE");
        assert!(soft <= hard, "soft {soft} hard {hard}");
        // Writing back the same values is never a raise.
        set(libc::RLIMIT_NOFILE as libc::c_int, soft, hard).expect("set RLIMIT_NOFILE unchanged");
        assert_eq!(
            get(libc::RLIMIT_NOFILE as libc::c_int).expect("get again"),
            (soft, hard)
        );
    }
}
