//! A berth agent under test: the real binary, started with its own temp dirs, loopback port
//! and cgroup parent, read through its HTTP API. Dropping it stops the agent and removes
//! everything the test's containers left (processes, cgroups, dirs).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::Registry;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The berth binary: `$BERTH_BIN`, else `target/debug/berth` next to the test executable
/// (the test command builds it first).
pub fn berth_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/e2e-HASH -> target/debug/berth
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("berth"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "berth binary not found at {} (hint: run `cargo build -p berth` first, or set BERTH_BIN)",
        bin.display()
    );
    bin
}

/// A unique prefix for every host object one test creates.
pub fn unique_prefix() -> String {
    format!(
        "berth-test-{}-{:03}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}

/// Unless the test sets its own `networks:`, a bridge prefix and address pool of this agent
/// alone: agents of concurrent tests must not share bridges, subnets or nftables tables.
fn network_config(prefix: &str, extra_config: &str) -> String {
    if extra_config.contains("networks:") {
        return String::new();
    }
    // FNV-1a: a short, stable name from the unique prefix.
    let h = prefix.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!(
        "networks:\n  bridgePrefix: t{:06x}\n  pool: 10.{}.{}.0/21\n",
        h & 0xff_ffff,
        64 + (h >> 24) % 96,
        ((h >> 32) % 32) * 8
    )
}

/// Tests end by emptying the manifest directory ([`Agent::finish`]), which the prune guard
/// refuses by default; the tests of the guard itself set `allowEmpty` themselves.
fn prune_config(extra_config: &str) -> String {
    if extra_config.contains("allowEmpty:") {
        String::new()
    } else {
        "allowEmpty: true\n".to_string()
    }
}

pub struct Agent {
    child: Option<Child>,
    pub root: tempfile::TempDir,
    pub manifests: PathBuf,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub addr: SocketAddr,
    /// cgroup parent of this agent's containers, unique per test.
    pub prefix: String,
    config: PathBuf,
    /// Prefix of the agent's bridges, veths and nftables table.
    net_prefix: String,
    /// Environment the agent is started with (besides BERTH_LOG).
    env: Vec<(String, String)>,
}

impl Agent {
    /// Starts an agent whose `docker.io` mirror is the test registry.
    pub fn start(registry: &Registry) -> anyhow::Result<Agent> {
        Agent::start_with(registry, "")
    }

    /// Like [`Agent::start`], with more agent config (YAML keys) appended.
    pub fn start_with(registry: &Registry, extra_config: &str) -> anyhow::Result<Agent> {
        Agent::start_with_env(registry, extra_config, &[])
    }

    /// Like [`Agent::start_with`], with environment variables for the agent process.
    pub fn start_with_env(
        registry: &Registry,
        extra_config: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Agent> {
        let root = tempfile::Builder::new().prefix("berth-e2e-").tempdir()?;
        let prefix = unique_prefix();
        let manifests = root.path().join("manifests");
        std::fs::create_dir_all(&manifests)?;
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let config = root.path().join("agent.yaml");
        std::fs::write(
            &config,
            format!(
                "{}stateDir: {}\nrunDir: {}\nlisten: {addr}\ncgroupParent: {prefix}\nregistries:\n  mirrors:\n    docker.io: [\"http://{}\"]\n",
                // A git source replaces the manifest directory.
                if extra_config.contains("source:") {
                    String::new()
                } else {
                    format!("manifests: {}\n", manifests.display())
                },
                root.path().join("state").display(),
                root.path().join("run").display(),
                registry.host()
            ) + &network_config(&prefix, extra_config)
                + &prune_config(extra_config)
                + extra_config,
        )?;
        let written = std::fs::read_to_string(&config)?;
        let net_prefix = written
            .lines()
            .find_map(|l| l.trim().strip_prefix("bridgePrefix:"))
            .map(|p| p.trim().trim_matches('"').to_string())
            .unwrap_or_default();
        let mut agent = Agent {
            child: None,
            state_dir: root.path().join("state"),
            run_dir: root.path().join("run"),
            root,
            manifests,
            addr,
            prefix,
            config,
            net_prefix,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        agent.spawn()?;
        Ok(agent)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(berth_bin())
            .arg("agent")
            .arg("--config")
            .arg(&self.config)
            .env("BERTH_LOG", "info,berth=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn berth agent")?;
        self.child = Some(child);
        self.wait_for("the api to answer", Duration::from_secs(20), |a| {
            a.get("/healthz").ok()
        })
        .map_err(|e| {
            // Who keeps the state dir busy (the agent lock, the db), for the report.
            e.context(format!(
                "processes holding files under {}: {:?}",
                self.state_dir.display(),
                holders_of(&self.state_dir)
            ))
        })?;
        Ok(())
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("agent.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The agent's pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Sends `signal` to the agent (SIGHUP: load the manifests, or sync the git source, now).
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self.pid().context("agent is not running")?;
        Ok(kill(Pid::from_raw(pid), signal)?)
    }

    /// SIGKILL: the agent dies at once, as in a crash; its containers keep running.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("agent is not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGTERM, and wait for the agent to exit; its containers keep running.
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("agent is not running")?;
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("agent did not stop within 20s of SIGTERM\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the agent again on the same dirs.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.spawn()
    }

    /// Replaces `from` with `to` in the agent's config file and starts the agent again on
    /// it (a test that set `allowEmpty: false` turns it on before [`Agent::finish`]).
    pub fn edit_config_and_restart(&mut self, from: &str, to: &str) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.config)?;
        if !text.contains(from) {
            bail!(
                "agent config {} has no {from:?} to replace:\n{text}",
                self.config.display()
            );
        }
        std::fs::write(&self.config, text.replace(from, to))?;
        self.restart()
    }

    /// Prefix of this agent's bridges, veths and nftables table.
    pub fn net_prefix(&self) -> &str {
        &self.net_prefix
    }

    /// The agent's unix socket, where its whole API is (the CLI's default way in).
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("berth.sock")
    }

    /// `--addr` for the CLI: the agent's unix socket.
    pub fn cli_addr(&self) -> String {
        format!("unix:{}", self.socket().display())
    }

    /// A request on the agent's unix socket: (status code, body).
    pub fn request(&self, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
        let s = std::os::unix::net::UnixStream::connect(self.socket())
            .with_context(|| format!("connect to {}", self.socket().display()))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        http(s, method, path, None)
    }

    /// A request on the agent's TCP listener, with a bearer token when given.
    pub fn tcp_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        http(s, method, path, token)
    }

    pub fn get(&self, path: &str) -> anyhow::Result<String> {
        let (code, body) = self.request("GET", path)?;
        if code != 200 {
            bail!("GET {path}: HTTP {code}: {body}");
        }
        Ok(body)
    }

    pub fn containers(&self) -> anyhow::Result<Vec<Value>> {
        Ok(serde_json::from_str(&self.get("/v1/containers")?)?)
    }

    pub fn container(&self, name: &str) -> Option<Value> {
        self.containers()
            .ok()?
            .into_iter()
            .find(|c| c["name"] == name)
    }

    /// Polls `f` every 100ms until it returns Some, or fails with the agent's log.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Agent) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                let state = self
                    .containers()
                    .map(|c| serde_json::to_string_pretty(&c).unwrap_or_default());
                bail!("timed out after {timeout:?} waiting for {what}\ncontainers: {state:?}\nagent log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until container `name` satisfies `pred`, and returns its status.
    pub fn wait_container(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        self.wait_for(
            &format!("container {name}: {what}"),
            Duration::from_secs(30),
            |a| a.container(name).filter(|c| pred(c)),
        )
    }

    /// Writes a manifest atomically (temp file + rename), as editors and git do.
    pub fn write_manifest(&self, file: &str, content: &str) -> anyhow::Result<()> {
        let tmp = self.manifests.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, content)?;
        std::fs::rename(&tmp, self.manifests.join(file))?;
        Ok(())
    }

    pub fn remove_manifest(&self, file: &str) -> anyhow::Result<()> {
        Ok(std::fs::remove_file(self.manifests.join(file))?)
    }

    /// Ends a test the way an operator would: every manifest removed, berth given the time
    /// to stop and remove every container and network, the agent stopped. Returns what is
    /// left on the host (cgroups, mounts, processes, links and nftables table of this test)
    /// — it should be nothing.
    pub fn finish(mut self) -> anyhow::Result<Vec<String>> {
        for e in std::fs::read_dir(&self.manifests)? {
            std::fs::remove_file(e?.path())?;
        }
        self.wait_for(
            "every container to be removed",
            Duration::from_secs(60),
            |a| a.containers().ok().filter(|c| c.is_empty()),
        )?;
        // Networks go in the pass after their last container: give it that pass.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !network_leaks(&self.net_prefix).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop()?;
        // The parent cgroup and its `shims` cgroup are berth's to keep (containers may outlive
        // the agent); the test removes them. rmdir fails while a container cgroup or a shim
        // is still inside: after the wait below, that is a leak.
        let remove_berth_cgroups = |prefix: &str| {
            for d in cgroup_dirs_with(prefix).iter().filter(|d| {
                d.file_name().is_some_and(|n| *n == *prefix)
                    || (d.ends_with("shims")
                        && d.parent()
                            .and_then(Path::file_name)
                            .is_some_and(|n| *n == *prefix))
            }) {
                // Deepest first: `shims` before the parent.
                let _ = std::fs::remove_dir(d);
            }
        };
        let dir = self.root.path().to_path_buf();
        // Shims exit a moment after their container.
        let deadline = Instant::now() + Duration::from_secs(5);
        remove_berth_cgroups(&self.prefix);
        while !leaks(&self.prefix, &dir).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            remove_berth_cgroups(&self.prefix);
        }
        let mut left = leaks(&self.prefix, &dir);
        left.extend(network_leaks(&self.net_prefix));
        Ok(left)
    }

    /// The cgroup dirs of this agent's containers that exist now (any hierarchy).
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_dirs_with(&self.prefix)
    }
}

