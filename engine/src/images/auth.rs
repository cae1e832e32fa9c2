//! Registry credentials: a username and password per registry host, from the agent config
//! (`registries.auth`, the password inline or in a file) or from a Docker `config.json`
//! (`registries.dockerConfig`, what `docker login` writes). They are read at each pull, so a
//! rotated password file or a fresh `docker login` takes effect without restarting the agent.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// Credentials settings of the agent config (`registries.auth`, `registries.dockerConfig`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    /// Registry host (`host[:port]`, as in the image reference or a mirror endpoint) →
    /// credentials. These win over the Docker config.
    #[serde(default)]
    pub auth: BTreeMap<String, BasicAuth>,
    /// A Docker `config.json` whose `auths.<host>.auth` (base64 `user:password`) is used for
    /// hosts not listed under `auth`.
    #[serde(default)]
    pub docker_config: Option<PathBuf>,
}

/// One registry's basic credentials, with the password inline or in a file.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the password (one trailing newline is ignored), e.g. a mounted secret.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .finish()
    }
}

/// A username and password ready to send.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("registries.auth {host:?}: {reason}")]
    Invalid { host: String, reason: String },

    #[error("read the password file {} of registry {host}: {source} (hint: check registries.auth.\"{host}\".passwordFile)", .path.display())]
    PasswordFile {
        host: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("read the docker config {}: {source} (hint: check registries.dockerConfig)", .path.display())]
    DockerConfigRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("docker config {}: {reason}", .path.display())]
    DockerConfig { path: PathBuf, reason: String },
}

pub type Result<T, E = AuthError> = std::result::Result<T, E>;

impl AuthConfig {
    /// Check what can be checked when the agent config loads: each entry names a host and has
    /// a username and exactly one of `password` and `passwordFile`.
    pub fn validate(&self) -> Result<()> {
        for (host, basic) in &self.auth {
            let invalid = |reason: &str| AuthError::Invalid {
                host: host.clone(),
                reason: reason.to_string(),
            };
            if registry_key(host).is_empty() {
                return Err(invalid("is not a registry host"));
            }
            if basic.username.is_empty() {
                return Err(invalid("username is empty"));
            }
            match (&basic.password, &basic.password_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid("set either password or passwordFile, not both"))
                }
                (None, None) => return Err(invalid("needs password or passwordFile")),
                _ => {}
            }
        }
        Ok(())
    }

    /// The credentials for `host` (`host[:port]` of the endpoint a pull connects to), or
    /// `None` to pull anonymously.
    pub fn credentials_for(&self, host: &str) -> Result<Option<Credentials>> {
        let key = registry_key(host);
        if let Some((name, basic)) = self.auth.iter().find(|(h, _)| registry_key(h) == key) {
            return basic.resolve(name).map(Some);
        }
        match &self.docker_config {
            Some(path) => docker_config_credentials(path, &key),
            None => Ok(None),
        }
    }
}

impl BasicAuth {
    fn resolve(&self, host: &str) -> Result<Credentials> {
        let password = match (&self.password, &self.password_file) {
            (Some(p), None) => p.clone(),
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| AuthError::PasswordFile {
                        host: host.to_string(),
                        path: path.clone(),
                        source,
                    })?;
                // `echo secret > file` is how people write these.
                let text = text.strip_suffix('\n').unwrap_or(&text);
                text.strip_suffix('\r').unwrap_or(text).to_string()
            }
            _ => {
                return Err(AuthError::Invalid {
                    host: host.to_string(),
                    reason: "needs exactly one of password and passwordFile".to_string(),
                })
            }
        };
        Ok(Credentials {
            username: self.username.clone(),
            password,
        })
    }
}

