//! Docker's default seccomp profile (moby `profiles/seccomp/default.json`, Apache-2.0) as
//! Rust data: an allow-list, EPERM for everything else. Rules carry the profile's own
//! conditions (architecture, capability, minimum kernel, argument checks); [`super::seccomp`]
//! turns them into BPF for one architecture and one capability set.

use super::caps::number as cap;

/// Architecture names as the profile writes them (Go's `GOARCH`, plus `x32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchName {
    Amd64,
    X32,
    X86,
    Arm,
    Arm64,
    Ppc64le,
    S390,
    S390x,
    Riscv64,
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    Allow,
    /// Fail the call with this errno.
    Errno(u32),
}

/// A check of one 64-bit syscall argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgOp {
    /// All 64 bits equal.
    Eq(u64),
    /// The low 32 bits differ. For an argument the kernel reads as an `int` (socket's
    /// family): the upper half does not reach the kernel, so it must not decide either
    /// (moby compares all 64 bits, which a caller could pass with garbage in the upper half).
    Ne32(u32),
    /// `(arg & mask) == value`.
    MaskedEq { mask: u64, value: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgCheck {
    pub index: u8,
    pub op: ArgOp,
}

/// When a rule is part of the filter. Empty lists do not restrict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conditions {
    /// Only on these architectures.
    pub arches: &'static [ArchName],
    /// Only when the container has every one of these capabilities.
    pub caps: &'static [u8],
    /// Only on kernels at least this new.
    pub min_kernel: Option<(u32, u32)>,
}

/// When a rule is left out. Empty lists exclude nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exclusions {
    /// Not on these architectures.
    pub arches: &'static [ArchName],
    /// Not when the container has any of these capabilities.
    pub caps: &'static [u8],
}

/// One entry of the profile's `syscalls` list. The checks in `args` must all hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub names: &'static [&'static str],
    pub action: RuleAction,
    pub args: &'static [ArgCheck],
    pub includes: Conditions,
    pub excludes: Exclusions,
}

/// Errno of every call the profile does not allow.
pub const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// The namespace flags of clone(2) (`CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
/// CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`): without CAP_SYS_ADMIN a
/// clone may create threads and processes, never namespaces.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// `AF_VSOCK`: sockets to the hypervisor are refused.
const AF_VSOCK: u32 = 40;

const ANY: Conditions = Conditions {
    arches: &[],
    caps: &[],
    min_kernel: None,
};
const NOTHING: Exclusions = Exclusions {
    arches: &[],
    caps: &[],
};

const fn allow(names: &'static [&'static str]) -> Rule {
    Rule {
        names,
        action: RuleAction::Allow,
        args: &[],
        includes: ANY,
        excludes: NOTHING,
    }
}

const fn allow_on(names: &'static [&'static str], arches: &'static [ArchName]) -> Rule {
    Rule {
        names,
        action: RuleAction::Allow,
        args: &[],
        includes: Conditions {
            arches,
            caps: &[],
            min_kernel: None,
        },
        excludes: NOTHING,
    }
}

const fn allow_with(names: &'static [&'static str], caps: &'static [u8]) -> Rule {
    Rule {
        names,
        action: RuleAction::Allow,
        args: &[],
        includes: Conditions {
            arches: &[],
            caps,
            min_kernel: None,
        },
        excludes: NOTHING,
    }
}

const fn allow_if(names: &'static [&'static str], args: &'static [ArgCheck]) -> Rule {
    Rule {
        names,
        action: RuleAction::Allow,
        args,
        includes: ANY,
        excludes: NOTHING,
    }
}

/// `personality(value)` only (a macro: the check must be a constant to be `'static`).
macro_rules! personality {
    ($value:expr) => {
        allow_if(
            &["personality"],
            &[ArgCheck {
                index: 0,
                op: ArgOp::Eq($value),
            }],
        )
    };
}

/// Calls every container may make.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

use ArchName::*;

/// The profile, in moby's order.
pub const DEFAULT_PROFILE: &[Rule] = &[
    allow(ALLOWED),
    // Before 4.8 ptrace could bypass seccomp.
    Rule {
        names: &["process_vm_readv", "process_vm_writev", "ptrace"],
        action: RuleAction::Allow,
        args: &[],
        includes: Conditions {
            arches: &[],
            caps: &[],
            min_kernel: Some((4, 8)),
        },
        excludes: NOTHING,
    },
    allow_if(
        &["socket"],
        &[ArgCheck {
            index: 0,
            op: ArgOp::Ne32(AF_VSOCK),
        }],
    ),
    // PER_LINUX, UNAME26, PER_LINUX32, UNAME26|PER_LINUX32, and the query 0xffffffff.
    personality!(0),
    personality!(8),
    personality!(0x20000),
    personality!(0x20008),
    personality!(0xffff_ffff),
    allow_on(&["sync_file_range2", "swapcontext"], &[Ppc64le]),
    allow_on(
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        &[Arm, Arm64],
    ),
    allow_on(&["arch_prctl"], &[Amd64, X32]),
    allow_on(&["modify_ldt"], &[Amd64, X32, X86]),
    allow_on(
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
        &[S390, S390x],
    ),
    allow_on(&["riscv_flush_icache"], &[Riscv64]),
    allow_with(&["open_by_handle_at"], &[cap::DAC_READ_SEARCH]),
    allow_with(
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        &[cap::SYS_ADMIN],
    ),
    // Without CAP_SYS_ADMIN: clone without namespace flags only (s390 swaps the arguments).
    Rule {
        names: &["clone"],
        action: RuleAction::Allow,
        args: &[ArgCheck {
            index: 0,
            op: ArgOp::MaskedEq {
                mask: CLONE_NAMESPACE_FLAGS,
                value: 0,
            },
        }],
        includes: ANY,
        excludes: Exclusions {
            arches: &[S390, S390x],
            caps: &[cap::SYS_ADMIN],
        },
    },
    Rule {
        names: &["clone"],
        action: RuleAction::Allow,
        args: &[ArgCheck {
            index: 1,
            op: ArgOp::MaskedEq {
                mask: CLONE_NAMESPACE_FLAGS,
                value: 0,
            },
        }],
        includes: Conditions {
            arches: &[S390, S390x],
            caps: &[],
            min_kernel: None,
        },
        excludes: Exclusions {
            arches: &[],
            caps: &[cap::SYS_ADMIN],
        },
    },
    // clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes libc fall
    // back to clone, whose flags are checked above.
    Rule {
        names: &["clone3"],
        action: RuleAction::Errno(libc::ENOSYS as u32),
        args: &[],
        includes: ANY,
        excludes: Exclusions {
            arches: &[],
            caps: &[cap::SYS_ADMIN],
        },
    },
    allow_with(&["reboot"], &[cap::SYS_BOOT]),
    allow_with(&["chroot"], &[cap::SYS_CHROOT]),
    allow_with(
        &["delete_module", "init_module", "finit_module"],
        &[cap::SYS_MODULE],
    ),
    allow_with(&["acct"], &[cap::SYS_PACCT]),
    allow_with(
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
        &[cap::SYS_PTRACE],
    ),
    allow_with(&["iopl", "ioperm"], &[cap::SYS_RAWIO]),
    allow_with(
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        &[cap::SYS_TIME],
    ),
    allow_with(&["vhangup"], &[cap::SYS_TTY_CONFIG]),
    allow_with(
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
        &[cap::SYS_NICE],
    ),
    allow_with(&["syslog"], &[cap::SYSLOG]),
    allow_with(&["bpf"], &[cap::BPF]),
    allow_with(&["perf_event_open"], &[cap::PERFMON]),
];
