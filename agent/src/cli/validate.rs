//! `berth validate DIR...`: the agent's own loader, every problem as `file:line:col: message`.

use std::path::PathBuf;

use crate::policy::HostPolicy;

/// Returns the process exit code: 0 when every directory loads cleanly, 1 otherwise.
pub fn run(dirs: &[PathBuf], policy: &HostPolicy) -> i32 {
    let mut problems = 0;
    let (mut files, mut objects) = (0, 0);
    for dir in dirs {
        let load = crate::policy::load_dir(dir, policy);
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
        .flat_map(|d| crate::policy::load_dir(d, policy).problems)
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&problems).expect("problems always serialize")
    );
    i32::from(!problems.is_empty())
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
