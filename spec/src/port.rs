//! Published ports of a container.

use std::net::{IpAddr, Ipv4Addr};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::names::CheckedNumber;

/// One port mapping; `hostPort` absent means the port is not published on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    #[serde(deserialize_with = "port_number")]
    #[schemars(range(min = 1))]
    pub container_port: u16,
    #[serde(
        default,
        deserialize_with = "some_port_number",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1))]
    pub host_port: Option<u16>,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(rename = "hostIP", default = "unspecified")]
    pub host_ip: IpAddr,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

fn unspecified() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}

pub(crate) fn port_number<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let n = d.deserialize_u64(CheckedNumber {
        min: 1,
        max: 65535,
        error: |n| format!("port {n} is out of range; hint: a port is a number from 1 to 65535"),
    })?;
    Ok(n as u16)
}

fn some_port_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    port_number(d).map(Some)
}

impl Port {
    /// Whether two published ports would claim the same host socket.
    pub fn conflicts_with(&self, other: &Port) -> bool {
        let (Some(a), Some(b)) = (self.host_port, other.host_port) else {
            return false;
        };
        if a != b || self.protocol != other.protocol {
            return false;
        }
        // An unspecified address binds every address of its family.
        let same_family = self.host_ip.is_ipv4() == other.host_ip.is_ipv4();
        self.host_ip == other.host_ip
            || (same_family && (self.host_ip.is_unspecified() || other.host_ip.is_unspecified()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(yaml: &str) -> Port {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_and_names() {
        let p = port("{containerPort: 80, hostPort: 8080}");
        assert_eq!(p.container_port, 80);
        assert_eq!(p.host_port, Some(8080));
        assert_eq!(p.protocol, Protocol::Tcp);
        assert_eq!(p.host_ip, unspecified());
        let p = port("{containerPort: 53, protocol: udp, hostIP: 127.0.0.1}");
        assert_eq!(p.host_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"}"#
        );
    }

    #[test]
    fn out_of_range_ports_are_refused() {
        for bad in [
            "{containerPort: 0}",
            "{containerPort: 70000}",
            "{containerPort: 1, hostPort: 0}",
        ] {
            let err = serde_yaml::from_str::<Port>(bad).unwrap_err().to_string();
            assert!(
                err.contains("hint: a port is a number from 1 to 65535"),
                "{err}"
            );
        }
    }

    #[test]
    fn conflicts() {
        let a = port("{containerPort: 80, hostPort: 8080}");
        let b = port("{containerPort: 81, hostPort: 8080, hostIP: 127.0.0.1}");
        let c = port("{containerPort: 81, hostPort: 8080, protocol: udp}");
        let d = port("{containerPort: 81, hostPort: 8080, hostIP: '::1'}");
        let e = port("{containerPort: 81, hostPort: 8080, hostIP: 127.0.0.2}");
        assert!(a.conflicts_with(&b));
        assert!(!a.conflicts_with(&c));
        assert!(!a.conflicts_with(&d));
        assert!(!b.conflicts_with(&e));
        assert!(!port("{containerPort: 80}").conflicts_with(&port("{containerPort: 80}")));
    }
}
