//! Git fixtures for the git source's tests: repositories with SSH-signed commits made by the
//! git CLI, and real servers on loopback: `git daemon`, Git's smart HTTP (`git http-backend`
//! behind lighttpd, with basic auth) and OpenSSH's sshd on a test port. Each server is
//! stopped when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::require_tool;

/// Runs `cmd`, failing with its output when it fails; returns stdout.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An SSH key pair made by ssh-keygen.
pub struct SshKey {
    pub private: PathBuf,
    pub public: String,
}

impl SshKey {
    pub fn generate(dir: &Path, name: &str) -> anyhow::Result<SshKey> {
        require_tool("ssh-keygen", "openssh-client")?;
        let private = dir.join(name);
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&private))?;
        let public = std::fs::read_to_string(private.with_extension("pub"))
            .or_else(|_| std::fs::read_to_string(format!("{}.pub", private.display())))?
            .trim()
            .to_string();
        Ok(SshKey { private, public })
    }

    /// `principal keytype key` for an allowed-signers file.
    pub fn allowed_signer_line(&self, principal: &str) -> String {
        let key: Vec<&str> = self.public.split_whitespace().take(2).collect();
        format!("{principal} {}", key.join(" "))
    }
}

/// A working repository whose commits the test makes with the git CLI.
pub struct Repo {
    pub dir: PathBuf,
}

impl Repo {
    pub fn init(dir: &Path) -> anyhow::Result<Repo> {
        require_tool("git", "git")?;
        std::fs::create_dir_all(dir)?;
        let repo = Repo {
            dir: dir.to_path_buf(),
        };
        repo.git(&["init", "-q", "-b", "main"])?;
        repo.git(&["config", "user.name", "Fleet Admin"])?;
        repo.git(&["config", "user.email", "admin@example.org"])?;
        repo.git(&["config", "gpg.format", "ssh"])?;
        Ok(repo)
    }

    pub fn git(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &self.dir))
    }

    /// Writes `files` (path → content; `None` removes), commits everything, signed by `key`
    /// when given; returns the commit id.
    pub fn commit(
        &self,
        files: &[(&str, Option<&str>)],
        key: Option<&SshKey>,
        message: &str,
    ) -> anyhow::Result<String> {
        for (path, content) in files {
            let p = self.dir.join(path);
            match content {
                Some(c) => {
                    std::fs::create_dir_all(p.parent().expect("a file has a parent"))?;
                    std::fs::write(&p, c)?;
                }
                None => std::fs::remove_file(&p)?,
            }
        }
        self.git(&["add", "-A"])?;
        let key_arg;
        let mut args = vec!["commit", "-q", "--allow-empty", "-m", message];
        match key {
            Some(k) => {
                key_arg = format!("user.signingkey={}", k.private.display());
                args.splice(0..0, ["-c", key_arg.as_str()]);
                args.push("-S");
            }
            None => args.push("--no-gpg-sign"),
        }
        self.git(&args)?;
        self.head()
    }

    pub fn head(&self) -> anyhow::Result<String> {
        Ok(self.git(&["rev-parse", "HEAD"])?.trim().to_string())
    }

    /// Pushes `main` (forced) to the bare repository `bare`.
    pub fn push(&self, bare: &Path, refspec: &str) -> anyhow::Result<()> {
        self.git(&[
            "push",
            "-q",
            "--force",
            &bare.display().to_string(),
            refspec,
        ])?;
        Ok(())
    }
}

