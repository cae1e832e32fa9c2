//! End to end, networks: busybox `httpd` in a container answers through its published port
//! from the host's 127.0.0.1, from a host address and from a second network namespace that
//! plays another host; UDP likewise; containers reach each other by name (and stop doing so
//! when one goes); two networks are isolated; an internal network has no way out; a port
//! already taken is an error on that container only; an agent restart keeps every address;
//! the traffic shows in the stats API, `/metrics` and `berth stats`; a container finished for
//! good gives back its address, port and name while a restarting one keeps its address; and
//! removing the manifests leaves no link, namespace, nftables table or lease.
//!
//! Outbound traffic from a container reaches another host masqueraded to the host's address.
//!
//! Debian's busybox has no UDP server applet (its `nc` lacks `-u`), so the UDP endpoint is a
//! socket the test opens inside the web container's network namespace: the path under test
//! (DNAT, forwarding, the container's interface) is the same.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_tests::agent::{leaks, links_with, nft_table_exists, Agent};
use berth_tests::{push_busybox, require_tool, Registry};
use serde_json::Value;

const IDLE: &str = "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";
const WEB: &str = "mkdir -p /tmp/www && echo hello-from-web > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www";

fn container(name: &str, networks: &str, script: &str, extra: &str) -> String {
    format!(
        "apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: docker.io/library/busybox:1.36\n  command: [sh, -c]\n  args: [\"{script}\"]\n  networks: {networks}\n  stopTimeout: 2s\n{extra}"
    )
}

fn network(name: &str, extra: &str) -> String {
    format!("apiVersion: berth/v1\nkind: Network\nmetadata:\n  name: {name}\nspec:\n  driver: bridge\n{extra}")
}

/// A bridge prefix and pool for test number `test` of this run alone.
fn network_settings(test: u32) -> (String, String) {
    let h = (std::process::id() ^ test.wrapping_mul(0x9e37_79b9)).wrapping_mul(2246822519);
    (
        format!("e{:05x}", h & 0xfffff),
        format!("10.{}.{}.0/21", 224 + (h >> 20) % 16, ((h >> 8) % 32) * 8),
    )
}

fn pid_of(c: &Value) -> i32 {
    c["pid"].as_i64().expect("running container has a pid") as i32
}

/// The container's address, from the hosts file berth wrote for it.
fn address_of(pid: i32) -> Ipv4Addr {
    let hosts = std::fs::read_to_string(format!("/proc/{pid}/root/etc/hosts")).unwrap();
    hosts
        .lines()
        .last()
        .and_then(|l| l.split('\t').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {hosts}"))
}

/// Runs a command inside the container (its mount and network namespaces, its root).
fn exec_in(pid: i32, args: &[&str]) -> Result<String, String> {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "-n", "-u", "-r", "-w", "--"])
        .args(args)
        .output()
        .expect("run nsenter");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(stdout + &String::from_utf8_lossy(&out.stderr))
    }
}

/// busybox `wget`; its own `-T` crashes Debian's static build, so `timeout` bounds it.
fn wget_in(pid: i32, url: &str) -> Result<String, String> {
    exec_in(pid, &["timeout", "5", "wget", "-q", "-O-", url])
}

fn http_get(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    Ok(resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(resp))
}

fn udp_ask(addr: SocketAddr, msg: &str) -> Result<String, String> {
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send_to(msg.as_bytes(), addr).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 256];
    let (n, _) = s
        .recv_from(&mut buf)
        .map_err(|e| format!("receive from {addr}: {e}"))?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Runs `f` on a thread inside the network namespace at `ns` (a file or /proc/PID/ns/net).
fn in_netns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(ns).unwrap_or_else(|e| panic!("open {}: {e}", ns.display()));
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .unwrap()
}

/// "Another host": a namespace linked to the host by a veth, with a /30 of the benchmarking
/// range 198.18.0.0/15 and a default route through the host.
struct PeerHost {
    name: String,
    host_if: String,
    host_ip: Ipv4Addr,
    peer_ip: Ipv4Addr,
}

