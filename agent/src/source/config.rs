//! `source.git` of agent.yaml: where the manifests come from when they live in git, resolved
//! for this host (`{hostname}` and `{label.NAME}` in `paths` expanded).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// `source:` of agent.yaml.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceFileConfig {
    pub git: Option<GitFileConfig>,
}

/// `source.git:` of agent.yaml.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitFileConfig {
    /// `https://`, `ssh://`, `git://` or `file://` (plain `http://` only to loopback).
    pub url: String,
    /// A branch, a tag or a full commit id [default: main]
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// Directories of the repository whose manifests load, merged in order; `{hostname}` and
    /// `{label.NAME}` expand [default: the repository's top directory]
    pub paths: Option<Vec<String>>,
    /// How often the repository is fetched, give or take a tenth [default: 1m]
    pub interval: Option<berth_spec::DurationSpec>,
    /// A fetch that takes longer is stopped [default: 2m]
    pub timeout: Option<berth_spec::DurationSpec>,
    /// HTTPS basic auth user [default: `git` with passwordFile, `x-access-token` with tokenFile]
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    /// SSH: the private key and the known host keys (both required for `ssh://`).
    pub ssh_key_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    /// PEM certificates of CAs trusted for the `https://` server, besides the system's.
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub verify: VerifyFileConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyFileConfig {
    /// git's allowed-signers file: every applied commit must carry an SSH signature by one of
    /// its keys.
    pub allowed_signers: Option<PathBuf>,
}

/// A git source, resolved for this host. Also what the agent hands its fetch process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    pub url: String,
    pub reference: String,
    /// Expanded, relative, normalized (`""` is the top directory).
    pub paths: Vec<String>,
    /// As written in the config, for the status.
    pub path_templates: Vec<String>,
    #[serde(with = "millis")]
    pub interval: Duration,
    #[serde(with = "millis")]
    pub timeout: Duration,
    pub auth: GitAuth,
    pub allowed_signers: Option<PathBuf>,
}

/// Credentials, as files read at each fetch (so a rotated token needs no restart).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitAuth {
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub ssh_key_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

impl GitSource {
    /// Checks `file` and expands its paths for a host called `hostname` with `labels`.
    pub fn resolve(
        file: GitFileConfig,
        hostname: &str,
        labels: &BTreeMap<String, String>,
    ) -> anyhow::Result<GitSource> {
        check_url(&file.url)?;
        let reference = file.reference.unwrap_or_else(|| "main".into());
        check_reference(&reference)?;
        let path_templates = file.paths.unwrap_or_else(|| vec![".".into()]);
        if path_templates.is_empty() {
            bail!(
                "source.git.paths is empty (hint: leave it out for the repository's top directory)"
            );
        }
        let paths = path_templates
            .iter()
            .map(|t| expand(t, hostname, labels))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let interval = file.interval.map_or(DEFAULT_INTERVAL, |d| d.get());
        if interval < Duration::from_secs(1) {
            bail!("source.git.interval must be at least 1s");
        }
        let timeout = file.timeout.map_or(DEFAULT_TIMEOUT, |d| d.get());
        if timeout < Duration::from_secs(1) {
            bail!("source.git.timeout must be at least 1s");
        }
        let auth = GitAuth {
            username: file.username,
            password_file: file.password_file,
            token_file: file.token_file,
            ssh_key_file: file.ssh_key_file,
            known_hosts_file: file.known_hosts_file,
            ca_file: file.ca_file,
        };
        check_auth(&file.url, &auth)?;
        Ok(GitSource {
            url: file.url,
            reference,
            paths,
            path_templates,
            interval,
            timeout,
            auth,
            allowed_signers: file.verify.allowed_signers,
        })
    }
}

fn scheme(url: &str) -> Option<&str> {
    url.split_once("://").map(|(s, _)| s)
}

fn check_url(url: &str) -> anyhow::Result<()> {
    match scheme(url) {
        Some("https" | "ssh" | "git" | "file") => Ok(()),
        Some("http") => {
            let host = url["http://".len()..]
                .split(['/', '@'])
                .next()
                .unwrap_or_default();
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            if matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                Ok(())
            } else {
                bail!("source.git.url {url:?}: plain http is allowed to loopback only (hint: use https://)")
            }
        }
        Some(other) => bail!(
            "source.git.url {url:?}: scheme {other:?} is not supported (hint: https://, ssh://, git:// or file://)"
        ),
        None => bail!(
            "source.git.url {url:?} has no scheme (hint: write scp-like `git@host:repo` as ssh://git@host/repo)"
        ),
    }
}

fn check_reference(reference: &str) -> anyhow::Result<()> {
    let bad = reference.is_empty()
        || reference.starts_with('-')
        || reference.contains("..")
        || reference.contains(|c: char| c.is_whitespace() || "~^:?*[\\".contains(c));
    if bad {
        bail!("source.git.ref {reference:?} is not a branch, tag or commit name");
    }
    Ok(())
}

