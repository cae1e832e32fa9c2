//! The `Network` kind's spec: a bridge or macvlan network.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    #[serde(default)]
    pub driver: NetworkDriver,
    /// Picked from the agent's pool when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Subnet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// No route out of the host.
    #[serde(default)]
    pub internal: bool,
    /// Only with `driver: macvlan`, and required there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macvlan: Option<Macvlan>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkDriver {
    #[default]
    Bridge,
    Macvlan,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Macvlan {
    /// The host interface, like `eth0`.
    pub parent: String,
    #[serde(default)]
    pub mode: MacvlanMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    #[default]
    Bridge,
    Private,
    Vepa,
    Passthru,
}

impl NetworkSpec {
    /// Checks between fields; the text says what would be right.
    pub fn check(&self) -> Result<(), String> {
        match (self.driver, &self.macvlan) {
            (NetworkDriver::Macvlan, None) => {
                return Err("driver macvlan needs a macvlan section; hint: add macvlan: {parent: eth0}".into())
            }
            (NetworkDriver::Bridge, Some(_)) => {
                return Err("the macvlan section only applies to driver macvlan; hint: set driver: macvlan or remove macvlan".into())
            }
            _ => {}
        }
        if let Some(m) = &self.macvlan {
            let ok = !m.parent.is_empty()
                && m.parent.len() <= 15
                && !m.parent.contains(['/', ' ', ':'])
                && m.parent != "."
                && m.parent != "..";
            if !ok {
                return Err(format!(
                    "macvlan parent `{}` is not an interface name; hint: name a host interface like eth0 (at most 15 characters)",
                    m.parent
                ));
            }
        }
        if let Some(gw) = self.gateway {
            match &self.subnet {
                None => {
                    return Err("a gateway needs a subnet; hint: add subnet, like subnet: 10.89.1.0/24".into())
                }
                Some(net) if !net.contains(gw) => {
                    return Err(format!(
                        "gateway {gw} is outside subnet {net}; hint: pick an address inside the subnet, like {}",
                        net.first_host()
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// An IP network in CIDR form, like `10.89.1.0/24`; host bits must be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    pub addr: IpAddr,
    pub prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid subnet `{text}`: {why}; hint: write a network in CIDR form, like 10.89.1.0/24 or fd00:89::/64")]
pub struct SubnetError {
    text: String,
    why: &'static str,
}

impl Subnet {
    fn bits(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    fn to_u128(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn mask(&self) -> u128 {
        let bits = u32::from(self.bits());
        let host = bits - u32::from(self.prefix);
        let all = if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        all & !(if host == 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && Self::to_u128(ip) & self.mask() == Self::to_u128(self.addr)
    }

    /// The first address after the network address (a usual gateway).
    pub fn first_host(&self) -> IpAddr {
        let n = Self::to_u128(self.addr) + 1;
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4((n as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(n.into()),
        }
    }
}

impl FromStr for Subnet {
    type Err = SubnetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| SubnetError {
            text: s.to_string(),
            why,
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| err("the /prefix is missing"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| err("the address is not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| err("the prefix is not a number"))?;
        let net = Subnet { addr, prefix };
        if prefix > net.bits() {
            return Err(err("the prefix is longer than the address"));
        }
        if Self::to_u128(addr) & !net.mask() != 0 {
            return Err(err("host bits are set"));
        }
        Ok(net)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Subnet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> NetworkSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn subnets() {
        let n: Subnet = "10.89.1.0/24".parse().unwrap();
        assert!(n.contains("10.89.1.1".parse().unwrap()));
        assert!(!n.contains("10.89.2.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        assert_eq!(n.first_host().to_string(), "10.89.1.1");
        let v6: Subnet = "fd00:89::/64".parse().unwrap();
        assert!(v6.contains("fd00:89::5".parse().unwrap()));
        assert_eq!(
            "0.0.0.0/0".parse::<Subnet>().unwrap().to_string(),
            "0.0.0.0/0"
        );
        let cases = [
            ("10.89.1.1/24", "host bits are set"),
            ("10.89.1.0", "the /prefix is missing"),
            ("10.89.1.0/33", "the prefix is longer"),
            ("x/24", "not an IP address"),
        ];
        for (text, why) in cases {
            let err = text.parse::<Subnet>().unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.contains("hint: write a network in CIDR form"), "{err}");
        }
    }

    #[test]
    fn checks_between_fields() {
        assert_eq!(spec("{}").check(), Ok(()));
        assert_eq!(
            spec("{subnet: 10.89.1.0/24, gateway: 10.89.1.1}").check(),
            Ok(())
        );
        assert_eq!(
            spec("{driver: macvlan, macvlan: {parent: eth0}}").check(),
            Ok(())
        );
        let cases = [
            ("{subnet: 10.89.1.0/24, gateway: 10.89.2.1}", "gateway 10.89.2.1 is outside subnet 10.89.1.0/24; hint: pick an address inside the subnet, like 10.89.1.1"),
            ("{gateway: 10.89.2.1}", "a gateway needs a subnet"),
            ("{driver: macvlan}", "driver macvlan needs a macvlan section"),
            ("{macvlan: {parent: eth0}}", "only applies to driver macvlan"),
            ("{driver: macvlan, macvlan: {parent: 'a/b'}}", "is not an interface name"),
        ];
        for (yaml, want) in cases {
            let err = spec(yaml).check().unwrap_err();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }
}