impl PeerHost {
    fn new(prefix: &str) -> PeerHost {
        let name = format!("{prefix}-peer");
        let (host_if, peer_if) = (format!("{prefix}h"), format!("{prefix}x"));
        let third = std::process::id() % 250;
        let (host_ip, peer_ip) = (
            Ipv4Addr::new(198, 18, third as u8, 1),
            Ipv4Addr::new(198, 18, third as u8, 2),
        );
        let peer = PeerHost {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip,
            peer_ip,
        };
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if, "netns", &name,
        ]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{peer_ip}/30"),
            "dev",
            &peer_if,
        ]);
        ip(&["-n", &name, "link", "set", &peer_if, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &name,
            "route",
            "add",
            "default",
            "via",
            &host_ip.to_string(),
        ]);
        peer
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for PeerHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A UDP server inside the network namespace of `pid`, answering `udp:` + the datagram.
fn udp_server_in(pid: i32, port: u16, stop: Arc<AtomicBool>) {
    let sock = in_netns(Path::new(&format!("/proc/{pid}/ns/net")), move || {
        UdpSocket::bind(("0.0.0.0", port))
    })
    .expect("bind udp in container");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while !stop.load(Ordering::SeqCst) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let reply = [b"udp:".as_slice(), &buf[..n]].concat();
                let _ = sock.send_to(&reply, from);
            }
        }
    });
}

