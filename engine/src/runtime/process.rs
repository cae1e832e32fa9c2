//! How a manifest and an image config combine into the process to run — Docker's and
//! Kubernetes' rules: `command` replaces ENTRYPOINT (and drops the image CMD), `args` replaces
//! CMD, manifest env overrides image env by key, `workingDir` falls back to the image's, then `/`.

use std::collections::BTreeMap;

/// The manifest side (all optional).
#[derive(Clone, Debug)]
pub struct ProcessOverrides<'a> {
    pub command: Option<&'a [String]>,
    pub args: Option<&'a [String]>,
    pub env: &'a BTreeMap<String, String>,
    pub working_dir: Option<&'a str>,
}

static NO_ENV: BTreeMap<String, String> = BTreeMap::new();

impl Default for ProcessOverrides<'_> {
    fn default() -> Self {
        ProcessOverrides {
            command: None,
            args: None,
            env: &NO_ENV,
            working_dir: None,
        }
    }
}

/// The image side.
#[derive(Clone, Debug, Default)]
pub struct ImageDefaults<'a> {
    pub entrypoint: &'a [String],
    pub cmd: &'a [String],
    pub env: &'a [String],
    pub working_dir: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProcessError {
    #[error("no command to run: the manifest sets neither command nor args and the image has no Entrypoint or Cmd (hint: set spec.command)")]
    NoCommand,
    #[error("workingDir {0:?} is not an absolute path")]
    RelativeWorkingDir(String),
}

pub fn resolve(
    ovr: &ProcessOverrides<'_>,
    img: &ImageDefaults<'_>,
) -> Result<ProcessSpec, ProcessError> {
    let (entry, cmd): (&[String], &[String]) = match (ovr.command, ovr.args) {
        (Some(c), Some(a)) => (c, a),
        (Some(c), None) => (c, &[]),
        (None, Some(a)) => (img.entrypoint, a),
        (None, None) => (img.entrypoint, img.cmd),
    };
    let args: Vec<String> = entry.iter().chain(cmd).cloned().collect();
    if args.is_empty() {
        return Err(ProcessError::NoCommand);
    }

    let mut env: Vec<String> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut put = |kv: String| {
        let key = kv
            .split_once('=')
            .map(|(k, _)| k)
            .unwrap_or(&kv)
            .to_string();
        match seen.get(&key) {
            Some(&i) => env[i] = kv,
            None => {
                seen.insert(key, env.len());
                env.push(kv);
            }
        }
    };
    for kv in img.env {
        put(kv.clone());
    }
    for (k, v) in ovr.env {
        put(format!("{k}={v}"));
    }
    if !env.iter().any(|kv| kv.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }

    let cwd = ovr
        .working_dir
        .or(img.working_dir)
        .filter(|d| !d.is_empty())
        .unwrap_or("/")
        .to_string();
    if !cwd.starts_with('/') {
        return Err(ProcessError::RelativeWorkingDir(cwd));
    }
    Ok(ProcessSpec { args, env, cwd })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn image_defaults_apply_when_manifest_is_silent() {
        let (ep, cmd, env) = (v(&["/entry"]), v(&["serve"]), v(&["PATH=/bin", "A=1"]));
        let empty = BTreeMap::new();
        let p = resolve(
            &ProcessOverrides {
                env: &empty,
                ..Default::default()
            },
            &ImageDefaults {
                entrypoint: &ep,
                cmd: &cmd,
                env: &env,
                working_dir: Some("/srv"),
            },
        )
        .unwrap();
        assert_eq!(p.args, v(&["/entry", "serve"]));
        assert_eq!(p.env, v(&["PATH=/bin", "A=1"]));
        assert_eq!(p.cwd, "/srv");
    }

    #[test]
    fn command_drops_image_cmd_and_args_replace_cmd() {
        let (ep, cmd) = (v(&["/entry"]), v(&["serve"]));
        let empty = BTreeMap::new();
        let img = ImageDefaults {
            entrypoint: &ep,
            cmd: &cmd,
            env: &[],
            working_dir: None,
        };
        let command = v(&["sh", "-c"]);
        let p = resolve(
            &ProcessOverrides {
                command: Some(&command),
                env: &empty,
                ..Default::default()
            },
            &img,
        )
        .unwrap();
        assert_eq!(p.args, v(&["sh", "-c"]));
        let args = v(&["other"]);
        let p = resolve(
            &ProcessOverrides {
                args: Some(&args),
                env: &empty,
                ..Default::default()
            },
            &img,
        )
        .unwrap();
        assert_eq!(p.args, v(&["/entry", "other"]));
        assert_eq!(p.cwd, "/");
    }

    #[test]
    fn manifest_env_overrides_image_env_in_place() {
        let env = v(&["PATH=/bin", "A=1", "B=2"]);
        let mut m = BTreeMap::new();
        m.insert("A".to_string(), "x".to_string());
        m.insert("C".to_string(), "3".to_string());
        let cmd = v(&["sh"]);
        let p = resolve(
            &ProcessOverrides {
                env: &m,
                ..Default::default()
            },
            &ImageDefaults {
                entrypoint: &[],
                cmd: &cmd,
                env: &env,
                working_dir: None,
            },
        )
        .unwrap();
        assert_eq!(p.env, v(&["PATH=/bin", "A=x", "B=2", "C=3"]));
    }

    #[test]
    fn nothing_to_run_and_relative_dirs_are_errors() {
        let empty = BTreeMap::new();
        let e = resolve(
            &ProcessOverrides {
                env: &empty,
                ..Default::default()
            },
            &ImageDefaults::default(),
        );
        assert_eq!(e, Err(ProcessError::NoCommand));
        let cmd = v(&["sh"]);
        let e = resolve(
            &ProcessOverrides {
                env: &empty,
                working_dir: Some("rel"),
                ..Default::default()
            },
            &ImageDefaults {
                cmd: &cmd,
                ..Default::default()
            },
        );
        assert_eq!(e, Err(ProcessError::RelativeWorkingDir("rel".into())));
    }
}
