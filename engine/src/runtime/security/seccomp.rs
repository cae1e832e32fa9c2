//! Compiles the seccomp profile ([`super::profile`]) into a classic-BPF program for one
//! architecture and one capability set, as libseccomp does for runc.
//!
//! The program: a call from another ABI (i386, x32, arm32 compat) gets EPERM; a call number
//! newer than berth's syscall table gets ENOSYS, so a libc that tries a new call falls back
//! to the old one (runc does the same); then one block per call the profile names, in number
//! order, each ending in a return; anything else gets EPERM.

use std::collections::BTreeMap;

use super::caps::CapSet;
use super::profile::{ArchName, ArgCheck, ArgOp, Rule, RuleAction, DEFAULT_ERRNO, DEFAULT_PROFILE};
use super::{syscalls_aarch64, syscalls_x86_64};

pub const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
pub const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

// struct seccomp_data: nr, arch, instruction_pointer, args[6] (little-endian halves).
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
fn offset_arg_low(index: u8) -> u32 {
    16 + 8 * u32::from(index)
}
fn offset_arg_high(index: u8) -> u32 {
    offset_arg_low(index) + 4
}

/// x32 calls are x86_64 calls with this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The kernel's limit on one program (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;

/// Architectures berth has a syscall table for (little-endian, 64-bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// The architecture berth was built for, if it has a table.
    pub fn native() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }

    /// `AUDIT_ARCH_*` (linux/audit.h), what the kernel puts in `seccomp_data.arch`.
    pub fn audit_arch(self) -> u32 {
        match self {
            Arch::X86_64 => 0xC000_003E,
            Arch::Aarch64 => 0xC000_00B7,
        }
    }

    fn profile_name(self) -> ArchName {
        match self {
            Arch::X86_64 => ArchName::Amd64,
            Arch::Aarch64 => ArchName::Arm64,
        }
    }

    fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Arch::X86_64 => syscalls_x86_64::TABLE,
            Arch::Aarch64 => syscalls_aarch64::TABLE,
        }
    }

    /// The number of the call `name`, if this architecture has it.
    pub fn syscall_number(self, name: &str) -> Option<u32> {
        self.table()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, nr)| *nr)
    }

    /// The highest call number berth knows on this architecture.
    pub fn max_syscall(self) -> u32 {
        self.table().iter().map(|(_, nr)| *nr).max().unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error(
        "seccomp rules for system call {nr} need {len} instructions, more than one jump can skip"
    )]
    BlockTooLong { nr: u32, len: usize },
    #[error(
        "seccomp program has {0} instructions, more than the kernel's limit of {MAX_INSTRUCTIONS}"
    )]
    TooLong(usize),
}

/// One way a call is decided: when every check holds, `action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alternative {
    pub args: Vec<ArgCheck>,
    pub action: RuleAction,
}

/// What the filter does with one call number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Always this action, whatever the arguments.
    Always(RuleAction),
    /// The first alternative whose checks hold; EPERM when none does.
    Checked(Vec<Alternative>),
}

/// The profile resolved for one architecture, capability set and kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub arch: Arch,
    /// By call number.
    pub calls: BTreeMap<u32, Decision>,
}

fn applies(rule: &Rule, arch: ArchName, caps: CapSet, kernel: (u32, u32)) -> bool {
    let inc = &rule.includes;
    let exc = &rule.excludes;
    (inc.arches.is_empty() || inc.arches.contains(&arch))
        && inc.caps.iter().all(|c| caps.contains(*c))
        && inc.min_kernel.is_none_or(|min| kernel >= min)
        && !exc.arches.contains(&arch)
        && !exc.caps.iter().any(|c| caps.contains(*c))
}

impl Filter {
    /// Docker's default profile for a container holding `caps` on `kernel` (major, minor).
    pub fn docker_default(arch: Arch, caps: CapSet, kernel: (u32, u32)) -> Filter {
        Filter::from_rules(DEFAULT_PROFILE, arch, caps, kernel)
    }

    /// Resolves `rules`: names the architecture does not have are skipped (as libseccomp
    /// does); a rule without argument checks decides its calls outright.
    pub fn from_rules(rules: &[Rule], arch: Arch, caps: CapSet, kernel: (u32, u32)) -> Filter {
        let mut collected: BTreeMap<u32, Vec<Alternative>> = BTreeMap::new();
        for rule in rules
            .iter()
            .filter(|r| applies(r, arch.profile_name(), caps, kernel))
        {
            for nr in rule.names.iter().filter_map(|n| arch.syscall_number(n)) {
                collected.entry(nr).or_default().push(Alternative {
                    args: rule.args.to_vec(),
                    action: rule.action,
                });
            }
        }
        let calls = collected
            .into_iter()
            .map(|(nr, alts)| {
                let decision = match alts.iter().find(|a| a.args.is_empty()) {
                    Some(plain) => Decision::Always(plain.action),
                    None => Decision::Checked(alts),
                };
                (nr, decision)
            })
            .collect();
        Filter { arch, calls }
    }

