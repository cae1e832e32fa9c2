//! `berth validate DIR...`: the agent's own loader, every problem as `file:line:col: message`.

use std::path::PathBuf;

/// Returns the process exit code: 0 when every directory loads cleanly, 1 otherwise.
pub fn run(dirs: &[PathBuf]) -> i32 {
    let mut problems = 0;
    let (mut files, mut objects) = (0, 0);
    for dir in dirs {
        let load = berth_spec::load_dir(dir);
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
pub fn run_json(dirs: &[PathBuf]) -> i32 {
    let problems: Vec<berth_spec::Problem> = dirs
        .iter()
        .flat_map(|d| berth_spec::load_dir(d).problems)
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&problems).expect("problems always serialize")
    );
    i32::from(!problems.is_empty())
}
