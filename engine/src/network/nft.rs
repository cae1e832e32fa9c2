//! berth's one nftables table: DNAT of published ports, masquerade, hairpin and isolation.
//!
//! The whole table is rendered from the state db (networks and leases) by a pure function
//! and replaced in one `nft -f -` transaction (`table` + `delete table` + `table {...}`), so
//! rules never go half-applied and a flushed or deleted table is repaired by the next sync.
//!
//! - `prerouting` and `output` (traffic from the host itself) send packets addressed to a
//!   local address (`fib daddr type local`) to `published`, which DNATs each published port.
//! - Traffic from the host's 127.0.0.1 to a published port: the `output` DNAT sends a packet
//!   with a loopback source out of the bridge, which the kernel allows only with
//!   `route_localnet=1` on the bridge (set by the bridge driver); `postrouting` then
//!   masquerades it to the gateway address so the container can answer.
//! - Hairpin: a container reaching a published port of its own network is masqueraded to the
//!   gateway, or the answer would come straight from the peer's address and be dropped.
//! - `forward`: internal networks reach nothing but their own bridge; other networks cannot
//!   reach each other except through a published port (`ct status dnat`).

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use berth_spec::Protocol;
use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("run nft to {op} table inet {table}: {source} (hint: apt-get install nftables)")]
    Spawn {
        op: &'static str,
        table: String,
        source: std::io::Error,
    },
    #[error("nft {op} table inet {table}: {stderr}")]
    Failed {
        op: &'static str,
        table: String,
        stderr: String,
    },
}

pub type Result<T, E = NftError> = std::result::Result<T, E>;

/// A bridge network, as the firewall sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeRules {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub internal: bool,
}

/// One published port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRule {
    /// None: every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub protocol: Protocol,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

/// Everything the table holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub bridges: Vec<BridgeRules>,
    pub ports: Vec<PortRule>,
}

impl Ruleset {
    /// The rules, chain by chain, in order.
    fn chains(&self) -> Vec<(&'static str, Option<&'static str>, Vec<String>)> {
        let nat_local = vec!["fib daddr type local jump published".to_string()];
        let published: Vec<String> = self
            .ports
            .iter()
            .map(|p| {
                let daddr = p
                    .host_ip
                    .map(|ip| format!("ip daddr {ip} "))
                    .unwrap_or_default();
                format!(
                    "meta nfproto ipv4 {daddr}{proto} dport {} dnat ip to {}:{}",
                    p.host_port,
                    p.container_ip,
                    p.container_port,
                    proto = p.protocol.as_str()
                )
            })
            .collect();
        let mut post = Vec::new();
        let mut forward = Vec::new();
        for b in &self.bridges {
            let (br, net) = (&b.bridge, b.subnet);
            if b.internal {
                forward.push(format!("iifname \"{br}\" oifname != \"{br}\" drop"));
                forward.push(format!("oifname \"{br}\" iifname != \"{br}\" drop"));
            } else {
                post.push(format!("oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade"));
                post.push(format!(
                    "oifname \"{br}\" ip saddr {net} ct status dnat masquerade"
                ));
                post.push(format!("ip saddr {net} oifname != \"{br}\" masquerade"));
            }
        }
        let open: Vec<&BridgeRules> = self.bridges.iter().filter(|b| !b.internal).collect();
        if open.len() > 1 {
            forward.push("ct status dnat accept".to_string());
            for b in &open {
                let others: Vec<String> = open
                    .iter()
                    .filter(|o| o.bridge != b.bridge)
                    .map(|o| format!("\"{}\"", o.bridge))
                    .collect();
                forward.push(format!(
                    "iifname \"{}\" oifname {{ {} }} drop",
                    b.bridge,
                    others.join(", ")
                ));
            }
        }
        vec![
            (
                "prerouting",
                Some("type nat hook prerouting priority dstnat; policy accept;"),
                nat_local.clone(),
            ),
            (
                "output",
                // nft 1.0 takes the name `dstnat` in prerouting only; -100 is its value.
                Some("type nat hook output priority -100; policy accept;"),
                nat_local,
            ),
            ("published", None, published),
            (
                "postrouting",
                Some("type nat hook postrouting priority srcnat; policy accept;"),
                post,
            ),
            (
                "forward",
                Some("type filter hook forward priority filter; policy accept;"),
                forward,
            ),
        ]
    }

    /// How many rules the table holds once applied.
    pub fn rule_count(&self) -> usize {
        self.chains().iter().map(|(_, _, rules)| rules.len()).sum()
    }

