//! What the agent configures about networking, and how berth names the host objects it
//! creates: every bridge, veth and the nftables table carry the configured prefix, so two
//! agents (or a test) with different prefixes never touch each other's objects.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

/// Longest prefix: interface names hold at most 15 bytes (IFNAMSIZ - 1), and berth adds a
/// kind letter and 7 hex digits.
pub const MAX_PREFIX_LEN: usize = 7;

#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Prefix of every bridge, veth and of the nftables table (`inet <prefix>`).
    pub prefix: String,
    /// Subnets of networks that name none are carved from here.
    pub pool: Ipv4Net,
    /// Prefix length of the subnets carved from the pool.
    pub subnet_len: u8,
    /// Network namespace pins live in `<run_dir>/netns/<container id>`.
    pub run_dir: PathBuf,
    /// The host's resolver config and hosts file, copied into containers.
    pub host_resolv_conf: PathBuf,
    pub host_hosts: PathBuf,
    /// Run the embedded DNS responder on each bridge's gateway address.
    pub dns: bool,
}

impl NetworkConfig {
    pub const DEFAULT_PREFIX: &'static str = "berth";
    pub const DEFAULT_POOL: &'static str = "10.89.0.0/16";
    pub const DEFAULT_SUBNET_LEN: u8 = 24;

    pub fn new(
        prefix: &str,
        pool: Ipv4Net,
        subnet_len: u8,
        run_dir: &Path,
    ) -> Result<NetworkConfig, String> {
        check_prefix(prefix)?;
        if subnet_len < pool.prefix_len() || subnet_len > 30 {
            return Err(format!(
                "subnet size /{subnet_len} does not fit pool {pool} (hint: pick a length between /{} and /30)",
                pool.prefix_len()
            ));
        }
        Ok(NetworkConfig {
            prefix: prefix.to_string(),
            pool: pool.trunc(),
            subnet_len,
            run_dir: run_dir.to_path_buf(),
            host_resolv_conf: PathBuf::from("/etc/resolv.conf"),
            host_hosts: PathBuf::from("/etc/hosts"),
            dns: true,
        })
    }

    /// The Linux bridge of network `network`.
    pub fn bridge_name(&self, network: &str) -> String {
        format!("{}b{}", self.prefix, short_hash(&[network]))
    }

    /// The host end of the veth that links container `id` to network `network`.
    pub fn veth_name(&self, id: &str, network: &str) -> String {
        format!("{}v{}", self.prefix, short_hash(&[id, network]))
    }

    /// berth's one nftables table (family `inet`).
    pub fn table_name(&self) -> &str {
        &self.prefix
    }

    pub fn netns_dir(&self) -> PathBuf {
        self.run_dir.join("netns")
    }

    /// Where the network namespace of container `id` is pinned.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.netns_dir().join(id)
    }
}

/// A prefix is 1 to 7 of `[a-z0-9]`, starting with a letter: it must fit interface names
/// and nftables identifiers.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "network prefix {prefix:?} must be 1 to {MAX_PREFIX_LEN} lowercase letters or digits, starting with a letter (hint: like \"berth\")"
        ))
    }
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())[..7].to_string()
}

/// The MAC address of a container interface with address `ip` on a bridge: locally
/// administered and derived from the address (Docker's old scheme). A container recreated
/// with the same address gets the same MAC, so no stale neighbour entry points elsewhere.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(prefix: &str) -> NetworkConfig {
        NetworkConfig::new(
            prefix,
            "10.89.0.0/16".parse().unwrap(),
            24,
            Path::new("/run/berth"),
        )
        .unwrap()
    }

    #[test]
    fn names_carry_the_prefix_and_fit_ifnamsiz() {
        let c = cfg("berth");
        let br = c.bridge_name("default");
        assert!(br.starts_with("berthb") && br.len() == 13, "{br}");
        assert_eq!(br, c.bridge_name("default"), "stable");
        assert_ne!(br, c.bridge_name("front"));
        let v = c.veth_name("web-0011", "default");
        assert!(v.starts_with("berthv") && v.len() == 13, "{v}");
        assert_ne!(v, c.veth_name("web-0011", "front"));
        let long = cfg("abcdefg");
        assert_eq!(long.bridge_name("x").len(), 15);
        assert_eq!(c.table_name(), "berth");
        assert_eq!(c.netns_path("web-1"), Path::new("/run/berth/netns/web-1"));
    }

    #[test]
    fn bad_prefixes_and_sizes_are_refused() {
        for bad in ["", "abcdefgh", "Berth", "1abc", "b-b", "b.b"] {
            let e = check_prefix(bad).unwrap_err();
            assert!(e.contains("hint: like \"berth\""), "{bad}: {e}");
        }
        let e = NetworkConfig::new("b", "10.89.0.0/16".parse().unwrap(), 8, Path::new("/r"))
            .unwrap_err();
        assert_eq!(e, "subnet size /8 does not fit pool 10.89.0.0/16 (hint: pick a length between /16 and /30)");
        let c =
            NetworkConfig::new("b", "10.89.3.7/16".parse().unwrap(), 24, Path::new("/r")).unwrap();
        assert_eq!(c.pool.to_string(), "10.89.0.0/16", "host bits dropped");
    }

    #[test]
    fn macs_are_local_unicast_and_follow_the_address() {
        let m = mac_for(Ipv4Addr::new(10, 89, 0, 2));
        assert_eq!(m, [0x02, 0x42, 10, 89, 0, 2]);
        assert_eq!(m[0] & 0x01, 0, "unicast");
        assert_eq!(m[0] & 0x02, 0x02, "locally administered");
    }
}