fn check_auth(url: &str, auth: &GitAuth) -> anyhow::Result<()> {
    let https = matches!(scheme(url), Some("https" | "http"));
    let ssh = scheme(url) == Some("ssh");
    if auth.password_file.is_some() && auth.token_file.is_some() {
        bail!("source.git: passwordFile and tokenFile exclude each other");
    }
    if !https
        && (auth.password_file.is_some() || auth.token_file.is_some() || auth.username.is_some())
    {
        bail!("source.git: username, passwordFile and tokenFile are for https:// URLs");
    }
    if scheme(url) == Some("http") && (auth.password_file.is_some() || auth.token_file.is_some()) {
        bail!("source.git: credentials are never sent over plain http (hint: use https://, with caFile for a private CA)");
    }
    if scheme(url) != Some("https") && auth.ca_file.is_some() {
        bail!("source.git: caFile is for https:// URLs");
    }
    if !ssh && (auth.ssh_key_file.is_some() || auth.known_hosts_file.is_some()) {
        bail!("source.git: sshKeyFile and knownHostsFile are for ssh:// URLs");
    }
    if ssh && (auth.ssh_key_file.is_none() || auth.known_hosts_file.is_none()) {
        bail!("source.git: an ssh:// URL needs sshKeyFile and knownHostsFile (hint: ssh-keyscan -p PORT HOST > known_hosts, and check it)");
    }
    Ok(())
}

/// `{hostname}` and `{label.NAME}` replaced; the result relative, without `..`, normalized.
fn expand(
    template: &str,
    hostname: &str,
    labels: &BTreeMap<String, String>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .with_context(|| format!("source.git.paths {template:?}: `{{` without `}}`"))?;
        let name = &rest[start + 1..end];
        let value = match name {
            "hostname" => hostname,
            _ => match name.strip_prefix("label.") {
                Some(label) => labels.get(label).map(String::as_str).with_context(|| {
                    format!("source.git.paths {template:?}: no label {label:?} (hint: set it under `labels:` in the agent config)")
                })?,
                None => bail!(
                    "source.git.paths {template:?}: unknown {{{name}}} (hint: {{hostname}} or {{label.NAME}})"
                ),
            },
        };
        if value.is_empty() || value.contains('/') || value == "." || value == ".." {
            bail!("source.git.paths {template:?}: {{{name}}} is {value:?}, not a directory name");
        }
        out.push_str(value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    normalize(&out).with_context(|| format!("source.git.paths {template:?}"))
}

fn normalize(path: &str) -> anyhow::Result<String> {
    if path.starts_with('/') {
        bail!("must be relative to the repository's top directory");
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => bail!("must not contain `..`"),
            p if p.starts_with(".git") && p.len() == 4 => bail!("must not name .git"),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("site".to_string(), "berlin".to_string())])
    }

    fn config(yaml: &str) -> anyhow::Result<GitSource> {
        let file: GitFileConfig = serde_yaml::from_str(yaml)?;
        GitSource::resolve(file, "edge-7", &labels())
    }

    #[test]
    fn paths_expand_for_the_host_and_normalize() {
        let src = config(
            "url: https://git.example.org/fleet.git\npaths: [common, 'sites/{label.site}/', './hosts/{hostname}', .]\n",
        )
        .unwrap();
        assert_eq!(
            src.paths,
            vec!["common", "sites/berlin", "hosts/edge-7", ""]
        );
        assert_eq!(src.reference, "main");
        assert_eq!(src.interval, DEFAULT_INTERVAL);
        assert_eq!(src.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn bad_paths_urls_and_auth_say_what_is_wrong() {
        let cases = [
            (
                "url: https://h/r\npaths: ['{label.zone}']",
                "no label \"zone\"",
            ),
            ("url: https://h/r\npaths: ['{host}']", "unknown {host}"),
            ("url: https://h/r\npaths: ['../x']", "must not contain `..`"),
            ("url: https://h/r\npaths: [/etc]", "must be relative"),
            (
                "url: https://h/r\npaths: [.git/hooks]",
                "must not name .git",
            ),
            ("url: git@h:r", "has no scheme"),
            ("url: ftp://h/r", "scheme \"ftp\" is not supported"),
            (
                "url: http://10.0.0.1/r",
                "plain http is allowed to loopback only",
            ),
            ("url: ssh://git@h/r", "needs sshKeyFile and knownHostsFile"),
            ("url: https://h/r\nsshKeyFile: /k", "are for ssh:// URLs"),
            (
                "url: git://h/r\ncaFile: /ca.pem",
                "caFile is for https:// URLs",
            ),
            (
                "url: http://127.0.0.1/r\ntokenFile: /t",
                "never sent over plain http",
            ),
            ("url: git://h/r\ntokenFile: /t", "are for https:// URLs"),
            (
                "url: https://h/r\ntokenFile: /t\npasswordFile: /p",
                "exclude each other",
            ),
            (
                "url: https://h/r\nref: 'main..x'",
                "is not a branch, tag or commit",
            ),
            (
                "url: https://h/r\ninterval: 0s",
                "interval must be at least 1s",
            ),
        ];
        for (yaml, want) in cases {
            let err = format!("{:#}", config(yaml).unwrap_err());
            assert!(err.contains(want), "{yaml}: {err}");
        }
        assert!(config("url: http://127.0.0.1:8080/r").is_ok());
        let ssh = config("url: ssh://git@h:2222/r\nsshKeyFile: /k\nknownHostsFile: /kh").unwrap();
        assert_eq!(
            ssh.auth.ssh_key_file.as_deref(),
            Some(std::path::Path::new("/k"))
        );
    }

    #[test]
    fn the_fetch_process_gets_the_same_source_back() {
        let src = config("url: file:///srv/fleet\nref: v1.2\ninterval: 5s\ntimeout: 3s").unwrap();
        let json = serde_json::to_string(&src).unwrap();
        assert_eq!(serde_json::from_str::<GitSource>(&json).unwrap(), src);
    }
}
