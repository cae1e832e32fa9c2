//! `berth validate FILE|DIR...`: the agent's own loader, every problem as
//! `file:line:col: message`. A directory loads as the agent loads its manifest directory; a
//! file loads alone (checks across files, such as references, see only that file).

use std::path::PathBuf;

use crate::policy::HostPolicy;

/// Returns the process exit code: 0 when every directory loads cleanly, 1 otherwise.
pub fn run(dirs: &[PathBuf], policy: &HostPolicy) -> i32 {
    let mut problems = 0;
    let (mut files, mut objects) = (0, 0);
    for dir in dirs {
        let load = load_path(dir, policy);
        for p in &load.problems {
            println!("{p}");
        }
        problems += load.problems.len();
        files += load.files.len();
        objects += load.files.iter().map(|f| f.objects.len()).sum::<usize>();
    }
    if problems == 0 {
        println!("ok: {files} file(s), {objects} object(s), no problems");
        0
    } else {
        eprintln!("{problems} problem(s) in {files} file(s)");
        1
    }
}

/// `-o json`: every problem of every directory as one JSON array (the loader's `Problem`s:
/// `file`, `line`, `column`, `object`, `message`, `hint`); `[]` when there are none.
/// Returns the exit code, as [`run`] does.
pub fn run_json(dirs: &[PathBuf], policy: &HostPolicy) -> i32 {
    let problems: Vec<berth_spec::Problem> = dirs
        .iter()
        .flat_map(|d| load_path(d, policy).problems)
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&problems).expect("problems always serialize")
    );
    i32::from(!problems.is_empty())
}

/// A directory as the agent loads it, or one file alone.
fn load_path(path: &std::path::Path, policy: &HostPolicy) -> berth_spec::LoadResult {
    if !path.is_file() {
        return crate::policy::load_dir(path, policy);
    }
    let mut load = match std::fs::read(path) {
        Ok(bytes) => berth_spec::load_files(vec![(path.to_path_buf(), bytes)]),
        Err(e) => berth_spec::unavailable(
            path,
            &format!("cannot read file: {e}"),
            "check the path and its permissions",
        ),
    };
    crate::policy::apply(&mut load, policy);
    load
}

/// The host policy `validate` judges by: the agent config's, when there is one.
pub fn policy(config: Option<PathBuf>) -> anyhow::Result<HostPolicy> {
    let has_config =
        config.is_some() || std::path::Path::new(crate::config::DEFAULT_CONFIG).exists();
    if !has_config {
        return Ok(HostPolicy {
            allowed_host_paths: None,
        });
    }
    let flags = crate::config::AgentFlags {
        config,
        ..Default::default()
    };
    let cfg = crate::config::AgentConfig::load(&flags)?;
    Ok(HostPolicy {
        allowed_host_paths: Some(cfg.allowed_host_paths),
    })
}
