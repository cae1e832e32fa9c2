//! The few kernel switches container networking needs, under `/proc/sys/net`.

use std::path::{Path, PathBuf};

/// Reads and writes sysctls below a root (`/proc/sys` on a host; a temp dir in tests).
#[derive(Clone, Debug)]
pub struct Sysctl {
    root: PathBuf,
}

impl Default for Sysctl {
    fn default() -> Self {
        Sysctl {
            root: PathBuf::from("/proc/sys"),
        }
    }
}

impl Sysctl {
    pub fn with_root(root: &Path) -> Sysctl {
        Sysctl {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key.replace('.', "/"))
    }

    /// The value of `key`, trimmed.
    pub fn get(&self, key: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.path(key))
            .map(|v| v.trim().to_string())
            .map_err(|e| std::io::Error::new(e.kind(), format!("read sysctl {key}: {e}")))
    }

    /// Sets `key` (dotted, like `net.ipv4.ip_forward`; interface names may not hold dots
    /// here) to `value` unless it already has it. Returns whether it changed.
    pub fn ensure(&self, key: &str, value: &str) -> std::io::Result<bool> {
        let path = self.path(key);
        let current = std::fs::read_to_string(&path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("read sysctl {key}: {e}")))?;
        if current.trim() == value {
            return Ok(false);
        }
        std::fs::write(&path, value)
            .map_err(|e| std::io::Error::new(e.kind(), format!("set sysctl {key}={value}: {e}")))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("net/ipv4/conf/br0");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("rp_filter"), "1\n").unwrap();
        let s = Sysctl::with_root(dir.path());
        assert!(s.ensure("net.ipv4.conf.br0.rp_filter", "2").unwrap());
        assert_eq!(
            std::fs::read_to_string(conf.join("rp_filter")).unwrap(),
            "2"
        );
        assert!(!s.ensure("net.ipv4.conf.br0.rp_filter", "2").unwrap());
        assert_eq!(s.get("net.ipv4.conf.br0.rp_filter").unwrap(), "2");
        let e = s.ensure("net.ipv4.conf.nope.rp_filter", "2").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("read sysctl net.ipv4.conf.nope.rp_filter: "),
            "{e}"
        );
    }
}
