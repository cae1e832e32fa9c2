//! cgroup v2 device control: a small eBPF program (`BPF_PROG_TYPE_CGROUP_DEVICE`) that
//! allows exactly a list of devices, loaded and attached to a cgroup directory — what runc's
//! devicefilter does, since cgroup v2 has no `devices.allow` file.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One allowed device: type (1 block, 2 char, None any), major and minor (None any), and
/// access bits (1 mknod, 2 read, 4 write) — the kernel's `bpf_cgroup_dev_ctx` encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceAllow {
    pub kind: Option<u32>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high one
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61; // r_dst = *(u32 *)(r_src + off)
const AND32_K: u8 = 0x54;
const RSH32_K: u8 = 0x74;
const MOV32_X: u8 = 0xbc;
const MOV64_K: u8 = 0xb7;
const JNE_K: u8 = 0x55;
const EXIT: u8 = 0x95;

/// The filter: r2 = type, r3 = access, r4 = major, r5 = minor; each rule is a block that
/// jumps to the next on a mismatch and returns 1 (allow) at its end; nothing matched → 0.
pub fn device_program(rules: &[DeviceAllow]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules {
        // Jumps are filled in once the block's length is known.
        let mut block: Vec<Insn> = Vec::new();
        let mut jumps = Vec::new();
        if let Some(kind) = r.kind {
            jumps.push(block.len());
            block.push(insn(JNE_K, 2, 0, 0, kind as i32));
        }
        // Asking for any access the rule does not grant → not this rule.
        block.push(insn(MOV32_X, 1, 3, 0, 0));
        block.push(insn(AND32_K, 1, 0, 0, !(r.access as i32) & 0xffff));
        jumps.push(block.len());
        block.push(insn(JNE_K, 1, 0, 0, 0));
        if let Some(major) = r.major {
            jumps.push(block.len());
            block.push(insn(JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = r.minor {
            jumps.push(block.len());
            block.push(insn(JNE_K, 5, 0, 0, minor as i32));
        }
        block.push(insn(MOV64_K, 0, 0, 0, 1));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for j in jumps {
            block[j].off = (len - j - 1) as i16;
        }
        prog.extend(block);
    }
    prog.push(insn(MOV64_K, 0, 0, 0, 0));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    prog
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// Loads the device filter for `rules` and attaches it to the cgroup v2 directory `cgroup`.
/// The program stays attached for the cgroup's life; the returned fd may be dropped.
pub fn attach_device_filter(cgroup: &Path, rules: &[DeviceAllow]) -> io::Result<()> {
    let prog = device_program(rules);
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 64 * 1024];
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: attr points at a valid ProgLoadAttr whose pointers (program, license, log
    // buffer) stay alive for the whole call; the size passed is the struct's.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        let verifier =
            String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)])
                .into_owned();
        return Err(io::Error::new(
            err.kind(),
            format!("load device filter: {err} {verifier}"),
        ));
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let dir: OwnedFd = std::fs::File::open(cgroup)?.into();
    let attach = ProgAttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: attach is a valid ProgAttachAttr naming two open fds, alive for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_block_jumps_past_itself_on_a_mismatch() {
        let p = device_program(&[DeviceAllow {
            kind: Some(2),
            major: Some(1),
            minor: Some(3),
            access: 7,
        }]);
        // 6 loads, then: jne type, mov, and, jne access, jne major, jne minor, r0=1, exit.
        assert_eq!(p.len(), 6 + 8 + 2);
        let offs: Vec<i16> = p[6..14].iter().map(|i| i.off).collect();
        assert_eq!(offs, [7, 0, 0, 4, 3, 2, 0, 0]);
        assert_eq!(p[14], insn(MOV64_K, 0, 0, 0, 0), "default deny");
        assert_eq!(p[8].imm, !7 & 0xffff);
    }
}
