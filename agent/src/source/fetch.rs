//! The fetch process (`berth source-fetch`, started by the agent for each sync): fetches the
//! configured ref (shallow, depth 1) into berth's own bare repository, checks the commit's
//! signature, and checks its manifests out into a new snapshot directory. It runs in a
//! process of its own so a server that hangs or a huge repository costs a kill at the
//! deadline, never a stuck thread or the agent's memory.
//!
//! `file://` URLs are read in place (no transport: gix would start `git-upload-pack`).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::remote::Direction;
use serde::{Deserialize, Serialize};

use super::config::GitSource;
use super::snapshot;
use super::{signers, verify};

/// What the agent asks of one fetch process (JSON on its stdin).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchRequest {
    pub source: GitSource,
    /// A bare repository for this fetch alone (created empty, removed at the end).
    pub git_dir: PathBuf,
    /// Where the new snapshot is created.
    pub snapshots: PathBuf,
    /// The revision applied now: when the ref still names it, nothing is checked out.
    pub current: Option<String>,
}

/// What it found (JSON on its stdout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum FetchOutcome {
    /// The ref names the revision applied now.
    Unchanged { revision: String },
    /// A new, verified revision, checked out at `snapshot`.
    Fetched {
        revision: String,
        snapshot: PathBuf,
        /// `principals (SHA256:…)` when signatures are checked.
        signer: Option<String>,
    },
    /// The fetch (or reading the local repository) failed.
    FetchFailed { message: String },
    /// The commit is not signed by an allowed signer.
    Unverified { revision: String, message: String },
    /// The commit cannot be checked out (a path is missing, the tree is too large).
    Invalid { revision: String, message: String },
}

/// The fetch process's body.
pub fn run(req: &FetchRequest) -> FetchOutcome {
    let outcome = run_in(req);
    // The fetched objects are needed only until the checkout: each sync starts from an empty
    // repository, so nothing accumulates and a fetch killed half-way leaves nothing to repair.
    let _ = std::fs::remove_dir_all(&req.git_dir);
    outcome
}

fn run_in(req: &FetchRequest) -> FetchOutcome {
    let (repo, commit) = match locate(req) {
        Ok(Located::Unchanged(revision)) => return FetchOutcome::Unchanged { revision },
        Ok(Located::Found(repo, commit)) => (repo, commit),
        Err(message) => return FetchOutcome::FetchFailed { message },
    };
    let revision = commit.to_string();
    if req.current.as_deref() == Some(revision.as_str()) {
        return FetchOutcome::Unchanged { revision };
    }
    let commit = match repo.find_commit(commit) {
        Ok(c) => c,
        Err(e) => {
            return FetchOutcome::FetchFailed {
                message: format!("read commit {revision}: {e}"),
            }
        }
    };
    let signer = match &req.source.allowed_signers {
        None => None,
        Some(path) => match check_signature(&commit, path) {
            Ok(s) => Some(format!("{} ({})", s.principals, s.fingerprint)),
            Err(message) => return FetchOutcome::Unverified { revision, message },
        },
    };
    let tree = match commit.tree() {
        Ok(t) => t,
        Err(e) => {
            return FetchOutcome::FetchFailed {
                message: format!("read the tree of {revision}: {e}"),
            }
        }
    };
    match snapshot::check_out(&tree, &req.source.paths, &req.snapshots, &revision) {
        Ok(snapshot) => FetchOutcome::Fetched {
            revision,
            snapshot,
            signer,
        },
        Err(message) => FetchOutcome::Invalid { revision, message },
    }
}

fn check_signature(commit: &gix::Commit<'_>, allowed: &Path) -> Result<verify::Signer, String> {
    let signers = signers::read(allowed).map_err(|e| format!("{e:#}"))?;
    let signature = commit
        .signature()
        .map_err(|e| format!("read the commit's signature: {e}"))?;
    let committed_at = commit
        .committer()
        .map_err(|e| format!("read the commit's committer: {e}"))?
        .time()
        .map_err(|e| format!("read the commit's time: {e}"))?
        .seconds;
    match signature {
        None => verify::verify(None, &[], committed_at, &signers),
        Some((armor, signed)) => {
            verify::verify(Some(&armor), &signed.to_bstring(), committed_at, &signers)
        }
    }
}

