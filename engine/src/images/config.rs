//! The image config blob: what a container inherits (Entrypoint, Cmd, Env, WorkingDir, User)
//! and the layers' uncompressed digests.

/// The parts of an image config that a container inherits where its manifest is silent.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// A parsed config blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedConfig {
    pub config: ImageConfig,
    /// `rootfs.diff_ids`: sha256 of each uncompressed layer, lowest first.
    pub diff_ids: Vec<String>,
    pub os: String,
    pub architecture: String,
}

/// Parse an OCI / Docker image config.
pub fn parse(bytes: &[u8]) -> Result<ParsedConfig, String> {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(default)]
        os: String,
        #[serde(default)]
        architecture: String,
        #[serde(default)]
        config: Option<RawConfig>,
        rootfs: Option<RawRootfs>,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct RawConfig {
        entrypoint: Option<Vec<String>>,
        cmd: Option<Vec<String>>,
        env: Option<Vec<String>>,
        working_dir: Option<String>,
        user: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct RawRootfs {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| format!("is not valid: {e}"))?;
    let rootfs = raw.rootfs.ok_or("has no rootfs section")?;
    if rootfs.kind != "layers" {
        return Err(format!(
            "has rootfs type {:?}, expected \"layers\"",
            rootfs.kind
        ));
    }
    let c = raw.config.unwrap_or_default();
    Ok(ParsedConfig {
        config: ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.filter(|w| !w.is_empty()),
            user: c.user.filter(|u| !u.is_empty()),
        },
        diff_ids: rootfs.diff_ids,
        os: raw.os,
        architecture: raw.architecture,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_style_config() {
        let json = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/", "User": "", "Entrypoint": null},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
            "history": []
        });
        let parsed = parse(json.to_string().as_bytes()).unwrap();
        assert_eq!(
            parsed.config,
            ImageConfig {
                entrypoint: vec![],
                cmd: vec!["sh".into()],
                env: vec!["PATH=/bin".into()],
                working_dir: Some("/".into()),
                user: None,
            }
        );
        assert_eq!(parsed.diff_ids, vec!["sha256:aa".to_string()]);
        assert_eq!(
            (parsed.os.as_str(), parsed.architecture.as_str()),
            ("linux", "amd64")
        );
    }

    #[test]
    fn refuses_configs_without_layers() {
        assert_eq!(parse(b"{}").unwrap_err(), "has no rootfs section");
        assert!(parse(b"[").unwrap_err().starts_with("is not valid"));
    }
}
