//! The fixture corpus: every valid manifest loads cleanly, every invalid one fails with the
//! exact messages in its sibling `.expected` file (`BERTH_BLESS=1` rewrites them).

use std::fs;
use std::path::{Path, PathBuf};

use berth_spec::{load_files, LoadResult};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// Loads one fixture under its bare file name, so messages do not depend on the checkout.
fn load_one(path: &Path) -> LoadResult {
    let name = PathBuf::from(path.file_name().unwrap());
    load_files(vec![(name, fs::read(path).unwrap())])
}

#[test]
fn valid_fixtures_load_without_problems() {
    let mut all = Vec::new();
    for path in fixtures("valid") {
        let r = load_one(&path);
        let problems: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems, Vec::<String>::new(), "{}", path.display());
        assert!(!r.objects.is_empty(), "{} has no objects", path.display());
        all.push((
            PathBuf::from(path.file_name().unwrap()),
            fs::read(&path).unwrap(),
        ));
    }
    // Together they form one valid directory too (names unique, references hold).
    let r = load_files(all);
    assert_eq!(r.problems, Vec::new());
    assert_eq!(r.objects.len(), 11);
}

#[test]
fn invalid_fixtures_fail_with_the_expected_messages() {
    let bless = std::env::var_os("BERTH_BLESS").is_some();
    let mut failures = Vec::new();
    for path in fixtures("invalid") {
        let r = load_one(&path);
        let got: String = r.problems.iter().map(|p| format!("{p}\n")).collect();
        assert!(
            !got.is_empty(),
            "{} loaded without problems",
            path.display()
        );
        assert!(r.objects.is_empty(), "{} yielded objects", path.display());
        let expected_path = path.with_extension("expected");
        if bless {
            fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let want = fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", expected_path.display()));
        if got != want {
            failures.push(format!(
                "{}:\n--- want\n{want}--- got\n{got}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