enum Located {
    /// The server's ref names the revision applied now: nothing was fetched.
    Unchanged(String),
    /// The repository that holds the commit the ref names.
    Found(Box<gix::Repository>, gix::ObjectId),
}

fn locate(req: &FetchRequest) -> Result<Located, String> {
    let src = &req.source;
    if let Some(path) = src.url.strip_prefix("file://") {
        let repo = gix::open_opts(path, gix::open::Options::isolated())
            .map_err(|e| format!("open repository {path}: {e}"))?;
        let id = resolve_local(&repo, &src.reference)?;
        return Ok(Located::Found(Box::new(repo), id));
    }
    let _ = std::fs::remove_dir_all(&req.git_dir);
    let repo = init(&req.git_dir, src)?;
    match fetch(&repo, src, req.current.as_deref())? {
        Some(unchanged) => Ok(Located::Unchanged(unchanged)),
        None => {
            let id = repo
                .find_reference(FETCHED)
                .map_err(|e| format!("read {FETCHED} after the fetch: {e}"))?
                .into_fully_peeled_id()
                .map_err(|e| format!("peel {FETCHED}: {e}"))?
                .detach();
            Ok(Located::Found(Box::new(repo), id))
        }
    }
}

/// Where each fetch puts the commit it brought.
const FETCHED: &str = "refs/berth/fetched";

fn is_commit_id(reference: &str) -> bool {
    reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

fn resolve_local(repo: &gix::Repository, reference: &str) -> Result<gix::ObjectId, String> {
    if is_commit_id(reference) {
        let id = gix::ObjectId::from_hex(reference.as_bytes()).map_err(|e| e.to_string())?;
        repo.find_commit(id)
            .map_err(|e| format!("commit {reference} is not in the repository: {e}"))?;
        return Ok(id);
    }
    let candidates = [
        format!("refs/heads/{reference}"),
        format!("refs/tags/{reference}"),
        reference.to_string(),
    ];
    for name in candidates {
        if let Ok(Some(r)) = repo.try_find_reference(name.as_str()) {
            let id = r
                .into_fully_peeled_id()
                .map_err(|e| format!("peel {name}: {e}"))?;
            return Ok(id.detach());
        }
    }
    Err(format!(
        "no branch or tag {reference:?} in the repository (deleted?)"
    ))
}

fn init(git_dir: &Path, src: &GitSource) -> Result<gix::Repository, String> {
    let mut overrides = Vec::new();
    if let (Some(key), Some(known)) = (&src.auth.ssh_key_file, &src.auth.known_hosts_file) {
        overrides.push(format!(
            "core.sshCommand=ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -i {}",
            shell_quote(known),
            shell_quote(key)
        ));
    }
    let options = gix::open::Options::isolated().config_overrides(overrides);
    if let Some(parent) = git_dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    }
    gix::ThreadSafeRepository::init_opts(
        git_dir,
        gix::create::Kind::Bare,
        gix::create::Options::default(),
        options,
    )
    .map(Into::into)
    .map_err(|e| {
        format!(
            "create the fetch repository {}: {}",
            git_dir.display(),
            chain(&e)
        )
    })
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Fetches the ref's commit (depth 1) into `refs/berth/fetched`; returns the revision
/// instead, fetching nothing, when the server's ref still names `current`.
fn fetch(
    repo: &gix::Repository,
    src: &GitSource,
    current: Option<&str>,
) -> Result<Option<String>, String> {
    // A branch, a tag (matched as git does: refs/NAME, refs/tags/NAME, refs/heads/NAME) or a
    // commit id; forced, so a force-pushed branch is followed.
    let spec = format!("+{}:{FETCHED}", src.reference);
    let remote = repo
        .remote_at(src.url.as_str())
        .map_err(|e| format!("remote {}: {e}", src.url))?
        .with_fetch_tags(gix::remote::fetch::Tags::None)
        .with_refspecs([spec.as_str()], Direction::Fetch)
        .map_err(|e| format!("refspec {spec}: {e}"))?;
    let account = account(src)?;
    let mut connection = remote
        .connect(Direction::Fetch)
        .map_err(|e| format!("connect to {}: {}", src.url, chain(&e)))?;
    if let Some(ca) = &src.auth.ca_file {
        connection.set_transport_options(https_options(repo, &src.url, ca)?);
    }
    if let Some(account) = account {
        connection.set_credentials(move |action| match action {
            gix::credentials::helper::Action::Get(ctx) => {
                Ok(Some(gix::credentials::protocol::Outcome {
                    identity: account.clone(),
                    next: ctx.into(),
                }))
            }
            _ => Ok(None),
        });
    }
    let prepare = connection
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|e| format!("list refs of {}: {}", src.url, chain(&e)))?;
    let tip = prepare
        .ref_map()
        .mappings
        .iter()
        .find_map(|m| m.remote.peeled_id())
        .map(|id| id.to_string())
        .ok_or_else(|| {
            format!(
                "no branch or tag {:?} at {} (deleted?)",
                src.reference, src.url
            )
        })?;
    if current == Some(tip.as_str()) {
        return Ok(Some(tip));
    }
    let depth = std::num::NonZeroU32::new(1).expect("1 is not zero");
    prepare
        .with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(depth))
        .receive(gix::progress::Discard, &AtomicBool::new(false))
        .map_err(|e| format!("fetch {} from {}: {}", src.reference, src.url, chain(&e)))?;
    Ok(None)
}

