//! Every raw syscall and `unsafe` block of berth lives here, each with a `// SAFETY:` note.
//! The rest of the engine calls these narrow, safe wrappers.

pub mod bpf;
pub mod caps;
pub mod fs;
pub mod net;
pub mod netns;
pub mod pidfd;
pub mod process;
pub mod rlimit;
pub mod seccomp;
