//! The embedded DNS responder (like podman's aardvark-dns or Docker's 127.0.0.11): one UDP
//! socket per bridge network, on the bridge's gateway address, port 53, inside the agent.
//!
//! A container's `/etc/resolv.conf` names its first bridge network's gateway. The responder
//! answers `A` queries for container names from the leases (so answers follow containers as
//! they come and go, with a 5 s TTL), scoped to the networks the asking container shares
//! with the named one, and forwards every other name to the host's own nameservers (read
//! from the host's resolv.conf at each query; loopback ones work, since the agent runs in the
//! host's namespace). Single-label names that are not containers get NXDOMAIN at once.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::UdpSocket;

/// Seconds a client may cache an answer about a container.
pub const TTL: u32 = 5;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

const TYPE_A: u16 = 1;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;

/// One name on one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub network: String,
    pub name: String,
    pub address: Ipv4Addr,
    pub container_id: String,
}

/// What every responder answers from; replaced whole when leases change.
#[derive(Debug, Default)]
pub struct Records {
    entries: RwLock<Vec<Entry>>,
}

impl Records {
    pub fn replace(&self, entries: Vec<Entry>) {
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = entries;
    }

    /// Addresses of container `name` as seen by `client` asking on `network`: the networks
    /// considered are those of the asking container (or just `network` for anyone else), and
    /// the address on `network` comes first. None: no such container.
    pub fn lookup(&self, client: Ipv4Addr, network: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let asker = entries
            .iter()
            .find(|e| e.address == client && e.network == network)
            .map(|e| e.container_id.as_str());
        let nets: BTreeSet<&str> = match asker {
            Some(id) => entries
                .iter()
                .filter(|e| e.container_id == id)
                .map(|e| e.network.as_str())
                .collect(),
            None => [network].into(),
        };
        let mut found: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.name.eq_ignore_ascii_case(name) && nets.contains(e.network.as_str()))
            .collect();
        if found.is_empty() {
            return None;
        }
        found.sort_by_key(|e| (e.network != network, e.address));
        let mut out: Vec<Ipv4Addr> = Vec::new();
        for e in found {
            if !out.contains(&e.address) {
                out.push(e.address);
            }
        }
        Some(out)
    }
}

/// The one question of a query.
#[derive(Debug, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// Header flags of the query (opcode and RD are echoed back).
    pub flags: u16,
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Bytes of the question section, copied into the answer.
    pub question: Vec<u8>,
}

/// Parses a query with exactly one question. None for anything else (it gets no answer).
pub fn parse_query(buf: &[u8]) -> Option<Query> {
    if buf.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([buf[0], buf[1]]);
    let flags = u16::from_be_bytes([buf[2], buf[3]]);
    let qdcount = u16::from_be_bytes([buf[4], buf[5]]);
    if flags & 0x8000 != 0 || qdcount != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = *buf.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        // Compression pointers never appear in a question of a well-formed query.
        if len > 63 {
            return None;
        }
        let label = buf.get(i..i + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*buf.get(i + 2)?, *buf.get(i + 3)?]);
    Some(Query {
        id,
        flags,
        name: labels.join("."),
        qtype,
        qclass,
        question: buf[12..i + 4].to_vec(),
    })
}

fn header(q: &Query, rcode: u8, answers: u16) -> Vec<u8> {
    // QR, the query's opcode and RD, AA (we are the authority for container names), RA.
    let flags = 0x8000 | (q.flags & 0x7900) | 0x0400 | 0x0080 | u16::from(rcode);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&q.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&q.question);
    out
}

/// An answer with `addrs` as A records (none for a query of another type: NODATA).
pub fn answer(q: &Query, addrs: &[Ipv4Addr]) -> Vec<u8> {
    let addrs: &[Ipv4Addr] = if q.qtype == TYPE_A || q.qtype == TYPE_ANY {
        addrs
    } else {
        &[]
    };
    let mut out = header(q, 0, addrs.len() as u16);
    for a in addrs {
        out.extend_from_slice(&[0xc0, 0x0c]); // the name: a pointer to the question's
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&a.octets());
    }
    out
}

pub fn error(q: &Query, rcode: u8) -> Vec<u8> {
    header(q, rcode, 0)
}

/// The nameservers of a resolv.conf, minus `exclude` (our own gateways: no loops), on `port`.
pub fn upstreams(resolv_conf: &str, exclude: &[Ipv4Addr], port: u16) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .filter(|ip| !matches!(ip, IpAddr::V4(v4) if exclude.contains(v4)))
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// Where a responder finds what it needs besides the query.
#[derive(Clone, Debug)]
pub struct Context {
    pub network: String,
    pub records: Arc<Records>,
    /// The host's resolv.conf, read at each forwarded query.
    pub host_resolv_conf: PathBuf,
    /// Addresses never used as upstream (every berth gateway).
    pub exclude: Vec<Ipv4Addr>,
    /// Port of the upstream nameservers: 53 (tests use another).
    pub upstream_port: u16,
}

