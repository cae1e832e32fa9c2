//! Loading a manifest directory: which files count, reading them safely, and the checks
//! that span files (duplicates, references).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::document::split;
use crate::guard::MAX_FILE_BYTES;
use crate::hash::{runtime_hash, sha256_digest, spec_hash};
use crate::object::{Object, ObjectRef};
use crate::parse::{env_files, parse_document};
use crate::place::locate_text;
use crate::problem::{Problem, HINT_SEPARATOR};
use crate::refs;

/// Everything one load found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadResult {
    /// Objects of the files that have no problem, in file then document order.
    pub objects: Vec<Loaded>,
    /// Every manifest file considered, in lexical order.
    pub files: Vec<FileReport>,
    /// All problems of all files (and of the directory itself), in file order.
    pub problems: Vec<Problem>,
}

impl LoadResult {
    /// No problem anywhere.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One manifest file: what it names and, when it fails, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    /// The objects the file names (best effort when it has problems).
    pub objects: Vec<ObjectRef>,
    /// Its problems, one per line, when it has any; its objects are then not loaded.
    pub error: Option<String>,
}

/// An object ready to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loaded {
    pub object: Object,
    pub source: Source,
    /// The canonical spec hash, `sha256:<hex>`: the revision of the object.
    pub hash: String,
    /// What the running object is made of ([`crate::runtime_hash`]): a container is recreated
    /// only when this changes.
    pub runtime_hash: String,
}

/// Where a document starts: its file and the 1-based line and column of its first content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Source {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

