//! Shared fixtures for berth's end-to-end and engine tests: a real OCI registry on a loopback
//! port and test images built by real tools (umoci, skopeo) from Debian's busybox-static.

pub mod agent;
pub mod git;
pub mod image;
pub mod podman;
pub mod registry;

pub use image::push_busybox;
pub use registry::Registry;

use std::path::PathBuf;

/// The absolute path of `tool` in `PATH`, or an error that says which package provides it.
pub fn require_tool(tool: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    anyhow::bail!(
        "test prerequisite missing: `{tool}` is not in PATH (hint: apt-get install {package})"
    )
}

/// `tests/support/<name>`.
pub fn support_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("support")
        .join(name)
}