/// Rows of a table of the agent's state db, read with an independent client.
fn db_rows(state_dir: &Path, table: &str) -> usize {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from {table}').fetchone()[0])"))
        .arg(state_dir.join("state.db"))
        .output()
        .expect("run python3 (hint: apt-get install python3)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The 16 counters of `interface` in `/proc/PID/net/dev`: the kernel's view of the network
/// namespace of process `pid`, read independently of berth.
fn net_dev(pid: i32, interface: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{interface}:")))
        .map(|rest| {
            rest.split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect()
        })
        .unwrap_or_else(|| panic!("no {interface} in:\n{text}"))
}

fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns Some; on timeout, fails with what the agent logged.
fn wait_until<T>(
    agent: &Agent,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\nagent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ports_names_isolation_restart_and_cleanup() {
    require_tool("nsenter", "util-linux").unwrap();
    require_tool("nft", "nftables").unwrap();
    require_tool("ip", "iproute2").unwrap();
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let (prefix, pool) = network_settings(1);
    let mut agent = Agent::start_with(
        &registry,
        &format!("networks:\n  bridgePrefix: {prefix}\n  pool: {pool}\n"),
    )
    .expect("start agent");
    let peer = PeerHost::new(&prefix);
    let stop = Arc::new(AtomicBool::new(false));
    let (tcp_port, udp_port) = (free_port(), free_port());

    agent
        .write_manifest(
            "networks.yaml",
            &[
                network("front", ""),
                network("back", ""),
                network("vault", "  internal: true\n"),
            ]
            .join("---\n"),
        )
        .unwrap();
    let ports = format!(
        "  ports:\n    - {{containerPort: 8080, hostPort: {tcp_port}}}\n    - {{containerPort: 5353, hostPort: {udp_port}, protocol: udp}}\n"
    );
    agent
        .write_manifest("web.yaml", &container("web", "[front]", WEB, &ports))
        .unwrap();
    agent
        .write_manifest("client.yaml", &container("client", "[front]", IDLE, ""))
        .unwrap();
    agent
        .write_manifest("stranger.yaml", &container("stranger", "[back]", IDLE, ""))
        .unwrap();
    agent
        .write_manifest("locked.yaml", &container("locked", "[vault]", IDLE, ""))
        .unwrap();
    let mut pids = std::collections::BTreeMap::new();
    for name in ["web", "client", "stranger", "locked"] {
        let c = agent
            .wait_container(name, "running", |c| c["state"] == "running")
            .unwrap();
        pids.insert(name, pid_of(&c));
    }
    let (web, client, stranger, locked) = (
        pids["web"],
        pids["client"],
        pids["stranger"],
        pids["locked"],
    );
    let web_ip = address_of(web);
    let gateway: Ipv4Addr = std::fs::read_to_string(format!("/proc/{client}/root/etc/resolv.conf"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("nameserver "))
        .and_then(|a| a.parse().ok())
        .expect("resolv.conf names the gateway");
    let hostname = std::fs::read_to_string(format!("/proc/{web}/root/etc/hostname")).unwrap();
    assert_eq!(hostname, "web\n");
    udp_server_in(web, 5353, stop.clone());
    // httpd needs a moment to listen.
    wait_until(&agent, "web's httpd", Duration::from_secs(10), || {
        http_get(SocketAddr::from((web_ip, 8080))).ok()
    });

    // Published TCP: from 127.0.0.1, from a host address, from another host, hairpin.
    let hello = Ok("hello-from-web\n".to_string());
    assert_eq!(
        http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, tcp_port))),
        hello
    );
    assert_eq!(http_get(SocketAddr::from((peer.host_ip, tcp_port))), hello);
    let peer_addr = SocketAddr::from((peer.host_ip, tcp_port));
    assert_eq!(
        in_netns(&peer.path(), move || http_get(peer_addr)),
        hello,
        "from the other host"
    );
    assert_eq!(
        wget_in(client, &format!("http://{gateway}:{tcp_port}/")).as_deref(),
        Ok("hello-from-web\n"),
        "hairpin"
    );
    // Published UDP, the same ways.
    assert_eq!(
        udp_ask(SocketAddr::from((Ipv4Addr::LOCALHOST, udp_port)), "a"),
        Ok("udp:a".into())
    );
    assert_eq!(
        udp_ask(SocketAddr::from((peer.host_ip, udp_port)), "b"),
        Ok("udp:b".into())
    );
    let peer_udp = SocketAddr::from((peer.host_ip, udp_port));
    assert_eq!(
        in_netns(&peer.path(), move || udp_ask(peer_udp, "c")),
        Ok("udp:c".into()),
        "udp from the other host"
    );

    // The traffic shows in web's counters: in the stats API, in /metrics, in `berth stats`,
    // each between two readings of the kernel's own counters for web's namespace.
    let before = net_dev(web, "eth0");
    let stats: Value =
        serde_json::from_str(&agent.get("/v1/containers/web/stats").unwrap()).unwrap();
    let metrics = agent.get("/metrics").unwrap();
    let after = net_dev(web, "eth0");
    let eth0 = stats["network"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["interface"] == "eth0"))
        .unwrap_or_else(|| panic!("no eth0 in {stats}"));
    for (key, i) in [
        ("rxBytes", 0),
        ("rxPackets", 1),
        ("txBytes", 8),
        ("txPackets", 9),
    ] {
        let v = eth0[key].as_u64().unwrap();
        assert!(
            before[i] <= v && v <= after[i],
            "{key} {v} not in {before:?}..{after:?}"
        );
    }
    assert!(
        before[0] > 1000 && before[8] > 1000,
        "the requests above moved bytes: {before:?}"
    );
    assert!(stats["pids"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["memoryUsageBytes"].as_u64().unwrap() > 0, "{stats}");
    for (metric, i) in [
        ("container_network_receive_bytes_total", 0),
        ("container_network_transmit_bytes_total", 8),
        ("container_network_receive_packets_total", 1),
    ] {
        // cAdvisor's labels: id, image, interface, name (the text format sorts them).
        let v: u64 = metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{metric}{{")))
            .find(|l| l.contains("interface=\"eth0\"") && l.contains("name=\"web\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {metric} of web's eth0 in:\n{metrics}"));
        assert!(
            before[i] <= v && v <= after[i],
            "{metric} {v} not in {before:?}..{after:?}"
        );
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("container_cpu_usage_seconds_total{")
                && l.contains("name=\"client\"")),
        "every running container has usage series:\n{metrics}"
    );
    let out = Command::new(berth_tests::agent::berth_bin())
        .args(["stats", "web", "client", "--addr", &agent.cli_addr()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "berth stats: {table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains('%') && row.contains(" / "), "{table}");
    assert_eq!(
        table.lines().count(),
        3,
        "a header, web and client:\n{table}"
    );

    // The API and `berth ps` show web's address and its published ports.
    let status = agent.container("web").unwrap();
    assert_eq!(
        status["networks"],
        serde_json::json!([{"network": "front", "interface": "eth0", "address": web_ip.to_string()}])
    );
    let tcp_mapping = format!("0.0.0.0:{tcp_port}->8080/tcp");
    assert_eq!(
        status["ports"],
        serde_json::json!([tcp_mapping, format!("0.0.0.0:{udp_port}->5353/udp")])
    );
    let out = Command::new(berth_tests::agent::berth_bin())
        .args(["ps", "--addr", &agent.cli_addr()])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&out.stdout);
    let row = ps
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(row.contains(&tcp_mapping), "{ps}");
    // `berth inspect network/front` and `berth ls networks` show the network with web on it.
    let cli = |args: &[&str]| {
        let out = Command::new(berth_tests::agent::berth_bin())
            .args(args)
            .args(["--addr", &agent.cli_addr()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let front: serde_json::Value =
        serde_json::from_str(&cli(&["inspect", "network/front"])).unwrap();
    assert!(
        front["containers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["container"] == "web" && a["address"] == web_ip.to_string().as_str()),
        "{front}"
    );
    let ls = cli(&["ls", "networks"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("front ") && l.contains(front["subnet"].as_str().unwrap())),
        "{ls}"
    );

    // By name on a shared network; not across networks; nothing out of the internal one.
    assert_eq!(
        wget_in(client, "http://web:8080/").as_deref(),
        Ok("hello-from-web\n")
    );
    let lookup = exec_in(client, &["nslookup", "web"]).unwrap();
    assert!(lookup.contains(&web_ip.to_string()), "{lookup}");
    let across = wget_in(stranger, &format!("http://{web_ip}:8080/"));
    assert!(across.is_err(), "back reached front: {across:?}");
    assert!(
        wget_in(stranger, "http://web:8080/")
            .unwrap_err()
            .contains("bad address"),
        "web's name is not known on back"
    );
    let out = wget_in(locked, &format!("http://{web_ip}:8080/")).unwrap_err();
    assert!(out.contains("unreachable"), "{out}");
    assert!(
        wget_in(locked, &format!("http://{}:{tcp_port}/", peer.host_ip)).is_err(),
        "internal reaches the host's ports"
    );

    // Outbound: a container reaches another host, masqueraded to the host's address there.
    let listener = in_netns(&peer.path(), || TcpListener::bind(("0.0.0.0", 0))).unwrap();
    let out_port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        let (mut conn, from) = loop {
            match listener.accept() {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(format!("no connection from the container: {e}")),
            }
        };
        conn.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 512];
        let _ = conn.read(&mut buf);
        conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nfrom-peer\n")
            .unwrap();
        Ok(from.ip())
    });
    assert_eq!(
        wget_in(client, &format!("http://{}:{out_port}/", peer.peer_ip)).as_deref(),
        Ok("from-peer\n")
    );
    assert_eq!(
        server.join().unwrap(),
        Ok(std::net::IpAddr::V4(peer.host_ip)),
        "the other host sees the host's address, not the container's"
    );

    // A port that is taken fails that container only.
    agent
        .write_manifest(
            "dup.yaml",
            &container(
                "dup",
                "[front]",
                IDLE,
                &format!("  ports:\n    - {{containerPort: 80, hostPort: {tcp_port}}}\n"),
            ),
        )
        .unwrap();
    let held = TcpListener::bind("0.0.0.0:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    agent
        .write_manifest(
            "busy.yaml",
            &container(
                "busy",
                "[front]",
                IDLE,
                &format!("  ports:\n    - {{containerPort: 80, hostPort: {held_port}}}\n"),
            ),
        )
        .unwrap();
    let dup = agent
        .wait_container("dup", "failed", |c| c["state"] == "failed")
        .unwrap();
    assert!(
        // The loader sees two manifests claim one port; the engine's own check (in its
        // tests) covers ports held by containers the manifests no longer show.
        dup["message"].as_str().unwrap().contains(&format!(
            "host port {tcp_port}/tcp on 0.0.0.0 is also published by Container/web"
        )),
        "{dup}"
    );
    let busy = agent
        .wait_container("busy", "failed", |c| c["state"] == "failed")
        .unwrap();
    assert!(
        busy["message"]
            .as_str()
            .unwrap()
            .contains("is in use by a host process"),
        "{busy}"
    );
    assert_eq!(
        http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, tcp_port))),
        hello,
        "web unaffected"
    );
    agent.remove_manifest("dup.yaml").unwrap();
    agent.remove_manifest("busy.yaml").unwrap();
    drop(held);

    // Names follow containers: web goes, its name goes; it comes back, its name comes back.
    agent.remove_manifest("web.yaml").unwrap();
    wait_until(&agent, "web's name to go", Duration::from_secs(30), || {
        wget_in(client, "http://web:8080/")
            .err()
            .filter(|e| e.contains("bad address"))
    });
    agent
        .write_manifest("web.yaml", &container("web", "[front]", WEB, &ports))
        .unwrap();
    let web = pid_of(
        &agent
            .wait_container("web", "running again", |c| c["state"] == "running")
            .unwrap(),
    );
    let web_ip = address_of(web);
    udp_server_in(web, 5353, stop.clone());
    wait_until(&agent, "web by name again", Duration::from_secs(15), || {
        wget_in(client, "http://web:8080/").ok()
    });

    // An agent restart keeps every container and every address, and everything still works.
    let addresses: Vec<(i32, Ipv4Addr)> = [web, client, stranger, locked]
        .iter()
        .map(|&p| (p, address_of(p)))
        .collect();
    agent.restart().unwrap();
    for name in ["web", "client", "stranger", "locked"] {
        agent
            .wait_container(name, "adopted", |c| c["state"] == "running")
            .unwrap();
    }
    for (pid, addr) in &addresses {
        assert_eq!(address_of(*pid), *addr);
        let inside = Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "-n",
                "ip",
                "-4",
                "-o",
                "addr",
                "show",
                "eth0",
            ])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&inside.stdout).contains(&format!("{addr}/")),
            "pid {pid} lost {addr}"
        );
    }
    assert_eq!(
        http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, tcp_port))),
        hello
    );
    assert_eq!(
        udp_ask(SocketAddr::from((Ipv4Addr::LOCALHOST, udp_port)), "d"),
        Ok("udp:d".into())
    );
    wait_until(
        &agent,
        "dns after the restart",
        Duration::from_secs(15),
        || wget_in(client, "http://web:8080/").ok(),
    );
    assert_eq!(address_of(web), web_ip);

    // Cleanup: every manifest goes; nothing of the prefix is left.
    let bridges = links_with(&prefix);
    assert!(
        bridges.len() >= 3 + 4,
        "bridges and veths carry the prefix: {bridges:?}"
    );
    assert!(nft_table_exists(&prefix));
    for f in [
        "web.yaml",
        "client.yaml",
        "stranger.yaml",
        "locked.yaml",
        "networks.yaml",
    ] {
        agent.remove_manifest(f).unwrap();
    }
    agent
        .wait_for("every container to go", Duration::from_secs(60), |a| {
            a.containers().ok().filter(|c| c.is_empty())
        })
        .unwrap();
    let host_if = peer.host_if.clone();
    wait_until(
        &agent,
        "every network to go",
        Duration::from_secs(40),
        || {
            let left: Vec<String> = links_with(&prefix)
                .into_iter()
                .filter(|l| *l != host_if)
                .collect();
            (left.is_empty() && !nft_table_exists(&prefix)).then_some(())
        },
    );
    let netns_dir = agent.run_dir.join("netns");
    assert_eq!(
        std::fs::read_dir(&netns_dir)
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "namespace pins left"
    );
    stop.store(true, Ordering::SeqCst);
    agent.stop().unwrap();
    assert_eq!(
        (
            db_rows(&agent.state_dir, "leases"),
            db_rows(&agent.state_dir, "networks")
        ),
        (0, 0)
    );
    drop(peer);
    assert_eq!(links_with(&prefix), Vec::<String>::new());
    let (cg, dir) = (agent.prefix.clone(), agent.root.path().to_path_buf());
    drop(agent);
    let left = leaks(&cg, &dir);
    assert!(left.is_empty(), "left on the host: {left:#?}");
}