/// Whether a directory entry is a manifest: `*.yaml`/`*.yml`, not a dot-file or an editor's
/// or tool's leftover (`*~`, `*.swp`, `*.bak`, `*.tmp`, `#*#`).
pub fn is_manifest_name(name: &str) -> bool {
    let leftover = name.starts_with('.')
        || name.ends_with('~')
        || [".swp", ".bak", ".tmp"].iter().any(|s| name.ends_with(s))
        || (name.starts_with('#') && name.ends_with('#'));
    !leftover && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

pub(crate) struct DocEntry {
    pub object_ref: Option<ObjectRef>,
    pub start: (usize, usize),
    pub object: Option<Object>,
    /// (spec hash, runtime hash), once the object and its env files are read.
    pub hash: Option<(String, String)>,
    /// The document's text and line offset, to place problems found later.
    pub text: String,
    pub line_offset: usize,
}

pub(crate) struct FileEntry {
    pub path: PathBuf,
    pub docs: Vec<DocEntry>,
    pub problems: Vec<Problem>,
}

impl FileEntry {
    pub(crate) fn problem(&mut self, pos: (usize, usize), object: Option<ObjectRef>, text: &str) {
        self.problems
            .push(Problem::from_text(self.path.clone(), pos, object, text));
    }
}

/// Loads every manifest of `dir`, as one consistent snapshot.
///
/// When `dir` is a symlink (git-sync) or holds a `..data` symlink (Kubernetes ConfigMap),
/// it is resolved once and every file is read through the resolved path, so an atomic swap
/// of the link while loading cannot mix two versions. Reported paths keep `dir` as given.
pub fn load_dir(dir: &Path) -> LoadResult {
    let (problems, files) = read_dir(dir);
    finish(problems, files)
}

/// Loads several directories as one set, in the given order (a git source's `paths`): the
/// same object defined in two of them is a duplicate, as within one directory.
pub fn load_dirs(dirs: &[PathBuf]) -> LoadResult {
    let (mut problems, mut files) = (Vec::new(), Vec::new());
    for dir in dirs {
        let (p, f) = read_dir(dir);
        problems.extend(p);
        files.extend(f);
    }
    finish(problems, files)
}

/// A load that found no manifests to read: `message` (and `hint`) say why, as a problem of
/// `dir`, which the reconciler takes as "remove nothing".
pub fn unavailable(dir: &Path, message: &str, hint: &str) -> LoadResult {
    let text = format!("{message}{HINT_SEPARATOR}{hint}");
    finish(
        vec![Problem::from_text(dir.to_path_buf(), (0, 0), None, &text)],
        Vec::new(),
    )
}

/// The files of one directory, parsed, and the problems of the directory itself.
fn read_dir(dir: &Path) -> (Vec<Problem>, Vec<FileEntry>) {
    let mut dir_problems = Vec::new();
    let dir_problem = |text: String| Problem::from_text(dir.to_path_buf(), (0, 0), None, &text);
    let root = match fs::canonicalize(dir) {
        Ok(root) => root,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            dir_problems.push(dir_problem(format!(
                "manifest directory does not exist{HINT_SEPARATOR}create it, or point berth at the directory that holds the manifests"
            )));
            return (dir_problems, Vec::new());
        }
        Err(e) => {
            dir_problems.push(dir_problem(format!(
                "cannot resolve manifest directory: {e}"
            )));
            return (dir_problems, Vec::new());
        }
    };
    // ConfigMap layout: `..data -> ..2024_01_01_00_00_00.123`, files link through `..data`.
    let root = match fs::canonicalize(root.join("..data")) {
        Ok(data) if data.is_dir() => data,
        _ => root,
    };
    let entries = match fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) => {
            let text = if root.is_dir() {
                format!("cannot read manifest directory: {e}{HINT_SEPARATOR}berth needs read and search permission on it")
            } else {
                format!("manifest directory is not a directory{HINT_SEPARATOR}point berth at a directory of *.yaml files")
            };
            dir_problems.push(dir_problem(text));
            return (dir_problems, Vec::new());
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let os_name = entry.file_name();
                match os_name.to_str() {
                    Some(name) if is_manifest_name(name) => names.push(name.to_string()),
                    Some(_) => {}
                    None => {
                        let lossy = os_name.to_string_lossy();
                        if lossy.ends_with(".yaml") || lossy.ends_with(".yml") {
                            dir_problems.push(Problem::from_text(
                                dir.join(&os_name),
                                (0, 0),
                                None,
                                &format!("file name is not UTF-8{HINT_SEPARATOR}rename the file"),
                            ));
                        }
                    }
                }
            }
            Err(e) => {
                dir_problems.push(dir_problem(format!("cannot list manifest directory: {e}")))
            }
        }
    }
    names.sort();
    let mut inputs = Vec::new();
    for name in names {
        let shown = dir.join(&name);
        let real = root.join(&name);
        match fs::metadata(&real) {
            // Subdirectories are not read; other non-files (fifos, sockets) are refused
            // because opening them could block.
            Ok(m) if m.is_dir() => continue,
            Ok(m) if !m.is_file() => inputs.push((
                shown,
                Err(format!("not a regular file{HINT_SEPARATOR}manifests are plain files")),
            )),
            Ok(_) => inputs.push((shown, read_limited(&real))),
            Err(e) => inputs.push((
                shown,
                Err(format!("cannot read file: {e}{HINT_SEPARATOR}a dangling symlink? check where it points")),
            )),
        }
    }
    let files = inputs
        .into_iter()
        .map(|(path, bytes)| parse_file(path, bytes))
        .collect();
    (dir_problems, files)
}

/// Loads manifests from memory: `(path, content)` pairs in the given order, with the same
/// checks as [`load_dir`] (env files are still read from disk).
pub fn load_files(files: Vec<(PathBuf, Vec<u8>)>) -> LoadResult {
    let files = files
        .into_iter()
        .map(|(path, bytes)| {
            let bytes = if bytes.len() as u64 > MAX_FILE_BYTES {
                Err(too_large())
            } else {
                Ok(bytes)
            };
            parse_file(path, bytes)
        })
        .collect();
    finish(Vec::new(), files)
}

fn too_large() -> String {
    format!(
        "file is larger than {} KiB{HINT_SEPARATOR}split it into several files",
        MAX_FILE_BYTES / 1024
    )
}