/// A running responder. Dropping it stops it.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A UDP socket on `addr` with `IP_FREEBIND`, so it binds even before (or while) the
/// gateway address is missing from its bridge, and keeps working when the bridge is rebuilt.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use nix::sys::socket::{
        bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    let SocketAddr::V4(v4) = addr else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the DNS responder listens on IPv4 only",
        ));
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    setsockopt(&fd, sockopt::IpFreebind, &true)?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(v4))?;
    Ok(std::net::UdpSocket::from(fd))
}

impl Server {
    /// Starts answering on `addr` (the gateway, port 53). Must be called in a tokio runtime.
    pub fn start(addr: SocketAddr, ctx: Context) -> std::io::Result<Server> {
        let std_socket = bind(addr)?;
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        let addr = socket.local_addr()?;
        let task = tokio::spawn(serve(socket, ctx));
        Ok(Server { addr, task })
    }
}

async fn serve(socket: Arc<UdpSocket>, ctx: Context) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(network = %ctx.network, error = %e, "dns receive");
                continue;
            }
        };
        let Some(q) = parse_query(&buf[..n]) else {
            continue;
        };
        let client = match peer.ip() {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        let reply = if q.qclass != CLASS_IN || (q.flags >> 11) & 0xf != 0 {
            Some(error(&q, RCODE_NOTIMP))
        } else if let Some(addrs) = ctx.records.lookup(client, &ctx.network, &q.name) {
            Some(answer(&q, &addrs))
        } else if !q.name.contains('.') {
            Some(error(&q, RCODE_NXDOMAIN))
        } else {
            None
        };
        match reply {
            Some(r) => {
                let _ = socket.send_to(&r, peer).await;
            }
            None => {
                let (socket, ctx, query) = (socket.clone(), ctx.clone(), buf[..n].to_vec());
                tokio::spawn(async move {
                    let r = forward(&query, &ctx)
                        .await
                        .unwrap_or_else(|| error(&q, RCODE_SERVFAIL));
                    let _ = socket.send_to(&r, peer).await;
                });
            }
        }
    }
}