    /// The action for a call, evaluated on the rules (not the BPF): what the program must do.
    pub fn decide(&self, nr: u32, args: [u64; 6]) -> u32 {
        match self.calls.get(&nr) {
            None if nr > self.arch.max_syscall() => errno(libc::ENOSYS as u32),
            None => errno(DEFAULT_ERRNO),
            Some(Decision::Always(a)) => ret_value(*a),
            Some(Decision::Checked(alts)) => alts
                .iter()
                .find(|alt| alt.args.iter().all(|c| check_holds(c, &args)))
                .map_or(errno(DEFAULT_ERRNO), |alt| ret_value(alt.action)),
        }
    }

    /// Whether `name` is allowed outright (whatever its arguments).
    pub fn allows(&self, name: &str) -> bool {
        self.arch
            .syscall_number(name)
            .and_then(|nr| self.calls.get(&nr))
            .is_some_and(|d| *d == Decision::Always(RuleAction::Allow))
    }

    /// The BPF program.
    pub fn compile(&self) -> Result<Vec<libc::sock_filter>, CompileError> {
        let mut prog = vec![
            load(OFFSET_ARCH),
            jump(JEQ_K, self.arch.audit_arch(), 1, 0),
            ret(errno(DEFAULT_ERRNO)),
            load(OFFSET_NR),
        ];
        if self.arch == Arch::X86_64 {
            prog.push(jump(JGE_K, X32_SYSCALL_BIT, 0, 1));
            prog.push(ret(errno(DEFAULT_ERRNO)));
        }
        prog.push(jump(JGT_K, self.arch.max_syscall(), 0, 1));
        prog.push(ret(errno(libc::ENOSYS as u32)));
        for (nr, decision) in &self.calls {
            let body = match decision {
                Decision::Always(action) => vec![ret(ret_value(*action))],
                Decision::Checked(alts) => {
                    let mut body: Vec<libc::sock_filter> =
                        alts.iter().flat_map(alternative).collect();
                    body.push(ret(errno(DEFAULT_ERRNO)));
                    body
                }
            };
            let skip = u8::try_from(body.len()).map_err(|_| CompileError::BlockTooLong {
                nr: *nr,
                len: body.len(),
            })?;
            prog.push(jump(JEQ_K, *nr, 0, skip));
            prog.extend(body);
        }
        prog.push(ret(errno(DEFAULT_ERRNO)));
        if prog.len() > MAX_INSTRUCTIONS {
            return Err(CompileError::TooLong(prog.len()));
        }
        Ok(prog)
    }
}

fn errno(e: u32) -> u32 {
    SECCOMP_RET_ERRNO | (e & 0xffff)
}

fn ret_value(action: RuleAction) -> u32 {
    match action {
        RuleAction::Allow => SECCOMP_RET_ALLOW,
        RuleAction::Errno(e) => errno(e),
    }
}

fn check_holds(check: &ArgCheck, args: &[u64; 6]) -> bool {
    let arg = args[usize::from(check.index)];
    match check.op {
        ArgOp::Eq(v) => arg == v,
        ArgOp::Ne32(v) => arg as u32 != v,
        ArgOp::MaskedEq { mask, value } => arg & mask == value,
    }
}

