//! Links, addresses and routes through rtnetlink, behind a small blocking facade.
//!
//! A netlink socket works in the network namespace of the thread that opened it. [`Netlink`]
//! therefore owns a single-threaded tokio runtime of its own and is opened and used on one
//! plain thread: a blocking-pool thread for the host's namespace, or a thread that entered a
//! container's namespace (`sys::netns::run_in`). It is never used on an agent tokio worker.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage, MacVlanMode};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader};
use rtnetlink::{
    Handle, LinkBridge, LinkMacVlan, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

/// A netlink failure, with the errno when the kernel gave one.
#[derive(Debug, thiserror::Error)]
#[error("{op} {object}: {message}")]
pub struct NetlinkError {
    pub op: &'static str,
    pub object: String,
    pub message: String,
    pub errno: Option<i32>,
}

pub type Result<T, E = NetlinkError> = std::result::Result<T, E>;

fn fail(
    op: &'static str,
    object: impl Into<String>,
) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let object = object.into();
    move |e| {
        let (message, errno) = match &e {
            rtnetlink::Error::NetlinkError(m) => {
                let io = m.to_io();
                (io.to_string(), io.raw_os_error())
            }
            other => (other.to_string(), None),
        };
        NetlinkError {
            op,
            object,
            message,
            errno,
        }
    }
}

/// A netlink connection in the network namespace of the thread that opened it.
pub struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: Handle,
}

