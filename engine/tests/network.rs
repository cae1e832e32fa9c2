//! Networks on the real host (root), without images: bridges, veths into pinned network
//! namespaces, leases, published TCP and UDP ports through nftables from 127.0.0.1 and a host
//! address, hairpin, isolation between networks, internal networks, the DNS responder,
//! counters, repair of a deleted bridge and a flushed table, a restarted manager keeping
//! every address, macvlan on a veth parent whose peer is a test "LAN" namespace — and nothing
//! of the test's prefix left behind.
//!
//! Servers and clients are sockets the test opens inside the namespaces (a thread enters the
//! namespace, opens the socket and leaves; the socket stays in that namespace).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_engine::network::{
    nft, AttachRequest, NetworkConfig, NetworkDef, NetworkError, NetworkManager,
};
use berth_engine::state::StateDb;
use berth_engine::sys::netns;
use berth_spec::{NetworkMode, NetworkSpec, Port};
use berth_tests::agent::links_with;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the network tests need root: they create bridges, namespaces and nftables tables"
    );
    for tool in ["ip", "nft"] {
        let ok = Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "test prerequisite missing: `{tool}` (hint: apt-get install iproute2 nftables)"
        );
    }
}

/// A prefix and pool no other test (or concurrent run) uses.
fn unique() -> (String, String) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst) as u32;
    let h = std::process::id()
        .wrapping_mul(2654435761)
        .wrapping_add(n.wrapping_mul(40503));
    let prefix = format!("n{:05x}", h & 0xfffff);
    let pool = format!("10.{}.{}.0/21", 160 + (h >> 20) % 64, ((h >> 8) % 32) * 8);
    (prefix, pool)
}

struct Fixture {
    mgr: NetworkManager,
    db: Arc<StateDb>,
    cfg: NetworkConfig,
    dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
}

impl Fixture {
    fn new() -> Fixture {
        require_root();
        let (prefix, pool) = unique();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg =
            NetworkConfig::new(&prefix, pool.parse().unwrap(), 24, &dir.path().join("run"))
                .unwrap();
        // The test's DNS upstream is an empty resolv.conf: nothing leaves the machine.
        cfg.host_resolv_conf = dir.path().join("host-resolv.conf");
        std::fs::write(&cfg.host_resolv_conf, "search test.invalid\n").unwrap();
        let db = Arc::new(StateDb::open(dir.path()).unwrap());
        let mgr = NetworkManager::new(cfg.clone(), db.clone());
        Fixture {
            mgr,
            db,
            cfg,
            dir,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    fn restart_manager(&mut self) {
        self.mgr = NetworkManager::new(self.cfg.clone(), self.db.clone());
    }

    fn ns(&self, id: &str) -> PathBuf {
        self.cfg.netns_path(id)
    }

    fn links(&self) -> Vec<String> {
        links_with(&self.cfg.prefix)
    }

    /// Ensures network `name` with a spec written as JSON.
    async fn network(&self, name: &str, json: &str) -> berth_engine::state::NetworkRecord {
        let spec: NetworkSpec = serde_json::from_str(json).unwrap();
        let def = NetworkDef {
            name: name.into(),
            spec,
            hash: format!("h-{json}"),
            source_file: "/m/n.yaml".into(),
        };
        self.mgr
            .ensure(def)
            .await
            .unwrap_or_else(|e| panic!("ensure network {name}: {e}"))
    }

    fn request(&self, id: &str, networks: &[&str], ports: &[Port]) -> AttachRequest {
        AttachRequest {
            id: id.into(),
            name: id.split('-').next().unwrap().into(),
            hostname: id.split('-').next().unwrap().into(),
            mode: NetworkMode::Bridge,
            networks: networks.iter().map(|s| s.to_string()).collect(),
            ports: ports.to_vec(),
            dir: self.dir.path().join("containers").join(id),
        }
    }
}

/// Removes whatever an assertion left, so a failed test does not leak either.
impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for l in self.links() {
            let _ = Command::new("ip").args(["link", "del", &l]).status();
        }
        let _ = nft::delete(self.cfg.table_name());
        if let Ok(entries) = std::fs::read_dir(self.cfg.netns_dir()) {
            for e in entries.flatten() {
                let _ = netns::remove(&e.path());
            }
        }
    }
}

fn port(json: &str) -> Port {
    serde_json::from_str(json).unwrap()
}

