//! The files a container gets at `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname`:
//! written into the container's dir by the agent, bind-mounted by the container's init.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The host's resolver config made fit for a container (Docker's rules): with `nameserver`
/// set, that one address replaces every nameserver (the embedded DNS responder); otherwise
/// loopback nameservers, which mean nothing in another network namespace, are dropped, and
/// when none is left, public resolvers stand in. `search` and `options` lines are kept.
pub fn resolv_conf(host: &str, nameserver: Option<Ipv4Addr>) -> String {
    let mut out = Vec::new();
    let mut servers = 0;
    for line in host.lines() {
        let t = line.trim();
        let mut words = t.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if nameserver.is_some() {
                    continue;
                }
                let addr = words.next().unwrap_or("");
                let ip: Option<std::net::IpAddr> =
                    addr.split('%').next().and_then(|a| a.parse().ok());
                if ip.is_some_and(|ip| !ip.is_loopback()) {
                    out.push(format!("nameserver {addr}"));
                    servers += 1;
                }
            }
            Some("search") | Some("domain") | Some("options") => out.push(t.to_string()),
            _ => {}
        }
    }
    match nameserver {
        Some(ns) => out.insert(0, format!("nameserver {ns}")),
        None if servers == 0 => {
            out.insert(0, "nameserver 8.8.4.4".into());
            out.insert(0, "nameserver 8.8.8.8".into());
        }
        None => {}
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// `/etc/hosts`: localhost, and the container's own names on each of its addresses.
pub fn hosts(hostname: &str, name: &str, addresses: &[Ipv4Addr]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    let names = if hostname == name {
        hostname.to_string()
    } else {
        format!("{hostname} {name}")
    };
    for a in addresses {
        s.push_str(&format!("{a}\t{names}\n"));
    }
    s
}

/// Writes the three files into `dir` and returns (host file, path in the container) pairs.
pub fn write(
    dir: &Path,
    resolv: &str,
    hosts: &str,
    hostname: &str,
) -> std::io::Result<Vec<(PathBuf, String)>> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    for (name, content, target) in [
        ("resolv.conf", resolv.to_string(), "/etc/resolv.conf"),
        ("hosts", hosts.to_string(), "/etc/hosts"),
        ("hostname", format!("{hostname}\n"), "/etc/hostname"),
    ] {
        let path = dir.join(name);
        crate::runtime::atomic::write_file(&path, content.as_bytes())?;
        files.push((path, target.to_string()));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "# generated\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver ::1\nsearch lan example.org\noptions edns0 trust-ad\n";

    #[test]
    fn loopback_nameservers_are_dropped_and_the_rest_kept() {
        assert_eq!(
            resolv_conf(HOST, None),
            "nameserver 10.255.255.53\nsearch lan example.org\noptions edns0 trust-ad\n"
        );
    }

    #[test]
    fn only_loopback_nameservers_fall_back_to_public_ones() {
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\nsearch lan\n", None),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch lan\n"
        );
    }

    #[test]
    fn the_embedded_dns_replaces_every_nameserver() {
        let got = resolv_conf(HOST, Some(Ipv4Addr::new(10, 89, 0, 1)));
        assert_eq!(
            got,
            "nameserver 10.89.0.1\nsearch lan example.org\noptions edns0 trust-ad\n"
        );
    }

    #[test]
    fn hosts_names_the_container_on_each_address() {
        let h = hosts(
            "web",
            "web",
            &[Ipv4Addr::new(10, 89, 0, 2), Ipv4Addr::new(10, 89, 1, 2)],
        );
        assert!(
            h.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
            "{h}"
        );
        assert!(h.ends_with("10.89.0.2\tweb\n10.89.1.2\tweb\n"), "{h}");
        let h = hosts("box", "web", &[Ipv4Addr::new(10, 89, 0, 2)]);
        assert!(h.ends_with("10.89.0.2\tbox web\n"), "{h}");
    }

    #[test]
    fn files_are_written_for_bind_mounting() {
        let dir = tempfile::tempdir().unwrap();
        let files = write(
            dir.path(),
            "nameserver 1.1.1.1\n",
            "127.0.0.1\tlocalhost\n",
            "web",
        )
        .unwrap();
        let targets: Vec<&str> = files.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(targets, ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"]);
        assert_eq!(std::fs::read_to_string(&files[2].0).unwrap(), "web\n");
        assert_eq!(
            std::fs::read_to_string(&files[0].0).unwrap(),
            "nameserver 1.1.1.1\n"
        );
    }
}