/// The form a registry is compared in: no scheme, no path, lowercase, and Docker Hub's many
/// names (`https://index.docker.io/v1/`, `registry-1.docker.io`, …) as `docker.io`.
fn registry_key(raw: &str) -> String {
    let rest = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let host = rest.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// The parts of a Docker `config.json` berth reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Default, serde::Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

fn docker_config_credentials(path: &Path, key: &str) -> Result<Option<Credentials>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        // No `docker login` yet: pull anonymously, as Docker does.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(path = %path.display(), "docker config does not exist; pulling anonymously");
            return Ok(None);
        }
        Err(source) => {
            return Err(AuthError::DockerConfigRead {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let bad = |reason: String| AuthError::DockerConfig {
        path: path.to_path_buf(),
        reason,
    };
    let config: DockerConfig =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("is not valid JSON: {e}")))?;
    let helper = || {
        config
            .cred_helpers
            .iter()
            .find(|(h, _)| registry_key(h) == key)
            .map(|(_, helper)| helper.clone())
            .or_else(|| config.creds_store.clone())
    };
    let Some((name, entry)) = config.auths.iter().find(|(h, _)| registry_key(h) == key) else {
        if let Some((_, helper)) = config
            .cred_helpers
            .iter()
            .find(|(h, _)| registry_key(h) == key)
        {
            return Err(bad(format!(
                "the credentials of {key} are kept by the credential helper docker-credential-{helper}, which berth does not run (hint: put them under registries.auth)"
            )));
        }
        return Ok(None);
    };
    if let Some(encoded) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| bad(format!("auths.{name:?}.auth is not base64: {e}")))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| bad(format!("auths.{name:?}.auth is not UTF-8")))?;
        let (username, password) = text.split_once(':').ok_or_else(|| {
            bad(format!(
                "auths.{name:?}.auth is not base64 of user:password"
            ))
        })?;
        return Ok(Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        }));
    }
    if entry.identitytoken.is_some() {
        return Err(bad(format!(
            "auths.{name:?} holds an identity token, which berth does not use (hint: put a username and password under registries.auth)"
        )));
    }
    match helper() {
        Some(helper) => Err(bad(format!(
            "auths.{name:?} has no inline auth; its credentials are kept by the credential helper docker-credential-{helper}, which berth does not run (hint: put them under registries.auth)"
        ))),
        None => Err(bad(format!("auths.{name:?} has no auth field"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: Option<&str>, file: Option<&Path>) -> BasicAuth {
        BasicAuth {
            username: user.to_string(),
            password: password.map(str::to_string),
            password_file: file.map(Path::to_path_buf),
        }
    }

    fn creds(user: &str, password: &str) -> Option<Credentials> {
        Some(Credentials {
            username: user.to_string(),
            password: password.to_string(),
        })
    }

    #[test]
    fn keys_compare_without_scheme_path_or_case_and_docker_hub_is_one_name() {
        assert_eq!(registry_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_key("registry-1.docker.io"), "docker.io");
        assert_eq!(registry_key("docker.io"), "docker.io");
        assert_eq!(
            registry_key("http://Reg.Example.com:5000/"),
            "reg.example.com:5000"
        );
        assert_eq!(registry_key("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn config_entries_win_and_read_password_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pass");
        std::fs::write(&file, "from-file\n").unwrap();
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            r#"{"auths":{"reg.example.com":{"auth":"ZG9ja2VyOnB3"},"https://index.docker.io/v1/":{"auth":"aHViOmh1YjpwdzI="}}}"#,
        )
        .unwrap();
        let config = AuthConfig {
            auth: [
                (
                    "reg.example.com".to_string(),
                    basic("alice", Some("inline"), None),
                ),
                (
                    "127.0.0.1:5000".to_string(),
                    basic("bob", None, Some(&file)),
                ),
            ]
            .into(),
            docker_config: Some(docker),
        };
        config.validate().unwrap();
        assert_eq!(
            config.credentials_for("reg.example.com").unwrap(),
            creds("alice", "inline")
        );
        assert_eq!(
            config.credentials_for("127.0.0.1:5000").unwrap(),
            creds("bob", "from-file")
        );
        // From config.json; the password keeps everything after the first colon.
        assert_eq!(
            config.credentials_for("registry-1.docker.io").unwrap(),
            creds("hub", "hub:pw2")
        );
        assert_eq!(config.credentials_for("ghcr.io").unwrap(), None);
    }

    #[test]
    fn docker_config_variants() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let config = AuthConfig {
            auth: BTreeMap::new(),
            docker_config: Some(path.clone()),
        };
        // No file: anonymous.
        assert_eq!(config.credentials_for("reg.lan").unwrap(), None);

        std::fs::write(
            &path,
            r#"{"auths":{"reg.lan":{"username":"u","password":"p"},"helped.lan":{}},"credsStore":"pass"}"#,
        )
        .unwrap();
        assert_eq!(config.credentials_for("reg.lan").unwrap(), creds("u", "p"));
        let err = config
            .credentials_for("helped.lan")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "docker config {}: auths.\"helped.lan\" has no inline auth; its credentials are kept by the credential helper docker-credential-pass, which berth does not run (hint: put them under registries.auth)",
                path.display()
            )
        );

        std::fs::write(&path, r#"{"auths":{"reg.lan":{"auth":"!!"}}}"#).unwrap();
        let err = config.credentials_for("reg.lan").unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "docker config {}: auths.\"reg.lan\".auth is not base64",
                path.display()
            )),
            "{err}"
        );

        std::fs::write(&path, "{").unwrap();
        let err = config.credentials_for("reg.lan").unwrap_err().to_string();
        assert!(err.contains("is not valid JSON"), "{err}");
    }

    #[test]
    fn validation_names_the_host() {
        let config = AuthConfig {
            auth: [("reg.lan".to_string(), basic("u", None, None))].into(),
            docker_config: None,
        };
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "registries.auth \"reg.lan\": needs password or passwordFile"
        );
        let config = AuthConfig {
            auth: [(
                "reg.lan".to_string(),
                basic("u", Some("p"), Some(Path::new("/f"))),
            )]
            .into(),
            docker_config: None,
        };
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "registries.auth \"reg.lan\": set either password or passwordFile, not both"
        );
        let missing = AuthConfig {
            auth: [(
                "reg.lan".to_string(),
                basic("u", None, Some(Path::new("/nonexistent/berth-pass"))),
            )]
            .into(),
            docker_config: None,
        };
        let err = missing.credentials_for("reg.lan").unwrap_err().to_string();
        assert!(
            err.starts_with("read the password file /nonexistent/berth-pass of registry reg.lan: "),
            "{err}"
        );
    }

    #[test]
    fn debug_output_hides_passwords() {
        let b = basic("alice", Some("hunter2"), None);
        let c = creds("alice", "hunter2").unwrap();
        for text in [format!("{b:?}"), format!("{c:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("alice"), "{text}");
        }
    }
}