/// One HTTP/1.0 exchange on `s`: (status code, body).
fn http(
    mut s: impl Read + Write,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: berth\r\nContent-Length: 0\r\n{auth}\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    Ok((code, body.to_string()))
}

/// Every dir under /sys/fs/cgroup whose path contains `prefix`, deepest first.
pub fn cgroup_dirs_with(prefix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            if p.to_string_lossy().contains(prefix) {
                walk(&p, prefix, depth + 1, out);
                out.push(p);
            } else if depth < 2 {
                walk(&p, prefix, depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), prefix, 0, &mut out);
    out
}

/// What a test left on the host: cgroups with its prefix, mounts and processes under its dir.
pub fn leaks(prefix: &str, dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = cgroup_dirs_with(prefix)
        .iter()
        .map(|p| format!("cgroup {}", p.display()))
        .collect();
    let dir_s = dir.display().to_string();
    if let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") {
        found.extend(
            mi.lines()
                .filter(|l| l.contains(&dir_s))
                .map(|l| format!("mount {l}")),
        );
    }
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&dir_s) {
                found.push(format!(
                    "process {pid}: {}",
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                ));
            }
        }
    }
    found
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
        // Containers outlive the agent by design; a test must not leave them behind.
        for dir in cgroup_dirs_with(&self.prefix) {
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let dirs = cgroup_dirs_with(&self.prefix);
            for d in &dirs {
                let _ = std::fs::remove_dir(d);
            }
            if cgroup_dirs_with(&self.prefix).is_empty() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Mounts berth left under the test's dir (a failed test): lazily unmounted.
        let dir = self.root.path().to_path_buf();
        if let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") {
            for target in mi
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|t| t.starts_with(&*dir.to_string_lossy()))
            {
                let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        remove_network_objects(&self.net_prefix);
        // Shims exit once their container is gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !leaks(&self.prefix, &dir).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The processes with a file under `dir` open: (pid, command line, the file).
pub fn holders_of(dir: &Path) -> Vec<(i32, String, String)> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if target.starts_with(dir) {
                let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                out.push((
                    pid,
                    String::from_utf8_lossy(&cmdline).replace('\0', " "),
                    target.display().to_string(),
                ));
            }
        }
    }
    out
}

/// The host's links whose name starts with `prefix` (the `@peer` suffix cut off).
pub fn links_with(prefix: &str) -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["-o", "link", "show"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Whether nftables table `inet <table>` exists.
pub fn nft_table_exists(table: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", table])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The network objects of a bridge prefix still on the host: its links and its table.
pub fn network_leaks(prefix: &str) -> Vec<String> {
    if prefix.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<String> = links_with(prefix)
        .into_iter()
        .map(|l| format!("link {l}"))
        .collect();
    if nft_table_exists(prefix) {
        found.push(format!("nftables table inet {prefix}"));
    }
    found
}

/// Deletes the links and the nftables table of a network prefix (what an agent stopped
/// mid-test leaves: it keeps networks while it is away, by design).
pub fn remove_network_objects(prefix: &str) {
    if prefix.is_empty() {
        return;
    }
    for name in links_with(prefix) {
        let _ = Command::new("ip").args(["link", "del", &name]).status();
    }
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", prefix])
        .stderr(Stdio::null())
        .status();
}