    /// The `nft -f` script that replaces table `inet <table>` with this ruleset, atomically.
    pub fn render(&self, table: &str) -> String {
        let mut s = format!(
            "table inet {table} {{\n}}\ndelete table inet {table}\ntable inet {table} {{\n"
        );
        for (name, hook, rules) in self.chains() {
            s.push_str(&format!("\tchain {name} {{\n"));
            if let Some(h) = hook {
                s.push_str(&format!("\t\t{h}\n"));
            }
            for r in rules {
                s.push_str(&format!("\t\t{r}\n"));
            }
            s.push_str("\t}\n");
        }
        s.push_str("}\n");
        s
    }
}

fn run_nft(
    args: &[&str],
    stdin: Option<&str>,
    op: &'static str,
    table: &str,
) -> Result<std::process::Output> {
    let spawn = |source| NftError::Spawn {
        op,
        table: table.to_string(),
        source,
    };
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn)?;
    }
    child.wait_with_output().map_err(spawn)
}

/// Replaces the table with `ruleset`, in one transaction.
pub fn apply(table: &str, ruleset: &Ruleset) -> Result<()> {
    let out = run_nft(&["-f", "-"], Some(&ruleset.render(table)), "replace", table)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Failed {
            op: "replace",
            table: table.into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Deletes the table. Returns false when there was none.
pub fn delete(table: &str) -> Result<bool> {
    if count_rules(table)?.is_none() {
        return Ok(false);
    }
    let out = run_nft(&["delete", "table", "inet", table], None, "delete", table)?;
    if out.status.success() {
        Ok(true)
    } else {
        Err(NftError::Failed {
            op: "delete",
            table: table.into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The number of rules the table holds now, or None when it does not exist.
pub fn count_rules(table: &str) -> Result<Option<usize>> {
    let out = run_nft(&["-j", "list", "table", "inet", table], None, "list", table)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(NftError::Failed {
            op: "list",
            table: table.into(),
            stderr: stderr.trim().to_string(),
        });
    }
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| NftError::Failed {
            op: "list",
            table: table.into(),
            stderr: format!("unreadable json: {e}"),
        })?;
    let items = json["nftables"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    Ok(Some(
        items.iter().filter(|i| i.get("rule").is_some()).count(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(name: &str, net: &str, internal: bool) -> BridgeRules {
        BridgeRules {
            bridge: name.into(),
            subnet: net.parse().unwrap(),
            internal,
        }
    }

    #[test]
    fn renders_dnat_masquerade_hairpin_and_isolation() {
        let rs = Ruleset {
            bridges: vec![
                bridge("bb1", "10.89.0.0/24", false),
                bridge("bb2", "10.89.1.0/24", false),
                bridge("bbi", "10.89.2.0/24", true),
            ],
            ports: vec![
                PortRule {
                    host_ip: None,
                    host_port: 8080,
                    protocol: Protocol::Tcp,
                    container_ip: "10.89.0.2".parse().unwrap(),
                    container_port: 80,
                },
                PortRule {
                    host_ip: Some("127.0.0.1".parse().unwrap()),
                    host_port: 5353,
                    protocol: Protocol::Udp,
                    container_ip: "10.89.1.2".parse().unwrap(),
                    container_port: 53,
                },
            ],
        };
        let want = "table inet t {\n}\ndelete table inet t\ntable inet t {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local jump published
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local jump published
\t}
\tchain published {
\t\tmeta nfproto ipv4 tcp dport 8080 dnat ip to 10.89.0.2:80
\t\tmeta nfproto ipv4 ip daddr 127.0.0.1 udp dport 5353 dnat ip to 10.89.1.2:53
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname \"bb1\" ip saddr 127.0.0.0/8 masquerade
\t\toifname \"bb1\" ip saddr 10.89.0.0/24 ct status dnat masquerade
\t\tip saddr 10.89.0.0/24 oifname != \"bb1\" masquerade
\t\toifname \"bb2\" ip saddr 127.0.0.0/8 masquerade
\t\toifname \"bb2\" ip saddr 10.89.1.0/24 ct status dnat masquerade
\t\tip saddr 10.89.1.0/24 oifname != \"bb2\" masquerade
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"bbi\" oifname != \"bbi\" drop
\t\toifname \"bbi\" iifname != \"bbi\" drop
\t\tct status dnat accept
\t\tiifname \"bb1\" oifname { \"bb2\" } drop
\t\tiifname \"bb2\" oifname { \"bb1\" } drop
\t}
}
";
        assert_eq!(rs.render("t"), want);
        assert_eq!(rs.rule_count(), 2 + 2 + 6 + 5);
    }

    #[test]
    fn an_empty_ruleset_still_has_the_jumps() {
        let rs = Ruleset::default();
        assert_eq!(rs.rule_count(), 2);
        assert!(rs.render("x").contains("chain published {\n\t}\n"));
    }
}
