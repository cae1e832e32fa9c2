//! A real OCI registry (Debian's `docker-registry`) on a free loopback port, for tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{require_tool, support_script};

/// A running registry with its own storage; dropping it kills the process and removes the
/// storage.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

const START_TIMEOUT: Duration = Duration::from_secs(20);

impl Registry {
    /// Start `docker-registry` on `127.0.0.1:<free port>` (via `tests/support/registry.sh`)
    /// and wait until `GET /v2/` answers 200.
    pub fn start() -> anyhow::Result<Registry> {
        require_tool("docker-registry", "docker-registry")?;
        let mut last_error = None;
        // A free port can be taken between probing and binding; try a few.
        for _ in 0..3 {
            match Self::try_start() {
                Ok(r) => return Ok(r),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    fn try_start() -> anyhow::Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-registry-")
            .tempdir()
            .context("create registry temp dir")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("find a free loopback port")?
            .port();
        let log = std::fs::File::create(dir.path().join("registry.log"))
            .context("create registry log")?;
        let child = Command::new("sh")
            .arg(support_script("registry.sh"))
            .arg(dir.path())
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("dup registry log")?)
            .stderr(log)
            .spawn()
            .context("spawn tests/support/registry.sh")?;
        let mut registry = Registry { child, dir, port };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = registry.child.try_wait().context("wait for registry")? {
                let log = std::fs::read_to_string(registry.dir.path().join("registry.log"))
                    .unwrap_or_default();
                bail!("docker-registry exited with {status} before it answered: {log}");
            }
            if registry.answers() {
                return Ok(registry);
            }
            if Instant::now() > deadline {
                bail!(
                    "docker-registry on 127.0.0.1:{port} did not answer GET /v2/ within {START_TIMEOUT:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /v2/` returns 200.
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!(
            "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
    }

    /// The registry's storage root (`docker/registry/v2/...` below it), for tests that
    /// corrupt blobs on purpose.
    pub fn storage_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("storage")
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // registry.sh execs docker-registry, so the child is the registry itself.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