fn in_ns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    netns::run_in(path, f).unwrap_or_else(|e| panic!("enter {}: {e}", path.display()))
}

/// An HTTP/1.0 server answering `body` inside the namespace at `path`, until `stop`.
fn http_server(path: &Path, port: u16, body: &'static str, stop: Arc<AtomicBool>) {
    let listener =
        in_ns(path, move || TcpListener::bind(("0.0.0.0", port))).expect("bind http server");
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ = write!(
                        s,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
}

/// A UDP server that answers every datagram with `reply:` + the datagram.
fn udp_server(path: &Path, port: u16, stop: Arc<AtomicBool>) {
    let sock = in_ns(path, move || UdpSocket::bind(("0.0.0.0", port))).expect("bind udp server");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::SeqCst) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let mut reply = b"reply:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = sock.send_to(&reply, from);
            }
        }
    });
}

/// GET / from the host (`ns` None) or from inside a namespace; the body, or why not.
fn http_get(ns: Option<&Path>, addr: SocketAddr) -> Result<String, String> {
    let get = move || -> Result<String, String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        write!(s, "GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)
            .map_err(|e| format!("read {addr}: {e}"))?;
        Ok(resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or(resp))
    };
    match ns {
        Some(p) => in_ns(p, get),
        None => get(),
    }
}

