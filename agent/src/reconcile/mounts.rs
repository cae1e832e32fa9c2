//! What a container mounts, from its manifest: named volumes under the state dir, host paths
//! (only under the agent config's `allowedHostPaths`: manifests come from git, and a bad
//! commit must not be able to mount `/`), tmpfs, and device nodes (same rule).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use berth_engine::runtime::mounts::{DeviceConfig, MountConfig, MountSource};
use berth_spec::{ContainerSpec, MountSource as SpecSource};

pub struct ContainerMounts {
    pub mounts: Vec<MountConfig>,
    pub devices: Vec<DeviceConfig>,
}

/// The data dir of a named volume and its "already filled from the image" marker.
pub fn volume_paths(volumes_dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let dir = volumes_dir.join(name);
    (dir.join("_data"), dir.join(".populated"))
}

/// Refuses a host path outside every allowed prefix, comparing resolved paths so a symlink
/// on the host cannot smuggle another place in. At container start: the path must exist.
pub fn check_allowed(what: &str, path: &Path, allowed: &[PathBuf]) -> Result<PathBuf, String> {
    let real = path.canonicalize().map_err(|e| {
        format!(
            "{what} {}: {e} (hint: it must exist on the host)",
            path.display()
        )
    })?;
    judge(what, path, &real, allowed).map(|()| real)
}