/// Reads at most the size limit plus one byte, so a huge file costs no memory.
fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let file = fs::File::open(path).map_err(|e| format!("cannot read file: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read file: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// 1-based line and column (in characters) of a byte offset in valid UTF-8 text.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn parse_file(path: PathBuf, bytes: Result<Vec<u8>, String>) -> FileEntry {
    let mut entry = FileEntry {
        path,
        docs: Vec::new(),
        problems: Vec::new(),
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(text) => {
            entry.problem((0, 0), None, &text);
            return entry;
        }
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let pos = position(valid, valid.len());
            entry.problem(pos, None, &format!("file is not valid UTF-8 (byte 0x{:02x} at offset {}){HINT_SEPARATOR}save the file as UTF-8", bytes[e.valid_up_to()], e.valid_up_to()));
            return entry;
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for chunk in split(text) {
        let parsed = parse_document(&entry.path, &chunk);
        entry.problems.extend(parsed.problems);
        let mut hash = None;
        if let Some(object) = &parsed.object {
            let mut digests = Vec::new();
            for env_file in env_files(object) {
                let at = locate_text(&chunk, &env_file.to_string_lossy());
                match read_limited(env_file) {
                    Ok(content) => digests.push(sha256_digest(&content)),
                    Err(e) => entry.problem(
                        at,
                        parsed.object_ref.clone(),
                        &format!("env file `{}`: {e}{HINT_SEPARATOR}create the file or remove it from envFiles", env_file.display()),
                    ),
                }
            }
            if digests.len() == env_files(object).len() {
                hash = Some((spec_hash(object, &digests), runtime_hash(object, &digests)));
            }
        }
        entry.docs.push(DocEntry {
            object_ref: parsed.object_ref,
            start: parsed.start,
            object: parsed.object,
            hash,
            text: chunk.text.to_string(),
            line_offset: chunk.line_offset,
        });
    }
    entry
}

/// Problems for every kind/name defined more than once, on each place.
fn check_duplicates(files: &mut [FileEntry]) {
    // Per kind/name: (file index, place of the document).
    type Places = Vec<(usize, (usize, usize))>;
    let mut places: BTreeMap<ObjectRef, Places> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        for d in &f.docs {
            if let Some(r) = &d.object_ref {
                places.entry(r.clone()).or_default().push((i, d.start));
            }
        }
    }
    for (object, at) in places {
        if at.len() < 2 {
            continue;
        }
        let shown: Vec<String> = at
            .iter()
            .map(|(i, (l, c))| format!("{}:{l}:{c}", files[*i].path.display()))
            .collect();
        for (n, (i, pos)) in at.iter().enumerate() {
            let others: Vec<&str> = shown
                .iter()
                .enumerate()
                .filter(|(m, _)| *m != n)
                .map(|(_, s)| s.as_str())
                .collect();
            files[*i].problem(
                *pos,
                Some(object.clone()),
                &format!(
                    "{object} is defined more than once, also at {}{HINT_SEPARATOR}a kind/name pair is unique across the directory; rename or remove all but one",
                    others.join(", ")
                ),
            );
        }
    }
}

fn finish(dir_problems: Vec<Problem>, mut files: Vec<FileEntry>) -> LoadResult {
    check_duplicates(&mut files);
    refs::check(&mut files);
    let mut result = LoadResult {
        problems: dir_problems,
        ..LoadResult::default()
    };
    for mut f in files {
        f.problems.sort_by_key(|p| (p.line, p.column));
        let report = FileReport {
            path: f.path.clone(),
            objects: f.docs.iter().filter_map(|d| d.object_ref.clone()).collect(),
            error: (!f.problems.is_empty()).then(|| {
                f.problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            }),
        };
        if f.problems.is_empty() {
            for d in f.docs {
                if let (Some(object), Some((hash, runtime_hash))) = (d.object, d.hash) {
                    result.objects.push(Loaded {
                        object,
                        source: Source {
                            file: f.path.clone(),
                            line: d.start.0,
                            column: d.start.1,
                        },
                        hash,
                        runtime_hash,
                    });
                }
            }
        }
        result.files.push(report);
        result.problems.extend(f.problems);
    }
    result
}