#[test]
fn host_and_none_modes_and_a_deleted_bridge_comes_back() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let (prefix, pool) = network_settings(2);
    let prefix = format!("{}z", &prefix[..6]);
    let agent = Agent::start_with(
        &registry,
        &format!("networks:\n  bridgePrefix: {prefix}\n  pool: {pool}\n"),
    )
    .expect("start agent");
    agent
        .write_manifest(
            "h.yaml",
            &container("onhost", "[]", IDLE, "  networkMode: host\n"),
        )
        .unwrap();
    agent
        .write_manifest(
            "n.yaml",
            &container("alone", "[]", IDLE, "  networkMode: none\n"),
        )
        .unwrap();
    let port = free_port();
    agent
        .write_manifest(
            "w.yaml",
            &container(
                "web",
                "[default]",
                WEB,
                &format!("  ports:\n    - {{containerPort: 8080, hostPort: {port}}}\n"),
            ),
        )
        .unwrap();
    let onhost = pid_of(
        &agent
            .wait_container("onhost", "running", |c| c["state"] == "running")
            .unwrap(),
    );
    let alone = pid_of(
        &agent
            .wait_container("alone", "running", |c| c["state"] == "running")
            .unwrap(),
    );
    let web = pid_of(
        &agent
            .wait_container("web", "running", |c| c["state"] == "running")
            .unwrap(),
    );
    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(
        ns(onhost),
        std::fs::read_link("/proc/self/ns/net").unwrap(),
        "host mode shares the host's namespace"
    );
    assert_ne!(ns(alone), std::fs::read_link("/proc/self/ns/net").unwrap());
    let links = Command::new("nsenter")
        .args(["-t", &alone.to_string(), "-n", "ip", "-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert_eq!(links.lines().count(), 1, "none mode has only lo: {links}");
    // The built-in default network carries the prefix; deleted by hand, it comes back.
    let hello = Ok("hello-from-web\n".to_string());
    let url = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    wait_until(&agent, "web's httpd", Duration::from_secs(10), || {
        http_get(url).ok()
    });
    let bridge = links_with(&format!("{prefix}b"))
        .pop()
        .expect("default bridge");
    assert!(Command::new("ip")
        .args(["link", "del", &bridge])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("nft")
        .args(["flush", "table", "inet", &prefix])
        .status()
        .unwrap()
        .success());
    assert!(http_get(url).is_err());
    // The periodic resync repairs it (a manifest event makes it sooner).
    agent
        .write_manifest("touch.yaml", &network("spare", ""))
        .unwrap();
    wait_until(
        &agent,
        "the bridge and the table to come back",
        Duration::from_secs(40),
        || (http_get(url) == hello).then_some(()),
    );
    assert_eq!(
        address_of(web).octets()[0],
        10,
        "web is on the default network"
    );
    for f in ["h.yaml", "n.yaml", "w.yaml", "touch.yaml"] {
        agent.remove_manifest(f).unwrap();
    }
    agent
        .wait_for("every container to go", Duration::from_secs(60), |a| {
            a.containers().ok().filter(|c| c.is_empty())
        })
        .unwrap();
    wait_until(
        &agent,
        "the default network to go",
        Duration::from_secs(40),
        || (links_with(&prefix).is_empty() && !nft_table_exists(&prefix)).then_some(()),
    );
}

#[test]
fn a_finished_container_frees_its_address_and_port_a_restarting_one_keeps_its_address() {
    let registry = Registry::start().expect("start registry");
    push_busybox(&registry, "library/busybox:1.36", &[]).expect("push busybox image");
    let (prefix, pool) = network_settings(3);
    let prefix = format!("{}f", &prefix[..6]);
    let agent = Agent::start_with(
        &registry,
        &format!("networks:\n  bridgePrefix: {prefix}\n  pool: {pool}\n"),
    )
    .expect("start agent");
    let port = free_port();
    // A job on a published port that ends (exit 0) once the test creates /tmp/go in it,
    // and a container that keeps failing and restarting.
    let job_script = "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 0";
    agent
        .write_manifest(
            "job.yaml",
            &container(
                "job",
                "[default]",
                job_script,
                &format!(
                    "  restartPolicy: Never\n  ports:\n    - {{containerPort: 8080, hostPort: {port}}}\n"
                ),
            ),
        )
        .unwrap();
    agent
        .write_manifest(
            "flaky.yaml",
            &container(
                "flaky",
                "[default]",
                "sleep 1; exit 3",
                "  restartPolicy: Always\n",
            ),
        )
        .unwrap();
    let job = pid_of(
        &agent
            .wait_container("job", "running", |c| c["state"] == "running")
            .unwrap(),
    );
    let job_ip = address_of(job);
    let first = agent
        .wait_container("flaky", "running", |c| c["state"] == "running")
        .unwrap();
    let flaky_ip = address_of(pid_of(&first));
    agent
        .write_manifest("client.yaml", &container("client", "[default]", IDLE, ""))
        .unwrap();
    let client = pid_of(
        &agent
            .wait_container("client", "running", |c| c["state"] == "running")
            .unwrap(),
    );
    assert_eq!(db_rows(&agent.state_dir, "leases"), 3);
    let lookup = exec_in(client, &["nslookup", "job"]).unwrap();
    assert!(lookup.contains(&job_ip.to_string()), "{lookup}");
    let rules = || {
        let out = Command::new("nft")
            .args(["list", "table", "inet", &prefix])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(rules().contains(&format!("dport {port} ")), "{}", rules());

    // The job ends: its lease, veth, port rule and name go; its record stays, exited 0.
    std::fs::write(format!("/proc/{job}/root/tmp/go"), "").unwrap();
    let done = agent
        .wait_container("job", "exited", |c| c["state"] == "exited")
        .unwrap();
    assert_eq!(done["exitCode"], 0);
    agent
        .wait_for("the job's lease to go", Duration::from_secs(20), |_| {
            (db_rows(&agent.state_dir, "leases") == 2).then_some(())
        })
        .unwrap();
    assert_eq!(
        links_with(&format!("{prefix}v")).len(),
        2,
        "flaky's and client's veths"
    );
    assert!(!rules().contains(&format!("dport {port} ")), "{}", rules());
    let gone = exec_in(client, &["nslookup", "job"]);
    assert!(gone.is_err(), "job still resolves: {gone:?}");
    // 127.0.0.1:port is no longer redirected: a host listener gets the connection.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    let mut conn = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(3),
    )
    .unwrap();
    conn.write_all(b"ping").unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    let mut got = [0u8; 4];
    accepted.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    drop((conn, accepted, listener));
    // The job's address is free: the next container gets it (the lowest free address).
    agent
        .write_manifest("next.yaml", &container("next", "[default]", IDLE, ""))
        .unwrap();
    let next = agent
        .wait_container("next", "running", |c| c["state"] == "running")
        .unwrap();
    assert_eq!(address_of(pid_of(&next)), job_ip);

    // flaky restarts with back-off and keeps its address through every restart.
    let again = agent
        .wait_for("flaky to restart twice", Duration::from_secs(30), |a| {
            a.container("flaky")
                .filter(|c| c["state"] == "running" && c["restartCount"].as_u64().unwrap_or(0) >= 2)
        })
        .unwrap();
    assert_eq!(address_of(pid_of(&again)), flaky_ip);

    for f in ["job.yaml", "flaky.yaml", "client.yaml", "next.yaml"] {
        agent.remove_manifest(f).unwrap();
    }
    agent
        .wait_for("every container to go", Duration::from_secs(60), |a| {
            a.containers().ok().filter(|c| c.is_empty())
        })
        .unwrap();
    assert_eq!(db_rows(&agent.state_dir, "leases"), 0);
    wait_until(
        &agent,
        "the default network to go",
        Duration::from_secs(40),
        || (links_with(&prefix).is_empty() && !nft_table_exists(&prefix)).then_some(()),
    );
    let leaks = agent.finish().unwrap();
    assert!(leaks.is_empty(), "left behind: {leaks:?}");
}