/// Refuses a host path that would not resolve under an allowed prefix, for validation: a
/// path that does not exist yet is judged by its deepest existing ancestor (resolved) plus
/// the rest as written. Its container then waits for it at start (a setup error, retried),
/// where [`check_allowed`] resolves the whole path again.
pub fn check_allowed_location(what: &str, path: &Path, allowed: &[PathBuf]) -> Result<(), String> {
    let real =
        resolve_existing_prefix(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    judge(what, path, &real, allowed)
}

/// The deepest existing ancestor of `path` resolved, with the missing rest appended. A rest
/// with `.` or `..` could climb out of that ancestor once it exists: refused.
fn resolve_existing_prefix(path: &Path) -> Result<PathBuf, String> {
    for ancestor in path.ancestors() {
        match ancestor.canonicalize() {
            Ok(real) => {
                let rest = path.strip_prefix(ancestor).unwrap_or(Path::new(""));
                if rest
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
                {
                    return Err(format!(
                        "`{}` does not exist and has `.` or `..` in its missing part (hint: write the path without them)",
                        rest.display()
                    ));
                }
                return Ok(real.join(rest));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("resolve {}: {e}", ancestor.display())),
        }
    }
    Err("no part of it exists (hint: write an absolute path)".to_string())
}

fn judge(what: &str, path: &Path, real: &Path, allowed: &[PathBuf]) -> Result<(), String> {
    let ok = allowed.iter().any(|a| {
        let a = a.canonicalize().unwrap_or_else(|_| a.clone());
        real.starts_with(&a)
    });
    if ok {
        return Ok(());
    }
    let list = if allowed.is_empty() {
        "none are allowed".to_string()
    } else {
        allowed
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(format!(
        "{what} {} is not under allowedHostPaths ({list}) (hint: an admin can add it to allowedHostPaths in the agent config)",
        path.display()
    ))
}

pub fn container_mounts(
    spec: &ContainerSpec,
    volumes_dir: &Path,
    allowed: &[PathBuf],
) -> Result<ContainerMounts, String> {
    let mut mounts = Vec::with_capacity(spec.mounts.len());
    for m in &spec.mounts {
        let source = match &m.source {
            SpecSource::Volume(name) => {
                let (data, marker) = volume_paths(volumes_dir, name);
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(&data)
                    .map_err(|e| format!("create volume {name} at {}: {e}", data.display()))?;
                MountSource::Bind {
                    path: data,
                    populate: Some(marker),
                }
            }
            SpecSource::HostPath(p) => MountSource::Bind {
                path: check_allowed("hostPath", p, allowed)?,
                populate: None,
            },
            SpecSource::Tmpfs(t) => MountSource::Tmpfs {
                size: t.size.as_ref().map(|s| s.bytes()),
            },
        };
        mounts.push(MountConfig {
            destination: m.path.clone(),
            read_only: m.read_only,
            source,
        });
    }
    // Parents before children, so /data/cache lands on the /data mount, not under it.
    mounts.sort_by_key(|m| m.destination.components().count());
    let mut devices = Vec::with_capacity(spec.devices.len());
    for d in &spec.devices {
        check_allowed("device", &d.host_path, allowed)?;
        devices.push(DeviceConfig {
            host_path: d.host_path.clone(),
            path: d.path.clone(),
            permissions: access(&d.permissions),
        });
    }
    Ok(ContainerMounts { mounts, devices })
}

/// "rwm"-style access string for the device cgroup.
fn access(p: &berth_spec::DevicePermissions) -> String {
    [(p.read, 'r'), (p.write, 'w'), (p.mknod, 'm')]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, c)| *c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ContainerSpec {
        serde_yaml::from_str(yaml).expect("valid spec")
    }

    #[test]
    fn volumes_binds_and_tmpfs_in_parent_first_order() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("certs");
        std::fs::create_dir(&host).unwrap();
        let s = spec(&format!(
            "image: busybox\nmounts:\n  - {{tmpfs: {{size: 1Mi}}, path: /data/tmp}}\n  - {{volume: data, path: /data}}\n  - {{hostPath: {}, path: /etc/ssl/certs, readOnly: true}}\n",
            host.display()
        ));
        let m =
            container_mounts(&s, &dir.path().join("volumes"), &[dir.path().to_path_buf()]).unwrap();
        let dests: Vec<_> = m
            .mounts
            .iter()
            .map(|m| m.destination.display().to_string())
            .collect();
        assert_eq!(dests, ["/data", "/data/tmp", "/etc/ssl/certs"]);
        let (data, marker) = volume_paths(&dir.path().join("volumes"), "data");
        assert!(data.is_dir(), "volume dir created");
        assert_eq!(
            m.mounts[0].source,
            MountSource::Bind {
                path: data,
                populate: Some(marker)
            }
        );
        assert_eq!(
            m.mounts[1].source,
            MountSource::Tmpfs {
                size: Some(1 << 20)
            }
        );
        assert_eq!(
            m.mounts[2].source,
            MountSource::Bind {
                path: host.canonicalize().unwrap(),
                populate: None
            }
        );
        assert!(m.mounts[2].read_only);
    }

    #[test]
    fn host_paths_outside_the_allow_list_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec("image: busybox\nmounts:\n  - {hostPath: /, path: /host}\n");
        let err = container_mounts(&s, dir.path(), &[]).err().unwrap();
        assert_eq!(err, "hostPath / is not under allowedHostPaths (none are allowed) (hint: an admin can add it to allowedHostPaths in the agent config)");
        // A symlink inside an allowed dir that points out of it does not pass either.
        let allowed = dir.path().join("allowed");
        std::fs::create_dir(&allowed).unwrap();
        std::os::unix::fs::symlink("/etc", allowed.join("escape")).unwrap();
        let s = spec(&format!(
            "image: busybox\nmounts:\n  - {{hostPath: {}/escape, path: /x}}\n",
            allowed.display()
        ));
        let err = container_mounts(&s, dir.path(), std::slice::from_ref(&allowed))
            .err()
            .unwrap();
        assert!(
            err.starts_with("hostPath ") && err.contains("is not under allowedHostPaths"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_path_is_judged_by_where_it_will_be() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        std::fs::create_dir(&allowed).unwrap();
        std::os::unix::fs::symlink("/etc", allowed.join("escape")).unwrap();
        let list = std::slice::from_ref(&allowed);
        let missing = allowed.join("later/data");
        assert_eq!(check_allowed_location("hostPath", &missing, list), Ok(()));
        // At start it must exist.
        let err = check_allowed("hostPath", &missing, list).unwrap_err();
        assert!(
            err.starts_with(&format!("hostPath {}: ", missing.display()))
                && err.ends_with("(hint: it must exist on the host)"),
            "{err}"
        );
        // Its existing part is resolved: through a symlink out of the allowed dir, refused.
        let err =
            check_allowed_location("hostPath", &allowed.join("escape/later"), list).unwrap_err();
        assert!(err.contains("is not under allowedHostPaths"), "{err}");
        let err =
            check_allowed_location("hostPath", &dir.path().join("elsewhere"), list).unwrap_err();
        assert!(err.contains("is not under allowedHostPaths"), "{err}");
        let err =
            check_allowed_location("hostPath", &allowed.join("later/../../x"), list).unwrap_err();
        assert!(err.contains("has `.` or `..` in its missing part"), "{err}");
    }
}