/// Asks the host's nameservers in turn; the first answer with the query's id wins.
async fn forward(query: &[u8], ctx: &Context) -> Option<Vec<u8>> {
    let conf = tokio::fs::read_to_string(&ctx.host_resolv_conf)
        .await
        .unwrap_or_default();
    for up in upstreams(&conf, &ctx.exclude, ctx.upstream_port) {
        let local: SocketAddr = if up.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(sock) = UdpSocket::bind(local).await else {
            continue;
        };
        if sock.send_to(query, up).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        let got = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            loop {
                match sock.recv_from(&mut buf).await {
                    Ok((n, from)) if from == up && n >= 2 && buf[..2] == query[..2] => {
                        return Some(n)
                    }
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        })
        .await;
        if let Ok(Some(n)) = got {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = Vec::new();
        q.extend_from_slice(&id.to_be_bytes());
        q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
        q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    fn entry(network: &str, name: &str, addr: [u8; 4], id: &str) -> Entry {
        Entry {
            network: network.into(),
            name: name.into(),
            address: addr.into(),
            container_id: id.into(),
        }
    }

    fn records() -> Records {
        let r = Records::default();
        r.replace(vec![
            entry("front", "web", [10, 89, 0, 2], "web-1"),
            entry("back", "web", [10, 89, 1, 2], "web-1"),
            entry("back", "db", [10, 89, 1, 3], "db-1"),
            entry("front", "proxy", [10, 89, 0, 3], "proxy-1"),
        ]);
        r
    }

    #[test]
    fn names_resolve_only_across_shared_networks() {
        let r = records();
        let (web_front, proxy) = (Ipv4Addr::new(10, 89, 0, 2), Ipv4Addr::new(10, 89, 0, 3));
        assert_eq!(
            r.lookup(proxy, "front", "web"),
            Some(vec![Ipv4Addr::new(10, 89, 0, 2)])
        );
        assert_eq!(
            r.lookup(proxy, "front", "db"),
            None,
            "db shares no network with proxy"
        );
        // web is on both networks: it sees db, and its own front address first on front.
        assert_eq!(
            r.lookup(web_front, "front", "db"),
            Some(vec![Ipv4Addr::new(10, 89, 1, 3)])
        );
        assert_eq!(
            r.lookup(web_front, "front", "WEB"),
            Some(vec![[10, 89, 0, 2].into(), [10, 89, 1, 2].into()])
        );
        // Someone who is no container (the host) sees the network it asks on.
        assert_eq!(
            r.lookup(Ipv4Addr::new(10, 89, 1, 1), "back", "web"),
            Some(vec![Ipv4Addr::new(10, 89, 1, 2)])
        );
        r.replace(vec![]);
        assert_eq!(
            r.lookup(proxy, "front", "web"),
            None,
            "answers follow the records"
        );
    }

    #[test]
    fn queries_parse_and_answers_are_well_formed() {
        let raw = query(0xbeef, "Web", TYPE_A);
        let q = parse_query(&raw).unwrap();
        assert_eq!(
            (q.id, q.name.as_str(), q.qtype, q.qclass),
            (0xbeef, "web", TYPE_A, CLASS_IN)
        );
        let a = answer(&q, &[Ipv4Addr::new(10, 89, 0, 2)]);
        assert_eq!(&a[..2], &[0xbe, 0xef]);
        assert_eq!(
            u16::from_be_bytes([a[2], a[3]]),
            0x8580,
            "QR AA RD RA, NOERROR"
        );
        assert_eq!(&a[6..8], &[0, 1], "one answer");
        assert_eq!(&a[12..raw.len()], &raw[12..], "question echoed");
        let rr = &a[raw.len()..];
        assert_eq!(
            rr,
            &[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 89, 0, 2]
        );
        let aaaa = parse_query(&query(1, "web", 28)).unwrap();
        assert_eq!(
            &answer(&aaaa, &[Ipv4Addr::new(10, 89, 0, 2)])[6..8],
            &[0, 0],
            "NODATA for AAAA"
        );
        let nx = error(&q, RCODE_NXDOMAIN);
        assert_eq!(nx[3] & 0x0f, 3);
        assert_eq!(parse_query(&raw[..15]), None);
        assert_eq!(parse_query(&a), None, "answers are not queries");
    }

    #[test]
    fn upstreams_come_from_resolv_conf_without_our_gateways() {
        let conf =
            "nameserver 10.89.0.1\nnameserver 127.0.0.53\n# x\nnameserver fd00::53\nsearch lan\n";
        let got = upstreams(conf, &[Ipv4Addr::new(10, 89, 0, 1)], 53);
        assert_eq!(
            got,
            [
                "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "[fd00::53]:53".parse().unwrap()
            ]
        );
    }

    #[tokio::test]
    async fn a_responder_answers_names_and_forwards_the_rest() {
        // A fake upstream on loopback that answers every query with 192.0.2.99.
        let up = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up_port = up.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut b = [0u8; 512];
            while let Ok((n, from)) = up.recv_from(&mut b).await {
                let q = parse_query(&b[..n]).unwrap();
                let _ = up
                    .send_to(&answer(&q, &[Ipv4Addr::new(192, 0, 2, 99)]), from)
                    .await;
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("resolv.conf");
        std::fs::write(&conf, "nameserver 127.0.0.1\n").unwrap();
        let ctx = Context {
            network: "front".into(),
            records: Arc::new(records()),
            host_resolv_conf: conf.clone(),
            exclude: vec![],
            upstream_port: up_port,
        };
        let server = Server::start("127.0.0.1:0".parse().unwrap(), ctx).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut b = [0u8; 512];
        let mut ask = async |id: u16, name: &str| {
            client
                .send_to(&query(id, name, TYPE_A), server.addr)
                .await
                .unwrap();
            let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut b))
                .await
                .expect("an answer")
                .unwrap();
            assert_eq!(u16::from_be_bytes([b[0], b[1]]), id);
            (b[3] & 0x0f, b[..n].to_vec())
        };

        let (rcode, a) = ask(7, "proxy").await;
        assert_eq!((rcode, &a[a.len() - 4..]), (0, &[10u8, 89, 0, 3][..]));
        let (rcode, a) = ask(8, "nosuch").await;
        assert_eq!((rcode, &a[6..8]), (RCODE_NXDOMAIN, &[0u8, 0][..]));
        let (rcode, a) = ask(9, "example.org").await;
        assert_eq!(
            (rcode, &a[a.len() - 4..]),
            (0, &[192u8, 0, 2, 99][..]),
            "forwarded upstream"
        );
        // No upstream left: SERVFAIL rather than silence.
        std::fs::write(&conf, "search lan\n").unwrap();
        let (rcode, _) = ask(10, "example.org").await;
        assert_eq!(rcode, RCODE_SERVFAIL);
    }
}
