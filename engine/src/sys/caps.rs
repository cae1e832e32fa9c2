//! Capabilities and the privilege bits of `prctl(2)` for the calling thread: the three
//! capability sets (`capget`/`capset`), the bounding and ambient sets, keep-caps and
//! no_new_privs. See capabilities(7).

use std::io;

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, passed as two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The effective, permitted and inheritable sets of a thread, one bit per capability number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The calling thread's capability sets.
pub fn get() -> io::Result<CapSets> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget(2) with a v3 header writes exactly two CapData entries, and `data` is
    // an array of two that outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    check_long(ret)?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok(CapSets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// Sets the calling thread's capability sets. The kernel refuses to add to the permitted set.
pub fn set(sets: CapSets) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |v: u64| (v as u32, (v >> 32) as u32);
    let (e0, e1) = split(sets.effective);
    let (p0, p1) = split(sets.permitted);
    let (i0, i1) = split(sets.inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: capset(2) with a v3 header reads exactly two CapData entries from `data`,
    // which outlives the call; the header is only read.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    check_long(ret).map(|_| ())
}

/// Whether `cap` is in the bounding set; `None` when the kernel does not know `cap`.
pub fn bounding_has(cap: u32) -> io::Result<Option<bool>> {
    // SAFETY: PR_CAPBSET_READ takes an integer and touches no memory.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
    match ret {
        -1 => {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                Ok(None)
            } else {
                Err(e)
            }
        }
        0 => Ok(Some(false)),
        _ => Ok(Some(true)),
    }
}

/// The highest capability number the running kernel knows (`/proc/sys/kernel/cap_last_cap`),
/// found by asking the bounding set, so it works before `/proc` is mounted.
pub fn last_cap() -> io::Result<u32> {
    let mut last = None;
    for cap in 0..64 {
        match bounding_has(cap)? {
            Some(_) => last = Some(cap),
            None => break,
        }
    }
    last.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel reports no capabilities",
        )
    })
}

/// Removes `cap` from the bounding set: no later `execve` can regain it. Needs CAP_SETPCAP.
pub fn drop_bounding(cap: u32) -> io::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes an integer and touches no memory.
    check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) })
}

/// Empties the ambient set, so no capability is handed to a non-root program on `execve`.
pub fn clear_ambient() -> io::Result<()> {
    // SAFETY: PR_CAP_AMBIENT with PR_CAP_AMBIENT_CLEAR_ALL takes integers only.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
}

/// With keep-caps on, changing every uid from 0 to non-zero keeps the permitted set (the
/// effective set is still cleared), so the final sets can be installed after `setresuid`.
pub fn set_keepcaps(on: bool) -> io::Result<()> {
    nix::sys::prctl::set_keepcaps(on).map_err(io::Error::from)
}

/// `PR_SET_NO_NEW_PRIVS`: `execve` can never grant privileges again (setuid bits, file
/// capabilities), for this process and all its descendants. It cannot be undone.
pub fn set_no_new_privs() -> io::Result<()> {
    nix::sys::prctl::set_no_new_privs().map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_sets_and_bounding() {
        let sets = get().expect("capget of self");
        // Whatever we run as, the effective set is within the permitted set.
        assert_eq!(sets.effective & !sets.permitted, 0, "{sets:?}");
        let last = last_cap().expect("last capability");
        // CAP_AUDIT_READ (37) exists since Linux 3.16; berth needs far newer kernels.
        assert!((37..64).contains(&last), "cap_last_cap {last}");
        let proc_last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .expect("read cap_last_cap")
            .trim()
            .parse()
            .expect("number");
        assert_eq!(last, proc_last);
        assert_eq!(bounding_has(last + 1).expect("read bounding"), None);
    }
}