fn link_name(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

impl Netlink {
    /// Opens a connection in the calling thread's network namespace. The calling thread must
    /// not be a tokio worker (this blocks on its own runtime).
    pub fn open() -> Result<Netlink> {
        let err = |e: std::io::Error| NetlinkError {
            op: "open netlink socket",
            object: "route".into(),
            message: e.to_string(),
            errno: e.raw_os_error(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(err)?;
        let handle = rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection()?;
            tokio::spawn(conn);
            Ok::<_, std::io::Error>(handle)
        });
        Ok(Netlink {
            rt,
            handle: handle.map_err(err)?,
        })
    }

    /// The index of link `name`, or None when there is no such link.
    pub fn index(&self, name: &str) -> Result<Option<u32>> {
        let found = self.rt.block_on(async {
            let mut links = self
                .handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute();
            links.try_next().await
        });
        match found {
            Ok(m) => Ok(m.map(|m| m.header.index)),
            Err(e) => {
                let e = fail("find link", name)(e);
                if e.errno == Some(libc::ENODEV) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    fn require(&self, name: &str) -> Result<u32> {
        self.index(name)?.ok_or_else(|| NetlinkError {
            op: "find link",
            object: name.to_string(),
            message: "no such device".into(),
            errno: Some(libc::ENODEV),
        })
    }

    /// Names of every link whose name starts with `prefix`.
    pub fn links_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let links: Vec<LinkMessage> = self
            .rt
            .block_on(async { self.handle.link().get().execute().try_collect().await })
            .map_err(fail("list links", prefix))?;
        Ok(links
            .iter()
            .filter_map(link_name)
            .filter(|n| n.starts_with(prefix))
            .map(str::to_string)
            .collect())
    }

    /// Creates bridge `name` (up) with MAC `mac`. An existing link of that name is left as
    /// it is. A bridge without a MAC of its own takes the lowest of its ports', and changes
    /// it when that port goes: every container would then keep sending to the old gateway
    /// MAC until its neighbour entry expires.
    pub fn create_bridge(&self, name: &str, mac: [u8; 6]) -> Result<u32> {
        if let Some(i) = self.index(name)? {
            return Ok(i);
        }
        let msg = LinkBridge::new(name).address(mac.to_vec()).build();
        self.rt
            .block_on(self.handle.link().add(msg).execute())
            .map_err(fail("create bridge", name))?;
        self.require(name)
    }

    /// Deletes link `name`. Returns false when it did not exist.
    pub fn delete(&self, name: &str) -> Result<bool> {
        let Some(index) = self.index(name)? else {
            return Ok(false);
        };
        match self.rt.block_on(self.handle.link().del(index).execute()) {
            Ok(()) => Ok(true),
            Err(e) => {
                let e = fail("delete link", name)(e);
                if e.errno == Some(libc::ENODEV) {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    pub fn set_up(&self, name: &str) -> Result<()> {
        let index = self.require(name)?;
        self.rt
            .block_on(
                self.handle
                    .link()
                    .set(LinkUnspec::new_with_index(index).up().build())
                    .execute(),
            )
            .map_err(fail("bring up", name))
    }

    /// Enslaves `name` to bridge `master` and brings it up.
    pub fn set_master_up(&self, name: &str, master: u32) -> Result<()> {
        let index = self.require(name)?;
        let msg = LinkUnspec::new_with_index(index)
            .controller(master)
            .up()
            .build();
        self.rt
            .block_on(self.handle.link().set(msg).execute())
            .map_err(fail("attach to bridge", name))
    }

    /// The bridge (or other controller) `name` is enslaved to.
    pub fn master_of(&self, name: &str) -> Result<Option<u32>> {
        let index = self.require(name)?;
        let msg: Option<LinkMessage> = self
            .rt
            .block_on(async {
                self.handle
                    .link()
                    .get()
                    .match_index(index)
                    .execute()
                    .try_next()
                    .await
            })
            .map_err(fail("read link", name))?;
        Ok(msg.and_then(|m| {
            m.attributes.iter().find_map(|a| match a {
                LinkAttribute::Controller(i) => Some(*i),
                _ => None,
            })
        }))
    }

    /// A veth pair: `host` here, `peer` created directly in the namespace of `peer_ns` with
    /// MAC `peer_mac` (so it never exists, even briefly, in the host's namespace).
    pub fn create_veth(
        &self,
        host: &str,
        peer: &str,
        peer_ns: &File,
        peer_mac: Option<[u8; 6]>,
    ) -> Result<()> {
        let mut peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .setns_by_fd(peer_ns.as_raw_fd());
        if let Some(mac) = peer_mac {
            peer_msg = peer_msg.address(mac.to_vec());
        }
        let msg = LinkVeth::new(host, peer)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build())))
            .build();
        self.rt
            .block_on(self.handle.link().add(msg).execute())
            .map_err(fail("create veth", host))
    }

    /// A macvlan link `name` on `parent`, created directly in the namespace of `ns`.
    pub fn create_macvlan(
        &self,
        name: &str,
        parent: &str,
        mode: MacVlanMode,
        ns: &File,
    ) -> Result<()> {
        let parent_index = self.require(parent)?;
        let msg = LinkMacVlan::new(name, parent_index, mode)
            .setns_by_fd(ns.as_raw_fd())
            .build();
        self.rt
            .block_on(self.handle.link().add(msg).execute())
            .map_err(fail("create macvlan", format!("{name} on {parent}")))
    }

    /// The IPv4 addresses of link `name`.
    pub fn addresses(&self, name: &str) -> Result<Vec<Ipv4Net>> {
        let index = self.require(name)?;
        let msgs: Vec<_> = self
            .rt
            .block_on(async {
                self.handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .execute()
                    .try_collect::<Vec<_>>()
                    .await
            })
            .map_err(fail("list addresses of", name))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    netlink_packet_route::address::AddressAttribute::Local(IpAddr::V4(ip))
                    | netlink_packet_route::address::AddressAttribute::Address(IpAddr::V4(ip)) => {
                        Ipv4Net::new(*ip, m.header.prefix_len).ok()
                    }
                    _ => None,
                })
            })
            .collect())
    }

    /// Adds `addr` to link `name` unless it is there already.
    pub fn ensure_address(&self, name: &str, addr: Ipv4Net) -> Result<()> {
        if self.addresses(name)?.contains(&addr) {
            return Ok(());
        }
        let index = self.require(name)?;
        self.rt
            .block_on(
                self.handle
                    .address()
                    .add(index, IpAddr::V4(addr.addr()), addr.prefix_len())
                    .execute(),
            )
            .map_err(fail("add address", format!("{addr} to {name}")))
    }

    /// `ip route add default via gateway`.
    pub fn add_default_route(&self, gateway: Ipv4Addr) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .build();
        self.rt
            .block_on(self.handle.route().add(msg).execute())
            .map_err(fail("add default route via", gateway.to_string()))
    }

    /// The IPv4 routes of the main table, default route excluded: destination and the
    /// index of the interface they go out of.
    pub fn routes(&self) -> Result<Vec<(Ipv4Net, Option<u32>)>> {
        let msgs: Vec<_> = self
            .rt
            .block_on(async {
                let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
                self.handle
                    .route()
                    .get(filter)
                    .execute()
                    .try_collect::<Vec<_>>()
                    .await
            })
            .map_err(fail("list routes", "ipv4"))?;
        Ok(msgs
            .iter()
            .filter(|m| {
                m.header.table == RouteHeader::RT_TABLE_MAIN
                    && m.header.destination_prefix_length > 0
            })
            .filter_map(|m| {
                let dest = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                        Ipv4Net::new(*ip, m.header.destination_prefix_length).ok()
                    }
                    _ => None,
                })?;
                let oif = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                });
                Some((dest, oif))
            })
            .collect())
    }
}
