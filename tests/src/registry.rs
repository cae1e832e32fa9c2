//! A real OCI registry (Debian's `docker-registry`) on a free loopback port, for tests:
//! open, behind htpasswd basic auth, or behind bearer tokens from a token service that takes
//! basic credentials (the flow Docker Hub and most registries use).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;

use crate::{require_tool, support_script};

/// A running registry with its own storage; dropping it kills the process (and the token
/// service) and removes the storage.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    auth: Option<Auth>,
}

/// How the registry checks its clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// No auth.
    Open,
    /// htpasswd (bcrypt) basic auth on every request.
    Basic { username: String, password: String },
    /// Bearer tokens (RS256 JWTs) from a token service that wants these basic credentials.
    Token { username: String, password: String },
}

struct Auth {
    username: String,
    password: String,
    token_service: Option<TokenService>,
}

/// One request the token service answered: who asked, for what, and whether it granted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// The basic-auth user name sent, or `None` for an anonymous request.
    pub username: Option<String>,
    /// The `scope` parameters, e.g. `repository:library/busybox:pull`.
    pub scopes: Vec<String>,
    pub granted: bool,
}

const START_TIMEOUT: Duration = Duration::from_secs(20);

impl Registry {
    /// Start `docker-registry` on `127.0.0.1:<free port>` (via `tests/support/registry.sh`)
    /// and wait until `GET /v2/` answers 200.
    pub fn start() -> anyhow::Result<Registry> {
        Self::start_with(AuthMode::Open)
    }

    /// A registry that wants HTTP basic auth (htpasswd, bcrypt) for every request. Debian's
    /// docker-registry 2.8 accepts basic auth over plain HTTP, so no TLS is needed on loopback.
    pub fn start_with_auth(username: &str, password: &str) -> anyhow::Result<Registry> {
        Self::start_with(AuthMode::Basic {
            username: username.to_string(),
            password: password.to_string(),
        })
    }

    /// A registry that wants bearer tokens, issued by a token service on another loopback port
    /// to clients that send it these basic credentials.
    pub fn start_with_token_auth(username: &str, password: &str) -> anyhow::Result<Registry> {
        Self::start_with(AuthMode::Token {
            username: username.to_string(),
            password: password.to_string(),
        })
    }