fn insn(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn load(offset: u32) -> libc::sock_filter {
    insn(LD_W_ABS, offset, 0, 0)
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    insn(code, k, jt, jf)
}

fn ret(value: u32) -> libc::sock_filter {
    insn(RET_K, value, 0, 0)
}

/// A jump whose target is "the end of this alternative" is written with this placeholder
/// and patched once the alternative's length is known.
const FAIL: u8 = u8::MAX;

/// The checks of one alternative, then its return. Every failed check jumps past the return,
/// to the next alternative.
fn alternative(alt: &Alternative) -> Vec<libc::sock_filter> {
    let mut code = Vec::new();
    for c in &alt.args {
        let (lo, hi) = (offset_arg_low(c.index), offset_arg_high(c.index));
        match c.op {
            ArgOp::Eq(v) => {
                code.push(load(lo));
                code.push(jump(JEQ_K, v as u32, 0, FAIL));
                code.push(load(hi));
                code.push(jump(JEQ_K, (v >> 32) as u32, 0, FAIL));
            }
            ArgOp::Ne32(v) => {
                code.push(load(lo));
                code.push(jump(JEQ_K, v, FAIL, 0));
            }
            ArgOp::MaskedEq { mask, value } => {
                code.push(load(lo));
                code.push(insn(AND_K, mask as u32, 0, 0));
                code.push(jump(JEQ_K, value as u32, 0, FAIL));
                if mask >> 32 != 0 || value >> 32 != 0 {
                    code.push(load(hi));
                    code.push(insn(AND_K, (mask >> 32) as u32, 0, 0));
                    code.push(jump(JEQ_K, (value >> 32) as u32, 0, FAIL));
                }
            }
        }
    }
    code.push(ret(ret_value(alt.action)));
    // Patch: from instruction i, the next alternative starts at code.len().
    let len = code.len();
    for (i, ins) in code.iter_mut().enumerate() {
        let to_end = (len - i - 1) as u8;
        if ins.code == JEQ_K {
            if ins.jt == FAIL {
                ins.jt = to_end;
            }
            if ins.jf == FAIL {
                ins.jf = to_end;
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::security::caps::number;

    /// A classic-BPF interpreter for the instructions the compiler emits, to check the
    /// program against [`Filter::decide`].
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&nr.to_le_bytes());
        data.extend_from_slice(&arch.to_le_bytes());
        data.extend_from_slice(&0u64.to_le_bytes());
        for a in args {
            data.extend_from_slice(&a.to_le_bytes());
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    let o = i.k as usize;
                    acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                }
                AND_K => acc &= i.k,
                RET_K => return i.k,
                JEQ_K | JGE_K | JGT_K => {
                    let taken = match i.code {
                        JEQ_K => acc == i.k,
                        JGE_K => acc >= i.k,
                        _ => acc > i.k,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    const KERNEL: (u32, u32) = (6, 1);
    const EPERM: u32 = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    fn nr(arch: Arch, name: &str) -> u32 {
        arch.syscall_number(name)
            .unwrap_or_else(|| panic!("{name} on {arch:?}"))
    }

    #[test]
    fn syscall_tables() {
        let x = Arch::X86_64;
        let a = Arch::Aarch64;
        assert_eq!(
            (
                nr(x, "read"),
                nr(x, "write"),
                nr(x, "mount"),
                nr(x, "arch_prctl")
            ),
            (0, 1, 165, 158)
        );
        assert_eq!(
            (
                nr(a, "read"),
                nr(a, "write"),
                nr(a, "mount"),
                nr(a, "clone")
            ),
            (63, 64, 40, 220)
        );
        assert_eq!(nr(x, "clone3"), 435);
        assert_eq!(nr(a, "clone3"), 435);
        // aarch64 has only the new-style calls.
        assert_eq!(a.syscall_number("open"), None);
        assert_eq!(a.syscall_number("arch_prctl"), None);
        assert_eq!(x.syscall_number("chown32"), None);
        assert!(x.max_syscall() >= 435 && a.max_syscall() >= 435);
    }

    #[test]
    fn default_profile_contains_known_entries() {
        let default = CapSet::docker_default();
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let f = Filter::docker_default(arch, default, KERNEL);
            for name in [
                "read",
                "write",
                "execve",
                "openat",
                "futex",
                "ptrace",
                "close_range",
                "chroot",
            ] {
                assert!(f.allows(name), "{name} not allowed on {arch:?}");
            }
            for name in [
                "mount",
                "umount2",
                "unshare",
                "setns",
                "reboot",
                "init_module",
                "bpf",
                "open_by_handle_at",
            ] {
                assert!(!f.allows(name), "{name} allowed on {arch:?}");
                assert_eq!(
                    f.decide(nr(arch, name), [0; 6]),
                    EPERM,
                    "{name} on {arch:?}"
                );
            }
            assert!(matches!(f.calls[&nr(arch, "clone")], Decision::Checked(_)));
            assert_eq!(
                f.calls[&nr(arch, "clone3")],
                Decision::Always(RuleAction::Errno(libc::ENOSYS as u32))
            );
            // The whole profile resolves: the 349 plain names less the legacy and 32-bit calls
            // the architecture lacks, plus ptrace, process_vm_readv/writev, chroot (the
            // default set has CAP_SYS_CHROOT) and, on x86_64, arch_prctl and modify_ldt.
            let allowed = f
                .calls
                .values()
                .filter(|d| **d == Decision::Always(RuleAction::Allow))
                .count();
            let want = match arch {
                Arch::X86_64 => 289 + 4 + 2,
                Arch::Aarch64 => 250 + 4,
            };
            assert_eq!(allowed, want, "calls allowed outright on {arch:?}");
        }
        let x = Filter::docker_default(Arch::X86_64, default, KERNEL);
        assert!(x.allows("arch_prctl") && x.allows("open") && x.allows("modify_ldt"));
        let a = Filter::docker_default(Arch::Aarch64, default, KERNEL);
        assert!(a.allows("openat"));
        // ptrace only from 4.8 on, or with CAP_SYS_PTRACE.
        assert!(!Filter::docker_default(Arch::X86_64, default, (4, 4)).allows("ptrace"));
        assert!(
            Filter::docker_default(Arch::X86_64, default.with(number::SYS_PTRACE), (4, 4))
                .allows("ptrace")
        );
    }

    #[test]
    fn capabilities_open_calls() {
        let admin = CapSet::docker_default().with(number::SYS_ADMIN);
        let f = Filter::docker_default(Arch::X86_64, admin, KERNEL);
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clone",
            "clone3",
            "sethostname",
        ] {
            assert!(f.allows(name), "{name} with CAP_SYS_ADMIN");
        }
        let no_chroot = CapSet::docker_default().without(number::SYS_CHROOT);
        assert!(!Filter::docker_default(Arch::X86_64, no_chroot, KERNEL).allows("chroot"));
        let time = Filter::docker_default(
            Arch::Aarch64,
            CapSet::docker_default().with(number::SYS_TIME),
            KERNEL,
        );
        assert!(time.allows("clock_settime") && time.allows("settimeofday"));
    }

    #[test]
    fn compiled_program_matches_the_rules() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            for caps in [CapSet::docker_default(), CapSet::all(), CapSet::EMPTY] {
                let f = Filter::docker_default(arch, caps, KERNEL);
                let prog = f.compile().expect("compiles");
                assert!(prog.len() < MAX_INSTRUCTIONS, "{} instructions", prog.len());
                let audit = arch.audit_arch();
                let interesting: [[u64; 6]; 6] = [
                    [0; 6],
                    [
                        libc::CLONE_NEWNET as u64 | libc::SIGCHLD as u64,
                        0,
                        0,
                        0,
                        0,
                        0,
                    ],
                    [
                        (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64,
                        0,
                        0,
                        0,
                        0,
                        0,
                    ],
                    [40, 1, 0, 0, 0, 0],
                    [0xffff_ffff, 0, 0, 0, 0, 0],
                    [(1u64 << 32) | 40, 0, 0, 0, 0, 0],
                ];
                for call in 0..=arch.max_syscall() + 5 {
                    for args in interesting {
                        assert_eq!(
                            run(&prog, audit, call, args),
                            f.decide(call, args),
                            "{arch:?} call {call} args {args:x?} caps {caps:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn argument_rules_and_abis() {
        let arch = Arch::X86_64;
        let f = Filter::docker_default(arch, CapSet::docker_default(), KERNEL);
        let prog = f.compile().expect("compiles");
        let audit = arch.audit_arch();
        let call = |name: &str, args: [u64; 6]| run(&prog, audit, nr(arch, name), args);
        let a0 = |v: u64| [v, 0, 0, 0, 0, 0];

        assert_eq!(call("read", a0(0)), SECCOMP_RET_ALLOW);
        // Threads and forks yes, new namespaces no.
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD) as u64;
        assert_eq!(call("clone", a0(thread)), SECCOMP_RET_ALLOW);
        assert_eq!(call("clone", a0(libc::SIGCHLD as u64)), SECCOMP_RET_ALLOW);
        for ns in [
            libc::CLONE_NEWNET,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWCGROUP,
        ] {
            assert_eq!(
                call("clone", a0(ns as u64 | libc::SIGCHLD as u64)),
                EPERM,
                "clone flag {ns:#x}"
            );
        }
        assert_eq!(call("clone3", a0(0)), ENOSYS);
        // socket: anything but AF_VSOCK, even with garbage in the upper half.
        assert_eq!(call("socket", a0(libc::AF_INET as u64)), SECCOMP_RET_ALLOW);
        assert_eq!(call("socket", a0(40)), EPERM);
        assert_eq!(call("socket", a0((7u64 << 32) | 40)), EPERM);
        // personality: the five values only.
        for ok in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
            assert_eq!(
                call("personality", a0(ok)),
                SECCOMP_RET_ALLOW,
                "personality {ok:#x}"
            );
        }
        assert_eq!(
            call("personality", a0(0x0040_0000)),
            EPERM,
            "READ_IMPLIES_EXEC"
        );
        assert_eq!(call("personality", a0(1 << 32)), EPERM);
        // Other ABIs and unknown new calls.
        assert_eq!(run(&prog, 0x4000_0003, 0, a0(0)), EPERM, "i386 compat call");
        assert_eq!(run(&prog, audit, X32_SYSCALL_BIT, a0(0)), EPERM, "x32 read");
        assert_eq!(run(&prog, audit, arch.max_syscall() + 1, a0(0)), ENOSYS);
        assert_eq!(run(&prog, audit, 400, a0(0)), EPERM, "hole in the table");
    }
}