/// gix's HTTP options for `url`, with the CAs of `ca` trusted besides the system's.
fn https_options(
    repo: &gix::Repository,
    url: &str,
    ca: &Path,
) -> Result<Box<dyn std::any::Any>, String> {
    use gix::protocol::transport::client::blocking_io::http;
    let pem = std::fs::read(ca).map_err(|e| format!("read caFile {}: {e}", ca.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("caFile {}: not PEM certificates: {e}", ca.display()))?;
    let mut options = repo
        .transport_options(url, None)
        .map_err(|e| format!("HTTP options for {url}: {e}"))?
        .and_then(|o| o.downcast::<http::Options>().ok())
        .map(|o| *o)
        .unwrap_or_default();
    let reqwest_options = http::reqwest::Options {
        configure_client: Some(Box::new(move |mut builder| {
            for cert in &certs {
                builder = builder.add_root_certificate(cert.clone());
            }
            Ok(builder)
        })),
        configure_request: None,
    };
    options.backend = Some(std::sync::Arc::new(std::sync::Mutex::new(reqwest_options)));
    Ok(Box::new(options))
}

/// HTTPS basic auth from the configured files, read now (a rotated token needs no restart).
fn account(src: &GitSource) -> Result<Option<gix::sec::identity::Account>, String> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("read {}: {e}", p.display()))
    };
    let (username, password) = match (&src.auth.password_file, &src.auth.token_file) {
        (Some(p), _) => (
            src.auth.username.clone().unwrap_or_else(|| "git".into()),
            read(p)?,
        ),
        (None, Some(t)) => (
            src.auth
                .username
                .clone()
                .unwrap_or_else(|| "x-access-token".into()),
            read(t)?,
        ),
        (None, None) => return Ok(None),
    };
    Ok(Some(gix::sec::identity::Account {
        username,
        password,
        oauth_refresh_token: None,
    }))
}

/// An error and its causes, `a: b: c` (gix's top-level messages alone are vague).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
        cause = c.source();
    }
    out
}