fn udp_ask(ns: Option<&Path>, addr: SocketAddr, msg: &'static str) -> Result<String, String> {
    let ask = move || -> Result<String, String> {
        let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.connect(addr).map_err(|e| e.to_string())?;
        s.send(msg.as_bytes())
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut buf = [0u8; 512];
        let n = s
            .recv(&mut buf)
            .map_err(|e| format!("receive from {addr}: {e}"))?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    match ns {
        Some(p) => in_ns(p, ask),
        None => ask(),
    }
}

/// An `A` query for `name` sent to `server` from inside `ns`: the addresses, or the rcode.
fn dns_a(ns: &Path, server: Ipv4Addr, name: &'static str) -> Result<Vec<Ipv4Addr>, u8> {
    in_ns(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        s.send_to(&q, (server, 53)).unwrap();
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf).expect("dns answer");
        let rcode = buf[3] & 0x0f;
        if rcode != 0 {
            return Err(rcode);
        }
        let count = u16::from_be_bytes([buf[6], buf[7]]) as usize;
        // Answers follow the question; each A record is 16 bytes with a name pointer.
        let answers = &buf[q.len()..n];
        Ok((0..count)
            .map(|i| {
                Ipv4Addr::new(
                    answers[i * 16 + 12],
                    answers[i * 16 + 13],
                    answers[i * 16 + 14],
                    answers[i * 16 + 15],
                )
            })
            .collect())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridges_ports_isolation_dns_repair_and_cleanup() {
    let mut fx = Fixture::new();
    let prefix = fx.cfg.prefix.clone();
    let a = fx.network("a", "{}").await;
    let b = fx.network("b", "{}").await;
    let i = fx.network("i", r#"{"internal": true}"#).await;
    assert_eq!(a.interface, fx.cfg.bridge_name("a"));
    let (a_net, b_net): (ipnet::Ipv4Net, ipnet::Ipv4Net) =
        (a.subnet.parse().unwrap(), b.subnet.parse().unwrap());
    assert!(
        fx.cfg.pool.contains(&a_net) && fx.cfg.pool.contains(&b_net),
        "{a_net} {b_net} from {}",
        fx.cfg.pool
    );
    assert_ne!(a_net, b_net);
    assert_eq!(a.gateway, a_net.hosts().next().unwrap().to_string());
    let mut bridges = fx.links();
    bridges.sort();
    let mut want = vec![
        a.interface.clone(),
        b.interface.clone(),
        i.interface.clone(),
    ];
    want.sort();
    assert_eq!(bridges, want);
    let sysctl = |k: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{}/{k}", a.interface))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(sysctl("route_localnet"), "1");
    // Never strict on the bridge: off stays off, strict becomes loose.
    let all = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter").unwrap();
    let want = if all.trim() == "1" { "2" } else { "0" };
    assert_eq!(sysctl("rp_filter"), want);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    // The bridge's MAC is its own, not its lowest port's: it must not change as containers go.
    let mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", a.interface)).unwrap();
    let o = a.gateway.parse::<Ipv4Addr>().unwrap().octets();
    assert_eq!(
        mac.trim(),
        format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
    );

    // web on a publishes TCP and UDP; client on a; other on b; locked on the internal one.
    let (tcp_port, udp_port) = (free_port(), free_port());
    let published = [
        port(&format!(
            r#"{{"containerPort": 80, "hostPort": {tcp_port}}}"#
        )),
        port(&format!(
            r#"{{"containerPort": 5000, "hostPort": {udp_port}, "protocol": "udp"}}"#
        )),
    ];
    let web = fx
        .mgr
        .attach(fx.request("web-1", &["a"], &published))
        .await
        .expect("attach web");
    let web_ip = web.addresses[0].1;
    assert_eq!(
        web.addresses,
        vec![("a".to_string(), a_net.hosts().nth(1).unwrap())]
    );
    assert!(netns::is_namespace(&fx.ns("web-1")), "namespace pinned");
    let targets: Vec<&str> = web.etc_files.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(targets, ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"]);
    let resolv = std::fs::read_to_string(&web.etc_files[0].0).unwrap();
    assert_eq!(
        resolv,
        format!("nameserver {}\nsearch test.invalid\n", a.gateway)
    );
    let hosts = std::fs::read_to_string(&web.etc_files[1].0).unwrap();
    assert!(hosts.ends_with(&format!("{web_ip}\tweb\n")), "{hosts}");
    let client = fx
        .mgr
        .attach(fx.request("client-1", &["a"], &[]))
        .await
        .unwrap();
    let other = fx
        .mgr
        .attach(fx.request("other-1", &["b"], &[]))
        .await
        .unwrap();
    let locked = fx
        .mgr
        .attach(fx.request("locked-1", &["i"], &[]))
        .await
        .unwrap();
    let (client_ns, other_ns, locked_ns) = (fx.ns("client-1"), fx.ns("other-1"), fx.ns("locked-1"));
    http_server(&fx.ns("web-1"), 80, "hello from web", fx.stop.clone());
    udp_server(&fx.ns("web-1"), 5000, fx.stop.clone());

    // Published ports: from the host's 127.0.0.1, from a host address, and hairpin.
    let tcp = |ip: Ipv4Addr| SocketAddr::from((ip, tcp_port));
    assert_eq!(
        http_get(None, tcp(Ipv4Addr::LOCALHOST)),
        Ok("hello from web".into())
    );
    let host_addr: Ipv4Addr = b.gateway.parse().unwrap();
    assert_eq!(http_get(None, tcp(host_addr)), Ok("hello from web".into()));
    assert_eq!(
        http_get(Some(&client_ns), tcp(a.gateway.parse().unwrap())),
        Ok("hello from web".into()),
        "hairpin"
    );
    assert_eq!(
        udp_ask(
            None,
            SocketAddr::from((Ipv4Addr::LOCALHOST, udp_port)),
            "u1"
        ),
        Ok("reply:u1".into())
    );
    assert_eq!(
        udp_ask(None, SocketAddr::from((host_addr, udp_port)), "u2"),
        Ok("reply:u2".into())
    );
    // Same network: direct. Another network: only through the published port.
    assert_eq!(
        http_get(Some(&client_ns), SocketAddr::from((web_ip, 80))),
        Ok("hello from web".into())
    );
    let blocked = http_get(Some(&other_ns), SocketAddr::from((web_ip, 80)));
    assert!(
        blocked.is_err(),
        "network b reached a container of network a: {blocked:?}"
    );
    assert_eq!(
        http_get(Some(&other_ns), tcp(host_addr)),
        Ok("hello from web".into()),
        "published port from b"
    );
    // Internal: no route out at all, not even to the host's published port.
    let out = http_get(Some(&locked_ns), SocketAddr::from((web_ip, 80))).unwrap_err();
    assert!(out.contains("unreachable"), "{out}");
    assert!(http_get(Some(&locked_ns), tcp(host_addr)).is_err());
    assert_eq!(locked.addresses[0].0, "i");
    assert_eq!(other.addresses[0].0, "b");

    // DNS on the gateway: names of shared networks only, following the leases.
    let gw_a: Ipv4Addr = a.gateway.parse().unwrap();
    assert_eq!(dns_a(&client_ns, gw_a, "web"), Ok(vec![web_ip]));
    assert_eq!(
        dns_a(&client_ns, gw_a, "other"),
        Err(3),
        "other is on another network"
    );
    assert_eq!(dns_a(&client_ns, gw_a, "nosuch"), Err(3));

    // Counters of the container's interface saw the traffic.
    let counters = fx.mgr.counters("web-1").await.unwrap();
    let eth0 = counters
        .iter()
        .find(|c| c.interface == "eth0")
        .expect("eth0 counters");
    assert!(
        eth0.rx_bytes > 0 && eth0.tx_bytes > 0 && eth0.rx_packets > 0,
        "{eth0:?}"
    );
    assert_eq!(counters.len(), 1, "{counters:?}");
    // Several at once, on one thread; one without a namespace gets its own error.
    let both = fx
        .mgr
        .counters_of(vec!["nosuch-1".into(), "web-1".into()])
        .await
        .unwrap();
    let e = both[0].as_ref().unwrap_err().to_string();
    assert!(
        e.starts_with("read traffic counters in ") && e.contains("nosuch-1"),
        "{e}"
    );
    let again = both[1].as_ref().unwrap();
    assert_eq!(again[0].interface, "eth0");
    assert!(again[0].rx_bytes >= eth0.rx_bytes, "{again:?} vs {eth0:?}");

    // Conflicts: another container on the same port; a host process on a port.
    let e = fx
        .mgr
        .attach(fx.request("dup-1", &["a"], &published[..1]))
        .await
        .unwrap_err();
    assert!(matches!(e, NetworkError::Port(_)), "{e}");
    assert!(
        e.to_string().contains("already published by container web"),
        "{e}"
    );
    let held = TcpListener::bind("0.0.0.0:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    let e = fx
        .mgr
        .attach(fx.request(
            "busy-1",
            &["a"],
            &[port(&format!(
                r#"{{"containerPort": 80, "hostPort": {held_port}}}"#
            ))],
        ))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is in use by a host process"), "{e}");
    assert!(
        fx.db.leases_of_container("dup-1").unwrap().is_empty()
            && fx.db.leases_of_container("busy-1").unwrap().is_empty()
    );
    assert!(!fx.ns("busy-1").exists());
    drop(held);

    // Drift: a bridge deleted by hand and a flushed table come back on the next sync.
    assert!(Command::new("ip")
        .args(["link", "del", &a.interface])
        .status()
        .unwrap()
        .success());
    assert!(http_get(Some(&client_ns), SocketAddr::from((web_ip, 80))).is_err());
    fx.network("a", "{}").await;
    assert_eq!(
        http_get(Some(&client_ns), SocketAddr::from((web_ip, 80))),
        Ok("hello from web".into()),
        "veths re-attached"
    );
    assert!(Command::new("nft")
        .args(["flush", "table", "inet", &prefix])
        .status()
        .unwrap()
        .success());
    assert_eq!(nft::count_rules(&prefix).unwrap(), Some(0));
    assert!(
        fx.mgr.sync_firewall().await.unwrap(),
        "the flushed table is rewritten"
    );
    assert!(
        !fx.mgr.sync_firewall().await.unwrap(),
        "and left alone once right"
    );
    assert_eq!(
        http_get(None, tcp(Ipv4Addr::LOCALHOST)),
        Ok("hello from web".into())
    );

    // A new manager (an agent restart) keeps every address, and a restart of a container
    // (same id) gets its address back.
    fx.restart_manager();
    for (name, yaml) in [("a", "{}"), ("b", "{}"), ("i", r#"{"internal": true}"#)] {
        let again = fx.network(name, yaml).await;
        assert_eq!(fx.db.get_network(name).unwrap().unwrap(), again);
    }
    assert_eq!(fx.network("a", "{}").await.subnet, a.subnet);
    assert_eq!(
        dns_a(&client_ns, gw_a, "web"),
        Ok(vec![web_ip]),
        "records reloaded from leases"
    );
    let client_again = fx
        .mgr
        .attach(fx.request("client-1", &["a"], &[]))
        .await
        .unwrap();
    assert_eq!(client_again.addresses, client.addresses);

    // Teardown: every container, then every network; nothing of the prefix is left.
    for id in ["web-1", "client-1", "other-1", "locked-1"] {
        fx.mgr
            .detach(id)
            .await
            .unwrap_or_else(|e| panic!("detach {id}: {e:?}"));
    }
    assert_eq!(
        dns_from_host(gw_a, "web"),
        Err(3),
        "answers follow containers away"
    );
    for n in ["a", "b", "i"] {
        fx.mgr
            .remove(n)
            .await
            .unwrap_or_else(|e| panic!("remove {n}: {e:?}"));
    }
    assert_eq!(fx.links(), Vec::<String>::new());
    assert_eq!(nft::count_rules(&prefix).unwrap(), None, "table deleted");
    assert_eq!(
        std::fs::read_dir(fx.cfg.netns_dir()).unwrap().count(),
        0,
        "namespace pins removed"
    );
    assert!(fx.db.list_leases().unwrap().is_empty() && fx.db.list_networks().unwrap().is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&fx.dir.path().display().to_string()),
        "mounts left"
    );
}

/// An `A` query from the host itself (no container: it sees the network it asks on).
fn dns_from_host(server: Ipv4Addr, name: &'static str) -> Result<Vec<Ipv4Addr>, u8> {
    dns_a(Path::new("/proc/self/ns/net"), server, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macvlan_on_a_veth_parent_reaches_a_lan_namespace() {
    let fx = Fixture::new();
    let prefix = fx.cfg.prefix.clone();
    // The "LAN": a namespace holding one end of a veth; the other end, on the host, is the
    // macvlan parent.
    let lan = fx.cfg.netns_dir().join("lan-test");
    netns::create(&lan).unwrap();
    let (parent, peer) = (format!("{prefix}p0"), format!("{prefix}p1"));
    let sh = |args: &[&str]| {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", lan.display()))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(&[
        "ip", "link", "add", &parent, "type", "veth", "peer", "name", &peer,
    ]);
    sh(&["ip", "link", "set", &parent, "netns", "1"]);
    let subnet = format!("198.18.{}.0/24", std::process::id() % 250);
    let lan_ip: Ipv4Addr = format!("198.18.{}.1", std::process::id() % 250)
        .parse()
        .unwrap();
    sh(&["ip", "addr", "add", &format!("{lan_ip}/24"), "dev", &peer]);
    sh(&["ip", "link", "set", &peer, "up"]);
    sh(&["ip", "link", "set", "lo", "up"]);
    assert!(Command::new("ip")
        .args(["link", "set", &parent, "up"])
        .status()
        .unwrap()
        .success());

    let spec = format!(
        r#"{{"driver": "macvlan", "subnet": "{subnet}", "macvlan": {{"parent": "{parent}"}}}}"#
    );
    let net = fx.network("lan", &spec).await;
    assert_eq!(
        (
            net.driver.as_str(),
            net.interface.as_str(),
            net.macvlan_mode.as_str()
        ),
        ("macvlan", parent.as_str(), "bridge")
    );
    assert_eq!(net.gateway, lan_ip.to_string());
    let app = fx
        .mgr
        .attach(fx.request("app-1", &["lan"], &[]))
        .await
        .expect("attach to macvlan");
    let app_ip = app.addresses[0].1;
    assert_eq!(
        app_ip.to_string(),
        format!("198.18.{}.2", std::process::id() % 250)
    );
    assert!(
        std::fs::read_to_string(&app.etc_files[0].0)
            .unwrap()
            .starts_with("nameserver 8.8.8.8\n"),
        "no dns responder on macvlan"
    );
    http_server(&fx.ns("app-1"), 8080, "hello over macvlan", fx.stop.clone());
    assert_eq!(
        http_get(Some(&lan), SocketAddr::from((app_ip, 8080))),
        Ok("hello over macvlan".into())
    );
    // The container's way out is the LAN's gateway.
    let out = Command::new("nsenter")
        .arg(format!("--net={}", fx.ns("app-1").display()))
        .args(["ip", "-4", "route", "show", "default"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("default via {lan_ip} dev eth0 proto static")
    );
    assert!(
        fx.links().iter().all(|l| l == &parent),
        "no host link but the test's parent: {:?}",
        fx.links()
    );

    fx.mgr.detach("app-1").await.unwrap();
    fx.mgr.remove("lan").await.unwrap();
    assert!(
        links_with(&parent).contains(&parent),
        "berth never deletes a macvlan parent"
    );
    assert!(Command::new("ip")
        .args(["link", "del", &parent])
        .status()
        .unwrap()
        .success());
    netns::remove(&lan).unwrap();
    assert_eq!(fx.links(), Vec::<String>::new());
    assert_eq!(
        nft::count_rules(&prefix).unwrap(),
        None,
        "a macvlan network needs no table"
    );
    assert!(fx.db.list_leases().unwrap().is_empty());
}
