//! Host policy applied on top of the manifest loader: rules that depend on the agent's
//! config or on the kernel, checked at validation time so a bad commit fails like any
//! invalid file (its objects keep their last good version) instead of at container start.
//!
//! - `hostPath` mounts and `devices` must resolve under `allowedHostPaths`. One that does not
//!   exist yet is judged by where it will be; its container waits for it at start.
//! - `sysctls` must be namespaced (and not `net.*` with `networkMode: host`).

use std::path::{Path, PathBuf};

use berth_engine::runtime::security::sysctl;
use berth_spec::{LoadResult, MountSource, NetworkMode, Object, Problem};

use crate::reconcile::mounts::check_allowed_location;

#[derive(Clone, Debug)]
pub struct HostPolicy {
    /// None: no agent config to judge host paths by (`berth validate` away from the host);
    /// only the host-independent rules apply.
    pub allowed_host_paths: Option<Vec<PathBuf>>,
}

impl Default for HostPolicy {
    /// The agent's default: no host path is allowed.
    fn default() -> Self {
        HostPolicy {
            allowed_host_paths: Some(Vec::new()),
        }
    }
}

/// `berth_spec::load_dir` plus the host policy.
pub fn load_dir(dir: &Path, policy: &HostPolicy) -> LoadResult {
    let mut load = berth_spec::load_dir(dir);
    apply(&mut load, policy);
    load
}

/// Loads several directories as one set (a git source's paths), then applies `policy`.
pub fn load_dirs(dirs: &[PathBuf], policy: &HostPolicy) -> LoadResult {
    let mut load = berth_spec::load_dirs(dirs);
    apply(&mut load, policy);
    load
}

/// Turns every policy violation into a problem of its file; the file's objects then leave
/// `objects`, as for any file with a problem.
pub fn apply(load: &mut LoadResult, policy: &HostPolicy) {
    let mut new: Vec<Problem> = Vec::new();
    for loaded in &load.objects {
        let Object::Container(c) = &loaded.object else {
            continue;
        };
        let problem = |message: String, hint: &str| Problem {
            file: loaded.source.file.clone(),
            line: loaded.source.line,
            column: loaded.source.column,
            object: Some(loaded.object.object_ref()),
            message,
            hint: Some(hint.to_string()),
        };
        if let Some(allowed) = &policy.allowed_host_paths {
            for m in &c.spec.mounts {
                if let MountSource::HostPath(p) = &m.source {
                    if let Err(e) = check_allowed_location("hostPath", p, allowed) {
                        new.push(problem(
                            strip_hint(&e),
                            "an admin can add the path to allowedHostPaths in the agent config",
                        ));
                    }
                }
            }
            for d in &c.spec.devices {
                if let Err(e) = check_allowed_location("device", &d.host_path, allowed) {
                    new.push(problem(
                        strip_hint(&e),
                        "an admin can add the device to allowedHostPaths in the agent config",
                    ));
                }
            }
        }
        let host_network = c.spec.network_mode == NetworkMode::Host;
        for key in c.spec.sysctls.keys() {
            if let Err(e) = sysctl::check(key, host_network) {
                new.push(problem(strip_hint(&e.to_string()), "only net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* are per container"));
            }
        }
    }
    if new.is_empty() {
        return;
    }
    for p in &new {
        if let Some(f) = load.files.iter_mut().find(|f| f.path == p.file) {
            f.error.get_or_insert_with(|| p.to_string());
        }
    }
    let bad: Vec<PathBuf> = new.iter().map(|p| p.file.clone()).collect();
    load.objects.retain(|o| !bad.contains(&o.source.file));
    load.problems.extend(new);
    load.problems
        .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
}

/// Messages carry their hint separately in a [`Problem`].
fn strip_hint(message: &str) -> String {
    let cut = [" (hint:", "; hint:"]
        .iter()
        .filter_map(|h| message.find(h))
        .min();
    match cut {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> LoadResult {
        berth_spec::load_files(vec![(PathBuf::from("/m/a.yaml"), yaml.as_bytes().to_vec())])
    }

    const HEAD: &str =
        "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: web\nspec:\n  image: busybox\n";

    #[test]
    fn host_paths_outside_the_allow_list_fail_the_file() {
        let mut l = load(&format!(
            "{HEAD}  mounts:\n    - {{hostPath: /etc, path: /x}}\n"
        ));
        assert!(l.is_valid());
        apply(&mut l, &HostPolicy::default());
        assert!(l.objects.is_empty());
        let p = l.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(p, ["/m/a.yaml:1:1: Container/web: hostPath /etc is not under allowedHostPaths (none are allowed) (hint: an admin can add the path to allowedHostPaths in the agent config)"]);
        assert_eq!(l.files[0].error.as_deref(), Some(p[0].as_str()));

        let mut l = load(&format!(
            "{HEAD}  mounts:\n    - {{hostPath: /etc, path: /x}}\n"
        ));
        apply(
            &mut l,
            &HostPolicy {
                allowed_host_paths: Some(vec!["/etc".into()]),
            },
        );
        assert!(l.is_valid(), "{:?}", l.problems);
        let mut l = load(&format!(
            "{HEAD}  mounts:\n    - {{hostPath: /etc, path: /x}}\n"
        ));
        apply(
            &mut l,
            &HostPolicy {
                allowed_host_paths: None,
            },
        );
        assert!(l.is_valid(), "{:?}", l.problems);
        assert_eq!(l.objects.len(), 1);
    }

    #[test]
    fn a_host_path_that_does_not_exist_yet_passes_under_an_allowed_dir() {
        let dir = tempfile::tempdir().unwrap();
        let policy = HostPolicy {
            allowed_host_paths: Some(vec![dir.path().to_path_buf()]),
        };
        let mut l = load(&format!(
            "{HEAD}  mounts:\n    - {{hostPath: {}/later, path: /x}}\n",
            dir.path().display()
        ));
        apply(&mut l, &policy);
        assert!(l.is_valid(), "{:?}", l.problems);
        let mut l = load(&format!(
            "{HEAD}  mounts:\n    - {{hostPath: /nonexistent-berth-dir/x, path: /x}}\n"
        ));
        apply(&mut l, &policy);
        let p = l.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("hostPath /nonexistent-berth-dir/x is not under allowedHostPaths"),
            "{p:?}"
        );
    }

    #[test]
    fn only_namespaced_sysctls_pass() {
        let mut l = load(&format!("{HEAD}  sysctls:\n    net.ipv4.ip_unprivileged_port_start: '0'\n    kernel.shmmax: '1'\n"));
        apply(&mut l, &HostPolicy::default());
        assert!(l.is_valid(), "{:?}", l.problems);
        let mut l = load(&format!("{HEAD}  sysctls:\n    vm.swappiness: '1'\n"));
        apply(&mut l, &HostPolicy::default());
        assert_eq!(l.problems.len(), 1);
        assert!(
            l.problems[0].message.contains("vm.swappiness"),
            "{}",
            l.problems[0]
        );
        let mut l = load(&format!(
            "{HEAD}  networkMode: host\n  sysctls:\n    net.ipv4.ip_forward: '1'\n"
        ));
        apply(&mut l, &HostPolicy::default());
        assert_eq!(
            l.problems.len(),
            1,
            "net.* on the host network would change the host"
        );
    }
}
