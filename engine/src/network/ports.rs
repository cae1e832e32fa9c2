//! Published ports: checking that a host port is free before it is claimed by DNAT.
//!
//! DNAT happens before local delivery, so a port published over a host process's socket
//! would silently steal its traffic. berth therefore binds the port once, the way the host
//! process would, and refuses it when that fails.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use berth_spec::{Port, Protocol};

/// Why a port cannot be published.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("publish {spec}: host port {port}/{proto} is already published by container {holder} (hint: pick another hostPort)")]
    TakenByContainer {
        spec: String,
        port: u16,
        proto: &'static str,
        holder: String,
    },
    #[error("publish {spec}: host port {port}/{proto} on {ip} is in use by a host process (hint: stop it or pick another hostPort)")]
    InUse {
        spec: String,
        port: u16,
        proto: &'static str,
        ip: IpAddr,
    },
    #[error("publish {spec}: hostIP {ip} is not an address of this host (hint: use one of its addresses, or 0.0.0.0)")]
    NotLocal { spec: String, ip: IpAddr },
    #[error("publish {spec}: bind {ip} port {port}/{proto}: {message}")]
    Bind {
        spec: String,
        ip: IpAddr,
        port: u16,
        proto: &'static str,
        message: String,
    },
    #[error("publish {spec}: only IPv4 host addresses are supported (hint: use an IPv4 hostIP, or 0.0.0.0)")]
    Ipv6 { spec: String },
}

/// `8080:80/tcp`, for messages.
pub fn describe(p: &Port) -> String {
    match p.host_port {
        Some(h) => format!("{h}:{}/{}", p.container_port, p.protocol.as_str()),
        None => format!("{}/{}", p.container_port, p.protocol.as_str()),
    }
}

/// The host address a port is published on: None means every IPv4 address.
pub fn host_ip(p: &Port) -> Result<Option<Ipv4Addr>, PortError> {
    match p.host_ip {
        IpAddr::V4(ip) if ip.is_unspecified() => Ok(None),
        IpAddr::V4(ip) => Ok(Some(ip)),
        IpAddr::V6(_) => Err(PortError::Ipv6 { spec: describe(p) }),
    }
}

/// Checks `p` against ports other containers publish (`others`: holder name and port), then
/// tries to bind it on the host.
pub fn check(p: &Port, others: &[(String, Port)]) -> Result<(), PortError> {
    let Some(port) = p.host_port else {
        return Ok(());
    };
    let spec = describe(p);
    host_ip(p)?;
    if let Some((holder, _)) = others.iter().find(|(_, o)| p.conflicts_with(o)) {
        return Err(PortError::TakenByContainer {
            spec,
            port,
            proto: p.protocol.as_str(),
            holder: holder.clone(),
        });
    }
    probe(p.host_ip, port, p.protocol).map_err(|e| match e.raw_os_error() {
        Some(libc::EADDRINUSE) => PortError::InUse {
            spec: spec.clone(),
            port,
            proto: p.protocol.as_str(),
            ip: p.host_ip,
        },
        Some(libc::EADDRNOTAVAIL) => PortError::NotLocal {
            spec: spec.clone(),
            ip: p.host_ip,
        },
        _ => PortError::Bind {
            spec: spec.clone(),
            ip: p.host_ip,
            port,
            proto: p.protocol.as_str(),
            message: e.to_string(),
        },
    })
}

/// Binds `ip:port` once and lets go.
fn probe(ip: IpAddr, port: u16, protocol: Protocol) -> std::io::Result<()> {
    let addr = SocketAddr::new(ip, port);
    match protocol {
        Protocol::Tcp => TcpListener::bind(addr).map(drop),
        Protocol::Udp => UdpSocket::bind(addr).map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(json: &str) -> Port {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_port_held_by_a_host_process_is_refused() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let n = held.local_addr().unwrap().port();
        let p = port(&format!(
            r#"{{"containerPort": 80, "hostPort": {n}, "hostIP": "127.0.0.1"}}"#
        ));
        let e = check(&p, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("publish {n}:80/tcp: host port {n}/tcp on 127.0.0.1 is in use by a host process (hint: stop it or pick another hostPort)")
        );
        // The same number over UDP is another socket.
        let u = port(&format!(
            r#"{{"containerPort": 80, "hostPort": {n}, "hostIP": "127.0.0.1", "protocol": "udp"}}"#
        ));
        check(&u, &[]).expect("udp port of the same number is free");
        drop(held);
        check(&p, &[]).expect("free once the host process lets go");
    }

    #[test]
    fn a_port_of_another_container_is_refused_first() {
        let p = port(r#"{"containerPort": 80, "hostPort": 18080}"#);
        let other = port(r#"{"containerPort": 81, "hostPort": 18080, "hostIP": "127.0.0.1"}"#);
        let e = check(&p, &[("api".into(), other)]).unwrap_err();
        assert_eq!(
            e,
            PortError::TakenByContainer {
                spec: "18080:80/tcp".into(),
                port: 18080,
                proto: "tcp",
                holder: "api".into()
            }
        );
    }

    #[test]
    fn foreign_and_v6_addresses_are_refused_and_unpublished_ports_pass() {
        let p = port(r#"{"containerPort": 80, "hostPort": 18081, "hostIP": "203.0.113.7"}"#);
        assert!(
            matches!(check(&p, &[]), Err(PortError::NotLocal { .. })),
            "{:?}",
            check(&p, &[])
        );
        let v6 = port(r#"{"containerPort": 80, "hostPort": 18081, "hostIP": "::1"}"#);
        assert_eq!(
            check(&v6, &[]),
            Err(PortError::Ipv6 {
                spec: "18081:80/tcp".into()
            })
        );
        check(&port(r#"{"containerPort": 80}"#), &[]).expect("nothing to publish");
        assert_eq!(host_ip(&port(r#"{"containerPort": 80}"#)), Ok(None));
    }
}
