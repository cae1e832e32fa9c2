//! End to end, manifests from git: the fetch process (`berth source-fetch`) against real
//! servers on loopback — a local path, `git daemon`, Git's smart HTTP behind lighttpd with
//! basic auth, OpenSSH's sshd — with signed, unsigned, foreign and tampered commits, force
//! pushes, deleted branches, tags, commit ids, huge and corrupt repositories; and agents that
//! follow a repository: only verified revisions that load are applied, SIGHUP syncs at once,
//! a server gone (even across a restart) or one that hangs changes no container.

mod agent;
mod fetch;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_tests::agent::berth_bin;
use berth_tests::git::{Repo, SshKey};
use serde_json::{json, Value};

/// A work dir with a working repository, a bare one it pushes to, and two signing keys: the
/// fleet's (`admin`, allowed) and a stranger's.
struct World {
    dir: tempfile::TempDir,
    repo: Repo,
    bare: PathBuf,
    admin: SshKey,
    stranger: SshKey,
    allowed_signers: PathBuf,
}

impl World {
    fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("berth-git-")
            .tempdir()
            .unwrap();
        let repo = Repo::init(&dir.path().join("work")).unwrap();
        std::fs::create_dir_all(dir.path().join("srv")).unwrap();
        let bare = berth_tests::git::bare(&dir.path().join("srv/fleet.git")).unwrap();
        let admin = SshKey::generate(dir.path(), "admin").unwrap();
        let stranger = SshKey::generate(dir.path(), "stranger").unwrap();
        let allowed_signers = dir.path().join("allowed_signers");
        std::fs::write(
            &allowed_signers,
            format!("{}\n", admin.allowed_signer_line("admin@example.org")),
        )
        .unwrap();
        World {
            dir,
            repo,
            bare,
            admin,
            stranger,
            allowed_signers,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Commits `files` signed by the admin and pushes main; returns the commit.
    fn publish(&self, files: &[(&str, Option<&str>)], message: &str) -> String {
        let rev = self.repo.commit(files, Some(&self.admin), message).unwrap();
        self.repo.push(&self.bare, "main:main").unwrap();
        rev
    }
}

/// The fetch process's source config (the agent's `GitSource`, as JSON).
fn source(url: &str, reference: &str, paths: &[&str], signers: Option<&Path>) -> Value {
    // The agent's config normalizes `.` (the top directory) to "".
    let normalized: Vec<&str> = paths
        .iter()
        .map(|p| if *p == "." { "" } else { p })
        .collect();
    json!({
        "url": url,
        "reference": reference,
        "paths": normalized,
        "pathTemplates": paths,
        "interval": 60000,
        "timeout": 60000,
        "auth": {},
        "allowedSigners": signers,
    })
}

/// Runs `berth source-fetch` once and returns its answer.
fn fetch(work: &Path, source: &Value, current: Option<&str>) -> Value {
    let req = json!({
        "source": source,
        "gitDir": work.join("fetch.git"),
        "snapshots": work.join("snapshots"),
        "current": current,
    });
    let mut child = Command::new(berth_bin())
        .arg("source-fetch")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start berth source-fetch");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "source-fetch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !work.join("fetch.git").exists(),
        "the fetch repository is removed after each fetch"
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
