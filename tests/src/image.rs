//! Test images: a busybox image built with `tests/support/busybox-image.sh` (umoci + skopeo
//! from Debian's busybox-static) and pushed to a test registry.

use std::process::Command;

use anyhow::{bail, Context};

use crate::{require_tool, support_script, Registry};

/// Build the busybox test image and push it to `docker://<registry>/<repo_tag>`, e.g.
/// `library/busybox:1.36`. An empty `cmd` keeps the image default `Cmd` `[sh]`.
pub fn push_busybox(registry: &Registry, repo_tag: &str, cmd: &[&str]) -> anyhow::Result<()> {
    push_busybox_with(registry, repo_tag, cmd, &[])
}

/// Like [`push_busybox`], with variables for the build script: `IMAGE_USER` (the image's
/// `User`), `IMAGE_ARCH`.
pub fn push_busybox_with(
    registry: &Registry,
    repo_tag: &str,
    cmd: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<()> {
    require_tool("umoci", "umoci")?;
    require_tool("skopeo", "skopeo")?;
    let busybox = std::env::var("BUSYBOX").unwrap_or_else(|_| "/bin/busybox".to_string());
    if !std::path::Path::new(&busybox).is_file() {
        bail!("test prerequisite missing: {busybox} does not exist (hint: apt-get install busybox-static)");
    }
    let work = tempfile::Builder::new()
        .prefix("berth-test-image-")
        .tempdir()
        .context("create image work dir")?;
    let dest = format!("docker://{}/{}", registry.host(), repo_tag);
    let output = Command::new("sh")
        .arg(support_script("busybox-image.sh"))
        .arg(work.path().join("build"))
        .arg(&dest)
        .args(cmd)
        .envs(env.iter().copied())
        .output()
        .context("run tests/support/busybox-image.sh")?;
    if !output.status.success() {
        bail!(
            "building and pushing {dest} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