/// A bare repository, as a server serves it.
pub fn bare(dir: &Path) -> anyhow::Result<PathBuf> {
    run(Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(dir))?;
    // Let git-http-backend and git-daemon serve it without per-repo opt-in.
    std::fs::write(dir.join("git-daemon-export-ok"), "")?;
    Ok(dir.to_path_buf())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}) before listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on {addr} within 10s")
}

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Drop for Server {
    /// Kills the server's whole process group: `git daemon` serves each connection in a
    /// child of its own.
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

impl Server {
    fn spawn(mut cmd: Command, port: u16, log: PathBuf, what: &str) -> anyhow::Result<Server> {
        let out = std::fs::File::create(&log)?;
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {what}"))?;
        wait_listening(([127, 0, 0, 1], port).into(), &mut child, what)
            .map_err(|e| e.context(std::fs::read_to_string(&log).unwrap_or_default()))?;
        Ok(Server { child, port, log })
    }

    /// `git daemon` serving the bare repositories under `base` at git://127.0.0.1:PORT/NAME.
    pub fn git_daemon(base: &Path, work: &Path) -> anyhow::Result<Server> {
        require_tool("git", "git")?;
        let port = free_port()?;
        let mut cmd = Command::new("git");
        cmd.arg("daemon")
            .arg("--reuseaddr")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg("--informative-errors")
            .arg("--log-destination=stderr")
            .arg(base);
        Server::spawn(cmd, port, work.join("git-daemon.log"), "git daemon")
    }

    /// lighttpd running git-http-backend for the repositories under `base`, at
    /// https://127.0.0.1:PORT/git/NAME (a certificate of a CA made for the test: `ca.pem`
    /// in `work`), behind basic auth as `user`/`password`.
    pub fn git_https(
        base: &Path,
        work: &Path,
        user: &str,
        password: &str,
    ) -> anyhow::Result<Server> {
        let lighttpd = require_tool("lighttpd", "lighttpd")?;
        require_tool("openssl", "openssl")?;
        if !Path::new("/usr/lib/lighttpd/mod_openssl.so").exists() {
            bail!("test prerequisite missing: lighttpd's mod_openssl (hint: apt-get install lighttpd-mod-openssl)");
        }
        let (ca, ca_key) = (work.join("ca.pem"), work.join("ca-key.pem"));
        let (cert, key, csr) = (
            work.join("server.pem"),
            work.join("server-key.pem"),
            work.join("server.csr"),
        );
        let ext = work.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(Command::new("openssl")
            .arg("req")
            .arg("-x509")
            .args(ec)
            .args(["-days", "2", "-subj", "/CN=berth test CA", "-keyout"])
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca))?;
        run(Command::new("openssl")
            .arg("req")
            .args(ec)
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr))?;
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-set_serial", "2", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert))?;
        let backend = Path::new("/usr/lib/git-core/git-http-backend");
        if !backend.exists() {
            bail!(
                "test prerequisite missing: {} (hint: apt-get install git)",
                backend.display()
            );
        }
        let port = free_port()?;
        let users = work.join("lighttpd-users");
        std::fs::write(&users, format!("{user}:{password}\n"))?;
        let conf = work.join("lighttpd.conf");
        // git-http-backend behind a wrapper that logs each request before it is served.
        let wrapper = work.join("git-http-backend");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$REQUEST_METHOD $PATH_INFO?$QUERY_STRING\" >> {}\nexec {}\n",
                work.join("requests.log").display(),
                backend.display()
            ),
        )?;
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        std::fs::write(
            &conf,
            format!(
                r#"server.modules = ("mod_openssl", "mod_alias", "mod_setenv", "mod_cgi", "mod_auth", "mod_authn_file")
ssl.engine = "enable"
ssl.pemfile = "{cert}"
ssl.privkey = "{key}"
server.document-root = "{work}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{work}/lighttpd-error.log"
alias.url = ( "/git/" => "{wrapper}/" )
cgi.assign = ( "" => "" )
setenv.set-environment = ( "GIT_PROJECT_ROOT" => "{base}", "GIT_HTTP_EXPORT_ALL" => "1" )
auth.backend = "plain"
auth.backend.plain.userfile = "{users}"
auth.require = ( "/git/" => ( "method" => "basic", "realm" => "git", "require" => "valid-user" ) )
"#,
                work = work.display(),
                wrapper = wrapper.display(),
                base = base.display(),
                users = users.display(),
                cert = cert.display(),
                key = key.display(),
            ),
        )?;
        let mut cmd = Command::new(lighttpd);
        cmd.arg("-D").arg("-f").arg(&conf);
        Server::spawn(cmd, port, work.join("lighttpd.log"), "lighttpd")
    }

    /// OpenSSH's sshd on a test port, letting `client` log in as root (git-upload-pack
    /// serves the repositories by absolute path: ssh://root@127.0.0.1:PORT/abs/path).
    /// Returns the server and a known_hosts file for it.
    pub fn sshd(work: &Path, client: &SshKey) -> anyhow::Result<(Server, PathBuf)> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.exists() {
            bail!(
                "test prerequisite missing: /usr/sbin/sshd (hint: apt-get install openssh-server)"
            );
        }
        // sshd's privilege separation directory; Debian's service creates it at boot.
        std::fs::create_dir_all("/run/sshd")?;
        let host_key = SshKey::generate(work, "ssh_host_ed25519_key")?;
        let authorized = work.join("authorized_keys");
        std::fs::write(&authorized, format!("{}\n", client.public))?;
        let port = free_port()?;
        let conf = work.join("sshd_config");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {}/sshd.pid\nLogLevel VERBOSE\n",
                host_key.private.display(),
                authorized.display(),
                work.display()
            ),
        )?;
        let mut cmd = Command::new(sshd);
        cmd.arg("-D").arg("-e").arg("-f").arg(&conf);
        let server = Server::spawn(cmd, port, work.join("sshd.log"), "sshd")?;
        let known = work.join("known_hosts");
        let key: Vec<&str> = host_key.public.split_whitespace().take(2).collect();
        std::fs::write(&known, format!("[127.0.0.1]:{port} {}\n", key.join(" ")))?;
        Ok((server, known))
    }

    /// A TCP server that accepts connections and never answers: a server that hangs.
    pub fn silent(work: &Path) -> anyhow::Result<Server> {
        let port = free_port()?;
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(format!(
            "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1',{port}))\ns.listen(16)\nheld=[]\nwhile True:\n    c,_=s.accept()\n    held.append(c)\n"
        ));
        Server::spawn(cmd, port, work.join("silent.log"), "the silent server")
    }

    /// The requests git-http-backend served, one line each (`METHOD /repo/path?query`).
    pub fn requests(work: &Path) -> Vec<String> {
        std::fs::read_to_string(work.join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}
