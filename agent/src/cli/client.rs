//! The CLI's client for the agent's API: plain HTTP/1.0 GETs, enough for a few read-only
//! calls without an HTTP client stack, over the agent's unix socket (the default:
//! `/run/berth/berth.sock`) or TCP (`--addr HOST:PORT`, with `--token-file` when the agent
//! has an API token).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};

/// Where the agent's API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// The default of `--addr`: the socket of an agent with the default run dir.
pub const DEFAULT_ADDR: &str = "unix:/run/berth/berth.sock";

impl FromStr for Endpoint {
    type Err = String;

    /// `unix:PATH` or `HOST:PORT`.
    fn from_str(s: &str) -> Result<Endpoint, String> {
        match s.strip_prefix("unix:") {
            Some(path) if !path.is_empty() => Ok(Endpoint::Unix(PathBuf::from(path))),
            Some(_) => Err("unix: needs a socket path, e.g. unix:/run/berth/berth.sock".into()),
            None => s.parse().map(Endpoint::Tcp).map_err(|e| {
                format!("{s:?}: {e} (hint: HOST:PORT such as 127.0.0.1:9470, or unix:PATH)")
            }),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "{a}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The agent's API, as the command line names it.
#[derive(Debug, Clone)]
pub struct Client {
    pub endpoint: Endpoint,
    /// The bearer token, for a TCP listener that needs one.
    pub token: Option<String>,
}

impl Client {
    pub fn new(endpoint: Endpoint, token_file: Option<&std::path::Path>) -> anyhow::Result<Client> {
        let token = match token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("read the token file {}", p.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        Ok(Client { endpoint, token })
    }

    fn connect(&self, timeout: Option<Duration>) -> anyhow::Result<Box<dyn Stream>> {
        let hint = "hint: is `berth agent` running? see --addr";
        Ok(match &self.endpoint {
            Endpoint::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, Duration::from_secs(3))
                    .with_context(|| format!("connect to the berth agent at {addr} ({hint})"))?;
                s.set_read_timeout(timeout)?;
                Box::new(s)
            }
            Endpoint::Unix(path) => {
                let s = UnixStream::connect(path).with_context(|| {
                    format!("connect to the berth agent at unix:{} ({hint}; the socket is for root and the berth group)", path.display())
                })?;
                s.set_read_timeout(timeout)?;
                Box::new(s)
            }
        })
    }

    /// Sends `GET path` and returns the body as a stream, once the status is 200. `timeout`
    /// bounds each read (None for a response that may stay open, such as `logs -f`).
    pub fn open(
        &self,
        path: &str,
        timeout: Option<Duration>,
    ) -> anyhow::Result<BufReader<Box<dyn Stream>>> {
        let mut s = self.connect(timeout)?;
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: berth\r\nAccept: application/json\r\n{auth}\r\n"
        )?;
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader
            .read_line(&mut status)
            .with_context(|| format!("read response from {}", self.endpoint))?;
        let code = status
            .split_whitespace()
            .nth(1)
            .context("malformed HTTP response")?
            .to_string();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header == "\r\n" {
                break;
            }
        }
        if code != "200" {
            let mut body = String::new();
            let _ = reader.read_to_string(&mut body);
            bail!("GET {path}: HTTP {code}: {}", body.trim());
        }
        Ok(reader)
    }

    /// `GET path`, the whole body.
    pub fn get(&self, path: &str) -> anyhow::Result<String> {
        let mut body = String::new();
        self.open(path, Some(Duration::from_secs(10)))?
            .read_to_string(&mut body)
            .with_context(|| format!("read response from {}", self.endpoint))?;
        Ok(body)
    }
}

/// A connection to the agent.
pub trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_tcp_or_unix() {
        assert_eq!(
            "127.0.0.1:9470".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp(([127, 0, 0, 1], 9470).into())
        );
        assert_eq!(
            DEFAULT_ADDR.parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/run/berth/berth.sock".into())
        );
        assert!("unix:"
            .parse::<Endpoint>()
            .unwrap_err()
            .contains("needs a socket path"));
        assert!("localhost"
            .parse::<Endpoint>()
            .unwrap_err()
            .contains("HOST:PORT"));
    }
}