    pub fn start_with(mode: AuthMode) -> anyhow::Result<Registry> {
        require_tool("docker-registry", "docker-registry")?;
        match &mode {
            AuthMode::Open => {}
            AuthMode::Basic { .. } => {
                require_tool("htpasswd", "apache2-utils")?;
            }
            AuthMode::Token { .. } => {
                require_tool("openssl", "openssl")?;
            }
        }
        let mut last_error = None;
        // A free port can be taken between probing and binding; try a few.
        for _ in 0..3 {
            match Self::try_start(&mode) {
                Ok(r) => return Ok(r),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    fn try_start(mode: &AuthMode) -> anyhow::Result<Registry> {
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
        let mut command = Command::new("sh");
        command
            .arg(support_script("registry.sh"))
            .arg(dir.path())
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("dup registry log")?)
            .stderr(log);
        // docker-registry reads REGISTRY_<SECTION>_<KEY> over its config file.
        let auth = match mode {
            AuthMode::Open => None,
            AuthMode::Basic { username, password } => {
                let htpasswd = dir.path().join("htpasswd");
                write_htpasswd(&htpasswd, username, password)?;
                command
                    .env("REGISTRY_AUTH", "htpasswd")
                    .env("REGISTRY_AUTH_HTPASSWD_REALM", "berth-test")
                    .env("REGISTRY_AUTH_HTPASSWD_PATH", &htpasswd);
                Some(Auth {
                    username: username.clone(),
                    password: password.clone(),
                    token_service: None,
                })
            }
            AuthMode::Token { username, password } => {
                let service = TokenService::start(dir.path(), username, password)?;
                command
                    .env("REGISTRY_AUTH", "token")
                    .env(
                        "REGISTRY_AUTH_TOKEN_REALM",
                        format!("http://127.0.0.1:{}/token", service.port),
                    )
                    .env("REGISTRY_AUTH_TOKEN_SERVICE", TOKEN_SERVICE)
                    .env("REGISTRY_AUTH_TOKEN_ISSUER", TOKEN_ISSUER)
                    .env("REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE", &service.cert_pem);
                Some(Auth {
                    username: username.clone(),
                    password: password.clone(),
                    token_service: Some(service),
                })
            }
        };
        let child = command.spawn().context("spawn tests/support/registry.sh")?;
        let mut registry = Registry {
            child,
            dir,
            port,
            auth,
        };
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

    /// `GET /v2/` returns 200, or 401 when the registry wants auth.
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
        let want: &[u8] = if self.auth.is_some() {
            b"HTTP/1.1 401"
        } else {
            b"HTTP/1.1 200"
        };
        s.read_exact(&mut head).is_ok() && head.starts_with(want)
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

    /// The user name and password the registry (or its token service) accepts.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth
            .as_ref()
            .map(|a| (a.username.as_str(), a.password.as_str()))
    }

    /// Every request the token service answered so far (empty without one).
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        match self.auth.as_ref().and_then(|a| a.token_service.as_ref()) {
            Some(t) => t.requests.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            None => Vec::new(),
        }
    }

    /// `skopeo copy` an image from `source` (any skopeo transport, e.g. `oci:DIR:TAG`) to
    /// `<this registry>/<repo_tag>`, with the registry's credentials.
    pub fn push(&self, source: &str, repo_tag: &str) -> anyhow::Result<()> {
        require_tool("skopeo", "skopeo")?;
        let dest = format!("docker://{}/{}", self.host(), repo_tag);
        let mut command = Command::new("skopeo");
        command
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .stdin(Stdio::null());
        if let Some((user, pass)) = self.credentials() {
            command.arg(format!("--dest-creds={user}:{pass}"));
        }
        let output = command
            .arg(source)
            .arg(&dest)
            .output()
            .context("run skopeo copy")?;
        if !output.status.success() {
            bail!(
                "skopeo copy {source} {dest} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // registry.sh execs docker-registry, so the child is the registry itself.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_htpasswd(path: &Path, username: &str, password: &str) -> anyhow::Result<()> {
    // docker-registry only reads bcrypt entries.
    let output = Command::new("htpasswd")
        .args(["-B", "-b", "-n", username, password])
        .output()
        .context("run htpasswd")?;
    if !output.status.success() {
        bail!(
            "htpasswd -B failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::write(path, &output.stdout).with_context(|| format!("write {}", path.display()))
}

const TOKEN_SERVICE: &str = "berth-test-registry";
const TOKEN_ISSUER: &str = "berth-test-token-service";

/// A minimal Docker token service: `GET /token?service=…&scope=…` with basic credentials
/// answers an RS256 JWT that grants the asked scopes; the registry checks the signature
/// against the self-signed certificate (`x5c` in the JWT header).
struct TokenService {
    port: u16,
    cert_pem: std::path::PathBuf,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenService {
    fn start(dir: &Path, username: &str, password: &str) -> anyhow::Result<TokenService> {
        let key = dir.join("token-key.pem");
        let cert_pem = dir.join("token-cert.pem");
        run_openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=berth-test-token-service",
            "-keyout",
            path_str(&key)?,
            "-out",
            path_str(&cert_pem)?,
        ])?;
        let cert_der = run_openssl(&["x509", "-in", path_str(&cert_pem)?, "-outform", "DER"])?;
        let listener = TcpListener::bind("127.0.0.1:0").context("bind the token service")?;
        let port = listener
            .local_addr()
            .context("token service address")?
            .port();
        listener
            .set_nonblocking(true)
            .context("token service: nonblocking accept")?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let issuer = Issuer {
            key,
            x5c: base64::engine::general_purpose::STANDARD.encode(cert_der),
            username: username.to_string(),
            password: password.to_string(),
        };
        let thread = std::thread::spawn({
            let (requests, stop) = (requests.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Some(r) = issuer.answer(stream) {
                                requests.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        });
        Ok(TokenService {
            port,
            cert_pem,
            requests,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Issuer {
    key: std::path::PathBuf,
    x5c: String,
    username: String,
    password: String,
}

impl Issuer {
    /// Answer one HTTP request; `None` when it was not a token request at all.
    fn answer(&self, mut stream: TcpStream) -> Option<TokenRequest> {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let head = read_head(&mut stream)?;
        let mut lines = head.lines();
        let target = lines.next()?.split_whitespace().nth(1)?.to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let basic = lines.find_map(|l| {
            let (name, value) = l.split_once(':')?;
            if !name.trim().eq_ignore_ascii_case("authorization") {
                return None;
            }
            let encoded = value.trim().strip_prefix("Basic ")?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (u, p) = text.split_once(':')?;
            Some((u.to_string(), p.to_string()))
        });
        if path != "/token" {
            let _ = respond(&mut stream, "404 Not Found", "{}");
            return None;
        }
        let scopes: Vec<String> = query
            .split('&')
            .filter_map(|kv| kv.strip_prefix("scope="))
            .map(percent_decode)
            .collect();
        let granted = basic
            .as_ref()
            .is_some_and(|(u, p)| *u == self.username && *p == self.password);
        let request = TokenRequest {
            username: basic.map(|(u, _)| u),
            scopes: scopes.clone(),
            granted,
        };
        if !granted {
            let _ = respond(
                &mut stream,
                "401 Unauthorized",
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
            return Some(request);
        }
        match self.token(&scopes) {
            Ok(token) => {
                let body = serde_json::json!({
                    "token": token,
                    "access_token": token,
                    "expires_in": 300,
                })
                .to_string();
                let _ = respond(&mut stream, "200 OK", &body);
            }
            Err(e) => {
                let body = serde_json::json!({ "error": format!("{e:#}") }).to_string();
                let _ = respond(&mut stream, "500 Internal Server Error", &body);
            }
        }
        Some(request)
    }

    fn token(&self, scopes: &[String]) -> anyhow::Result<String> {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("clock")?
            .as_secs();
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|s| {
                // type:name:actions; the name may not hold a colon, the actions are a list.
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(serde_json::json!({
                    "type": kind,
                    "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }))
            })
            .collect();
        let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5c": [self.x5c] });
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER,
            "sub": self.username,
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{now}-{}", std::process::id()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = openssl_sign(&self.key, signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", b64(&signature)))
    }
}

fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 64 * 1024 || stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    String::from_utf8(buf).ok()
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let www = if status.starts_with("401") {
        "WWW-Authenticate: Basic realm=\"berth-test-token-service\"\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{www}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

fn run_openssl(args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let output = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run openssl")?;
    if !output.status.success() {
        bail!(
            "openssl {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output.stdout)
}

/// RSASSA-PKCS1-v1_5 with SHA-256 (JWT `RS256`) by `openssl dgst -sign`.
fn openssl_sign(key: &Path, data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign", path_str(key)?])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run openssl dgst")?;
    child
        .stdin
        .take()
        .context("openssl stdin")?
        .write_all(data)
        .context("write to openssl")?;
    let output = child.wait_with_output().context("wait for openssl")?;
    if !output.status.success() {
        bail!(
            "openssl dgst -sign failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn scopes_are_percent_decoded() {
        assert_eq!(
            percent_decode("repository%3Alibrary%2Fbusybox%3Apull%2Cpush"),
            "repository:library/busybox:pull,push"
        );
        assert_eq!(percent_decode("a+b%2"), "a b%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
