//! The container's user: `uid`, `uid:gid`, `name`, `name:group` resolved in the image's own
//! `/etc/passwd` and `/etc/group` (read after `pivot_root`), with supplementary groups, by
//! runc's rules (libcontainer/user `GetExecUser`), and the switch to it.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use super::{errno_text, io_text, SecurityError};
use crate::sys;

/// Largest id runc and Docker accept.
const MAX_ID: u64 = (1 << 31) - 1;

/// A passwd or group database larger than this is not one; the image gets an error instead
/// of making the init read without end.
const MAX_DATABASE_BYTES: u64 = 16 << 20;

/// One `/etc/passwd` entry (the fields berth uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One `/etc/group` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Who the container's process runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (empty unless a named user is a member of groups).
    pub groups: Vec<u32>,
    pub home: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("user {0}: uids and gids must be in range 0-{MAX_ID}")]
    Range(String),
}

fn id(field: &str) -> Option<u32> {
    field.parse::<u32>().ok()
}

/// Parses `/etc/passwd`. Comments, blank lines and entries whose uid or gid is not a number
/// are skipped (never read as 0, which would make them root).
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: id(f.get(2)?)?,
                gid: id(f.get(3)?)?,
                home: f.get(5).map(|h| h.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// Parses `/etc/group`, with the same rules as [`parse_passwd`].
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: id(f.get(2)?)?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn numeric(arg: &str) -> Option<Result<u32, ()>> {
    let n: u64 = arg.parse().ok()?;
    Some(if n > MAX_ID { Err(()) } else { Ok(n as u32) })
}

/// Resolves `spec` (`None` is root) against the databases, runc's way: a number is a uid
/// whether or not passwd has it; a name must exist; the first match wins; supplementary
/// groups come from the groups that list the matched user's name, and only when no group
/// was given.
pub fn resolve(
    spec: Option<&str>,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<ExecUser, UserError> {
    let spec = spec.unwrap_or("0");
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let mut user = ExecUser {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
        home: "/".into(),
    };
    let user_num = numeric(user_arg);
    let found = passwd.iter().find(|p| match user_num {
        Some(Ok(uid)) => p.uid == uid,
        Some(Err(())) => false,
        None => p.name == user_arg,
    });
    let matched_name = match (found, user_num) {
        (Some(p), _) => {
            user.uid = p.uid;
            user.gid = p.gid;
            if !p.home.is_empty() {
                user.home = p.home.clone();
            }
            Some(p.name.as_str())
        }
        (None, Some(Ok(uid))) => {
            user.uid = uid;
            None
        }
        (None, Some(Err(()))) => return Err(UserError::Range(spec.to_string())),
        (None, None) => return Err(UserError::NoUser(user_arg.to_string())),
    };
    match group_arg {
        Some(group_arg) => {
            let group_num = numeric(group_arg);
            let found = groups.iter().find(|g| match group_num {
                Some(Ok(gid)) => g.gid == gid,
                Some(Err(())) => false,
                None => g.name == group_arg,
            });
            user.gid = match (found, group_num) {
                (Some(g), _) => g.gid,
                (None, Some(Ok(gid))) => gid,
                (None, Some(Err(()))) => return Err(UserError::Range(spec.to_string())),
                (None, None) => return Err(UserError::NoGroup(group_arg.to_string())),
            };
        }
        None => {
            if let Some(name) = matched_name {
                user.groups = groups
                    .iter()
                    .filter(|g| g.members.iter().any(|m| m == name))
                    .map(|g| g.gid)
                    .collect();
            }
        }
    }
    Ok(user)
}

/// Reads a database file of the image (after `pivot_root`, so the path is the container's).
/// A missing file is `None`: numeric users still work then, as in runc. A file that is not
/// regular (a FIFO would block the init for ever) or too large is an error.
pub fn read_database(path: &Path) -> Result<Option<String>, SecurityError> {
    let fail = |reason: String| SecurityError::ReadDatabase {
        path: path.display().to_string(),
        reason,
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(io_text(&e))),
    };
    let meta = file.metadata().map_err(|e| fail(io_text(&e)))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > MAX_DATABASE_BYTES {
        return Err(fail(format!("larger than {MAX_DATABASE_BYTES} bytes")));
    }
    let mut bytes = Vec::new();
    file.take(MAX_DATABASE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(io_text(&e)))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Resolves `spec` in the container's `/etc/passwd` and `/etc/group`.
pub fn resolve_in_root(spec: Option<&str>) -> Result<ExecUser, SecurityError> {
    let passwd = read_database(Path::new("/etc/passwd"))?
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let groups = read_database(Path::new("/etc/group"))?
        .map(|t| parse_group(&t))
        .unwrap_or_default();
    Ok(resolve(spec, &passwd, &groups)?)
}

/// Becomes `user`: supplementary groups, then gid, then uid, with keep-caps on so the
/// permitted capabilities survive the uid change (the caller installs the final sets).
pub fn switch_to(user: &ExecUser) -> Result<(), SecurityError> {
    let step = |op: String| {
        move |e: nix::errno::Errno| SecurityError::Identity {
            op,
            reason: errno_text(e),
        }
    };
    sys::caps::set_keepcaps(true).map_err(|e| SecurityError::Identity {
        op: "set keep-caps".into(),
        reason: io_text(&e),
    })?;
    let groups: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).map_err(step(format!("setgroups {:?}", user.groups)))?;
    let gid = Gid::from_raw(user.gid);
    setresgid(gid, gid, gid).map_err(step(format!("setgid {}", user.gid)))?;
    let uid = Uid::from_raw(user.uid);
    setresuid(uid, uid, uid).map_err(step(format!("setuid {}", user.uid)))?;
    sys::caps::set_keepcaps(false).map_err(|e| SecurityError::Identity {
        op: "clear keep-caps".into(),
        reason: io_text(&e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
# comment
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App:/home/app:/bin/sh
broken:x:notanumber:0::/:/bin/sh

nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:2000:2000:second app, ignored:/:/bin/sh
";
    const GROUP: &str = "\
root:x:0:
wheel:x:10:root,app
audio:x:29:app, nobody
app:x:1000:
staff:x:50:
nogroup:x:65534:
";

    fn users() -> (Vec<PasswdEntry>, Vec<GroupEntry>) {
        (parse_passwd(PASSWD), parse_group(GROUP))
    }

    fn user(uid: u32, gid: u32, groups: &[u32], home: &str) -> ExecUser {
        ExecUser {
            uid,
            gid,
            groups: groups.to_vec(),
            home: home.into(),
        }
    }

    #[test]
    fn parses_databases() {
        let (p, g) = users();
        assert_eq!(
            p.len(),
            5,
            "comment, blank line and the bad uid are skipped: {p:?}"
        );
        assert_eq!(
            p[2],
            PasswdEntry {
                name: "app".into(),
                uid: 1000,
                gid: 1000,
                home: "/home/app".into()
            }
        );
        assert_eq!(
            g[2],
            GroupEntry {
                name: "audio".into(),
                gid: 29,
                members: vec!["app".into(), "nobody".into()]
            }
        );
        assert_eq!(g[0].members, Vec::<String>::new());
    }

    #[test]
    fn resolves_names_numbers_and_groups() {
        let (p, g) = users();
        let cases: &[(Option<&str>, ExecUser)] = &[
            (None, user(0, 0, &[10], "/root")),
            (Some("0"), user(0, 0, &[10], "/root")),
            (Some("nobody"), user(65534, 65534, &[29], "/nonexistent")),
            (Some("app"), user(1000, 1000, &[10, 29], "/home/app")),
            (Some("1000"), user(1000, 1000, &[10, 29], "/home/app")),
            // A uid without an entry is fine; it gets gid 0 and no groups.
            (Some("4242"), user(4242, 0, &[], "/")),
            (Some("101:101"), user(101, 101, &[], "/")),
            // An explicit group replaces the primary group and drops supplementary ones.
            (Some("app:staff"), user(1000, 50, &[], "/home/app")),
            (Some("nobody:10"), user(65534, 10, &[], "/nonexistent")),
            (Some("nobody:777"), user(65534, 777, &[], "/nonexistent")),
        ];
        for (spec, want) in cases {
            assert_eq!(
                &resolve(*spec, &p, &g).expect("resolves"),
                want,
                "user {spec:?}"
            );
        }
    }

    #[test]
    fn unknown_names_are_docker_errors() {
        let (p, g) = users();
        assert_eq!(
            resolve(Some("nobody2"), &p, &g).unwrap_err().to_string(),
            "unable to find user nobody2: no matching entries in passwd file"
        );
        assert_eq!(
            resolve(Some("app:staff2"), &p, &g).unwrap_err().to_string(),
            "unable to find group staff2: no matching entries in group file"
        );
        assert_eq!(
            resolve(Some("4294967295"), &p, &g).unwrap_err().to_string(),
            "user 4294967295: uids and gids must be in range 0-2147483647"
        );
        // Without any database, numbers work and names do not.
        assert_eq!(
            resolve(Some("12:34"), &[], &[]).expect("numeric"),
            user(12, 34, &[], "/")
        );
        assert_eq!(resolve(None, &[], &[]).expect("root"), user(0, 0, &[], "/"));
        assert_eq!(
            resolve(Some("root"), &[], &[]),
            Err(UserError::NoUser("root".into()))
        );
    }

    #[test]
    fn database_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("passwd");
        assert_eq!(read_database(&path).expect("missing is fine"), None);
        std::fs::write(&path, PASSWD).expect("write");
        assert_eq!(read_database(&path).expect("read").as_deref(), Some(PASSWD));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .expect("mkfifo");
        let err = read_database(&fifo).unwrap_err().to_string();
        assert!(err.ends_with("fifo: not a regular file"), "{err}");
    }
}
