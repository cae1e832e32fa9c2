//! TCP and HTTP probes: a connect, or an HTTP/1.0 `GET` ([`super::http`]), to
//! `127.0.0.1:PORT` in the container's network namespace — the container's own loopback,
//! as Kubernetes' probes see the pod.
//!
//! The blocking socket work runs on a fresh thread that entered the namespace
//! ([`crate::sys::netns`]); a tokio worker never calls `setns`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use super::init_process::InitProcess;
use super::{http, HealthError, ProbeResult, Result};
use crate::cgroups::Cgroup;
use crate::runtime::config::{NetworkNamespace, ShimConfig};
use crate::runtime::init::io_text;
use crate::runtime::Runtime;
use crate::sys::netns;

/// Where a network probe connects from.
#[derive(Clone, Debug)]
pub enum NetTarget {
    /// The host's own network (`networkMode: host`): connect from the agent's namespace.
    Host,
    /// A pinned network namespace file (bridge networks' pin).
    Pinned(PathBuf),
    /// The network namespace of the container's init, through `/proc/PID/ns/net`
    /// (`networkMode: none`, whose namespace has no pin). The pid is checked first: it must
    /// be pid 1 of its namespace and listed in `cgroup` in every hierarchy.
    Init { pid: i32, cgroup: Cgroup },
}

impl NetTarget {
    /// The target for a container started with `network`, whose init is `init_pid` and whose
    /// cgroup is `cgroup` (`Runtime::cgroups().open(id)`): the host's network, its pin, or
    /// its init's namespace when it has no pin.
    pub fn for_container(network: &NetworkNamespace, init_pid: i32, cgroup: Cgroup) -> NetTarget {
        match network {
            NetworkNamespace::Host => NetTarget::Host,
            NetworkNamespace::Join(pin) => NetTarget::Pinned(pin.clone()),
            NetworkNamespace::New => NetTarget::Init {
                pid: init_pid,
                cgroup,
            },
        }
    }
}

impl Runtime {
    /// [`NetTarget::for_container`] for container `id`, with the network it was started
    /// with (from its bundle).
    pub fn net_target(&self, id: &str, init_pid: i32) -> Result<NetTarget> {
        let bundle = self.bundle_dir(id);
        let cfg = ShimConfig::read(&bundle).map_err(|source| HealthError::Io {
            id: id.to_string(),
            op: "read container config in",
            path: bundle.clone(),
            source,
        })?;
        Ok(NetTarget::for_container(
            &cfg.network,
            init_pid,
            self.cgroups().open(id),
        ))
    }
}

/// Healthy when a TCP connection to `127.0.0.1:port` in `target` opens within `timeout`.
pub async fn tcp_probe(target: NetTarget, port: u16, timeout: Duration) -> Result<ProbeResult> {
    in_target(target, move || match connect(port, timeout) {
        Ok(_) => ProbeResult::healthy(format!("connected to {}", loopback(port))),
        Err(unhealthy) => unhealthy,
    })
    .await
}

/// `GET path` over HTTP/1.0 from `127.0.0.1:port` in `target`: healthy for a status of
/// 200–399, like Kubernetes' httpGet probe. The output is the status line and the start of
/// the body.
pub async fn http_probe(
    target: NetTarget,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<ProbeResult> {
    let request = http::request(path, port)?;
    in_target(target, move || http::get(port, &request, timeout)).await
}

pub(super) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Connects to `127.0.0.1:port`; the unhealthy result when it cannot.
pub(super) fn connect(port: u16, timeout: Duration) -> std::result::Result<TcpStream, ProbeResult> {
    let addr = loopback(port);
    if timeout.is_zero() {
        return Err(ProbeResult::timed_out(timeout));
    }
    TcpStream::connect_timeout(&addr, timeout).map_err(|e| match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ProbeResult::timed_out(timeout),
        _ => ProbeResult::unhealthy(format!("connect {addr}: {}", io_text(&e))),
    })
}

/// Runs `probe` in `target`'s network namespace, on a thread of its own that entered it.
async fn in_target<F>(target: NetTarget, probe: F) -> Result<ProbeResult>
where
    F: FnOnce() -> ProbeResult + Send + 'static,
{
    tokio::task::spawn_blocking(move || match target {
        NetTarget::Host => Ok(probe()),
        NetTarget::Pinned(path) => {
            if !netns::is_namespace(&path) {
                return Err(HealthError::NoNamespace { path });
            }
            netns::run_in(&path, probe).map_err(|source| HealthError::Network { source })
        }
        NetTarget::Init { pid, cgroup } => {
            let init = InitProcess::open(cgroup.name(), pid, cgroup.paths())?;
            let (path, ns) = init.namespace("net")?;
            init.confirm_alive()?;
            netns::run_in_fd(ns, &path, probe).map_err(|source| HealthError::Network { source })
        }
    })
    .await
    .map_err(|e| HealthError::Thread(e.to_string()))?
}
