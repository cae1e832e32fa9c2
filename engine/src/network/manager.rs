//! [`NetworkManager`]: creates, repairs and removes networks, attaches containers to them and
//! detaches them, and keeps the nftables table and the DNS records in step with the leases.
//!
//! Every change of host objects runs on a blocking thread, one at a time (one lock), and
//! records what it is about to create in the state db first, so berth only ever deletes host
//! objects it recorded. Teardown tries every step and returns every failure.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use berth_spec::{MacvlanMode, NetworkDriver, NetworkMode, NetworkSpec, Port};
use ipnet::Ipv4Net;
use netlink_packet_route::link::MacVlanMode;

use super::config::{mac_for, NetworkConfig};
use super::counters::{self, InterfaceCounters};
use super::netlink::Netlink;
use super::nft::{self, BridgeRules, PortRule, Ruleset};
use super::sysctl::Sysctl;
use super::{dns, etc_files, ipam, ports, NetworkError, Result};
use crate::runtime::NetworkNamespace;
use crate::state::{LeaseRecord, NetworkRecord, StateDb};
use crate::sys;

/// A network as the manifests (or the agent config, for `default`) want it.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkDef {
    pub name: String,
    pub spec: NetworkSpec,
    /// Changes exactly when the network must be rebuilt.
    pub hash: String,
    /// The manifest file, or empty for the built-in network.
    pub source_file: String,
}

/// One container to wire.
#[derive(Clone, Debug)]
pub struct AttachRequest {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub mode: NetworkMode,
    /// In order: the first is `eth0`, and the first bridge network publishes the ports.
    pub networks: Vec<String>,
    pub ports: Vec<Port>,
    /// Where `resolv.conf`, `hosts` and `hostname` are written (the container's dir).
    pub dir: PathBuf,
}

/// What the runtime needs to start the wired container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub namespace: NetworkNamespace,
    /// (host file, path in the container) to bind-mount.
    pub etc_files: Vec<(PathBuf, String)>,
    /// (network, address) in interface order.
    pub addresses: Vec<(String, Ipv4Addr)>,
}

/// Cheap to clone; every clone is the same manager.
#[derive(Clone)]
pub struct NetworkManager {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: NetworkConfig,
    db: Arc<StateDb>,
    sysctl: Sysctl,
    /// Held while host objects change: networks, wiring, the table.
    lock: Mutex<()>,
    records: Arc<dns::Records>,
    /// Running DNS responders by network, with the gateway they listen on.
    servers: Mutex<BTreeMap<String, (Ipv4Addr, dns::Server)>>,
    /// Last DNS start failure per network, so it is logged once and not every pass.
    dns_failures: Mutex<BTreeMap<String, String>>,
    /// The script last applied to the table.
    applied: Mutex<Option<String>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn invalid(network: &str, message: impl Into<String>) -> NetworkError {
    NetworkError::Invalid {
        network: network.to_string(),
        message: message.into(),
    }
}

fn parse_net(rec: &NetworkRecord) -> Result<(Ipv4Net, Ipv4Addr)> {
    let subnet = Ipv4Net::from_str(&rec.subnet)
        .map_err(|e| invalid(&rec.name, format!("recorded subnet {:?}: {e}", rec.subnet)))?;
    let gateway = Ipv4Addr::from_str(&rec.gateway).map_err(|e| {
        invalid(
            &rec.name,
            format!("recorded gateway {:?}: {e}", rec.gateway),
        )
    })?;
    Ok((subnet, gateway))
}

fn macvlan_mode(text: &str) -> MacVlanMode {
    match text {
        "private" => MacVlanMode::Private,
        "vepa" => MacVlanMode::Vepa,
        "passthru" => MacVlanMode::Passthrough,
        _ => MacVlanMode::Bridge,
    }
}

fn now() -> u64 {
    crate::runtime::exit::now_unix()
}

impl NetworkManager {
    pub fn new(cfg: NetworkConfig, db: Arc<StateDb>) -> NetworkManager {
        let inner = Inner {
            cfg,
            db,
            sysctl: Sysctl::default(),
            lock: Mutex::new(()),
            records: Arc::default(),
            servers: Mutex::default(),
            dns_failures: Mutex::default(),
            applied: Mutex::default(),
        };
        if let Err(e) = inner.refresh_records() {
            tracing::warn!(error = %e, "load dns records from leases");
        }
        NetworkManager {
            inner: Arc::new(inner),
        }
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.inner.cfg
    }

    pub fn records(&self) -> Result<Vec<NetworkRecord>> {
        Ok(self.inner.db.list_networks()?)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| NetworkError::Task(e.to_string()))
    }

    /// Creates network `def`, rebuilds it when its hash changed, or repairs what is missing
    /// of it on the host (a bridge deleted by hand, an address, a sysctl). Idempotent.
    pub async fn ensure(&self, def: NetworkDef) -> Result<NetworkRecord> {
        let rec = self.blocking(move |i| i.ensure(&def)).await??;
        self.ensure_dns(&rec);
        Ok(rec)
    }

    /// Removes network `name` and everything berth created for it, unless containers still
    /// hold leases on it. Tries every step.
    pub async fn remove(&self, name: &str) -> std::result::Result<(), Vec<NetworkError>> {
        let owned = name.to_string();
        let result = self
            .blocking(move |i| i.remove(&owned))
            .await
            .map_err(|e| vec![e])?;
        let in_use =
            matches!(&result, Err(errs) if matches!(errs.as_slice(), [NetworkError::InUse { .. }]));
        if !in_use {
            locked(&self.inner.servers).remove(name);
        }
        result
    }

    /// Rewrites the nftables table when it is missing, was flushed or differs from the
    /// leases. Returns whether it did.
    pub async fn sync_firewall(&self) -> Result<bool> {
        self.blocking(|i| {
            let _g = locked(&i.lock);
            i.sync_firewall()
        })
        .await?
    }

    /// Wires container `req.id` as its network mode says, and writes its etc files.
    pub async fn attach(&self, req: AttachRequest) -> Result<Attachment> {
        self.blocking(move |i| i.attach(&req)).await?
    }

    /// Removes the container's wiring and releases its leases. Tries every step.
    pub async fn detach(&self, id: &str) -> std::result::Result<(), Vec<NetworkError>> {
        let owned = id.to_string();
        self.blocking(move |i| i.detach(&owned))
            .await
            .map_err(|e| vec![e])?
    }

    /// Of `interfaces`, those that do not exist on the host (a veth someone deleted).
    pub async fn missing_links(
        &self,
        interfaces: std::collections::BTreeSet<String>,
    ) -> Result<std::collections::BTreeSet<String>> {
        self.blocking(move |_| {
            let host = Netlink::open()?;
            let mut missing = std::collections::BTreeSet::new();
            for name in interfaces {
                if host.index(&name)?.is_none() {
                    missing.insert(name);
                }
            }
            Ok(missing)
        })
        .await?
    }

    /// The container ids that have a pinned network namespace.
    pub fn pinned_ids(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.inner.cfg.netns_dir()) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        ids.sort();
        ids
    }

    /// Traffic counters of every interface in the container's network namespace.
    pub async fn counters(&self, id: &str) -> Result<Vec<InterfaceCounters>> {
        self.counters_of(vec![id.to_string()])
            .await?
            .pop()
            .expect("one result per id")
    }

    /// Traffic counters of each container in `ids` that has a network namespace of its own
    /// (`host` mode shares the host's and has none): one result per id, in order, all read
    /// on one thread.
    pub async fn counters_of(
        &self,
        ids: Vec<String>,
    ) -> Result<Vec<Result<Vec<InterfaceCounters>>>> {
        let paths: Vec<PathBuf> = ids.iter().map(|id| self.inner.cfg.netns_path(id)).collect();
        self.blocking(move |_| {
            let results = sys::netns::run_in_each(paths.clone(), |_| counters::read_current())
                .map_err(|source| NetworkError::Io {
                    op: "start a thread to read counters in",
                    path: paths.first().cloned().unwrap_or_default(),
                    source,
                })?;
            Ok(results
                .into_iter()
                .zip(paths)
                .map(|(r, path)| {
                    r.map_err(|source| NetworkError::Io {
                        op: "read traffic counters in",
                        path,
                        source,
                    })
                })
                .collect())
        })
        .await?
    }

    /// Starts the network's DNS responder if it should run and does not (must run on the
    /// agent's runtime: the responder is a tokio task).
    fn ensure_dns(&self, rec: &NetworkRecord) {
        let i = &self.inner;
        if !i.cfg.dns || rec.driver != "bridge" {
            return;
        }
        let Ok((_, gateway)) = parse_net(rec) else {
            return;
        };
        let mut servers = locked(&i.servers);
        if servers.get(&rec.name).is_some_and(|(gw, _)| *gw == gateway) {
            return;
        }
        servers.remove(&rec.name);
        let exclude =
            i.db.list_networks()
                .unwrap_or_default()
                .iter()
                .filter_map(|n| parse_net(n).ok())
                .map(|(_, g)| g)
                .collect();
        let ctx = dns::Context {
            network: rec.name.clone(),
            records: i.records.clone(),
            host_resolv_conf: i.cfg.host_resolv_conf.clone(),
            exclude,
            upstream_port: 53,
        };
        let mut failures = locked(&i.dns_failures);
        match dns::Server::start(SocketAddr::from((gateway, 53)), ctx) {
            Ok(server) => {
                tracing::info!(network = %rec.name, addr = %server.addr, "dns responder listening");
                failures.remove(&rec.name);
                servers.insert(rec.name.clone(), (gateway, server));
            }
            Err(e) => {
                let text = e.to_string();
                if failures.get(&rec.name) != Some(&text) {
                    tracing::warn!(network = %rec.name, error = %text, "start dns responder on {gateway}:53; containers of this network get the host's nameservers");
                    failures.insert(rec.name.clone(), text);
                }
            }
        }
    }
}

impl Inner {
    fn refresh_records(&self) -> Result<()> {
        let entries = self
            .db
            .list_leases()?
            .into_iter()
            .filter_map(|l| {
                Some(dns::Entry {
                    address: l.address.parse().ok()?,
                    network: l.network,
                    name: l.container_name,
                    container_id: l.container_id,
                })
            })
            .collect();
        self.records.replace(entries);
        Ok(())
    }

    fn ensure(&self, def: &NetworkDef) -> Result<NetworkRecord> {
        let _g = locked(&self.lock);
        let rec = match self.db.get_network(&def.name)? {
            Some(rec) if rec.spec_hash == def.hash => {
                self.repair(&rec)?;
                rec
            }
            Some(old) => {
                tracing::info!(network = %def.name, "network changed: rebuilding it");
                self.take_down(&old)?;
                self.create(def)?
            }
            None => self.create(def)?,
        };
        self.sync_firewall()?;
        Ok(rec)
    }

    /// Subnet and gateway for a new network: the spec's, or the next free subnet of the pool.
    fn address_plan(&self, def: &NetworkDef, host: &Netlink) -> Result<(Ipv4Net, Ipv4Addr)> {
        let name = &def.name;
        let others: Vec<(String, Ipv4Net)> = self
            .db
            .list_networks()?
            .iter()
            .filter(|n| n.name != *name)
            .filter_map(|n| Some((n.name.clone(), parse_net(n).ok()?.0)))
            .collect();
        let bridge = def.spec.driver == NetworkDriver::Bridge;
        let own_bridge = if bridge {
            host.index(&self.cfg.bridge_name(name))?
        } else {
            None
        };
        // Routes of the host that are not ours (our bridges' routes are other networks).
        let routes: Vec<Ipv4Net> = host
            .routes()?
            .into_iter()
            .filter(|(_, oif)| own_bridge.is_none() || *oif != own_bridge)
            .map(|(r, _)| r)
            .collect();
        let subnet = match &def.spec.subnet {
            Some(s) => {
                let std::net::IpAddr::V4(addr) = s.addr else {
                    return Err(invalid(name, format!("subnet {s}: IPv6 networks are not supported yet (hint: use an IPv4 subnet)")));
                };
                let net = Ipv4Net::new(addr, s.prefix)
                    .map_err(|e| invalid(name, format!("subnet {s}: {e}")))?;
                if net.prefix_len() > 30 {
                    return Err(invalid(
                        name,
                        format!("subnet {net} is too small (hint: use /30 or larger)"),
                    ));
                }
                if let Some((other, o)) = others.iter().find(|(_, o)| ipam::overlaps(&net, o)) {
                    return Err(invalid(name, format!("subnet {net} overlaps network {other} ({o}) (hint: pick another subnet)")));
                }
                // A macvlan network lives on the parent's LAN, whose route is expected.
                if bridge {
                    if let Some(r) = routes.iter().find(|r| ipam::overlaps(&net, r)) {
                        return Err(invalid(name, format!("subnet {net} overlaps the host route to {r} (hint: pick another subnet)")));
                    }
                }
                net
            }
            None => {
                let mut taken: Vec<Ipv4Net> = others.iter().map(|(_, o)| *o).collect();
                taken.extend(routes);
                let conf = std::fs::read_to_string(&self.cfg.host_resolv_conf).unwrap_or_default();
                taken.extend(
                    dns::upstreams(&conf, &[], 53)
                        .iter()
                        .filter_map(|a| match a.ip() {
                            std::net::IpAddr::V4(v4) => Some(Ipv4Net::from(v4)),
                            _ => None,
                        }),
                );
                ipam::pick_subnet(&self.cfg.pool, self.cfg.subnet_len, &taken).ok_or_else(|| {
                    invalid(name, format!("no free /{} left in the pool {} (hint: widen networks.pool or set a subnet)", self.cfg.subnet_len, self.cfg.pool))
                })?
            }
        };
        let gateway = match def.spec.gateway {
            Some(std::net::IpAddr::V4(g)) => g,
            Some(g) => return Err(invalid(name, format!("gateway {g} is not an IPv4 address"))),
            None => ipam::default_gateway(&subnet)
                .ok_or_else(|| invalid(name, format!("subnet {subnet} has no host address")))?,
        };
        if gateway == subnet.network() || gateway == subnet.broadcast() {
            return Err(invalid(
                name,
                format!(
                    "gateway {gateway} is not a host address of {subnet} (hint: like {})",
                    subnet.hosts().next().unwrap_or(gateway)
                ),
            ));
        }
        Ok((subnet, gateway))
    }

    fn create(&self, def: &NetworkDef) -> Result<NetworkRecord> {
        let host = Netlink::open()?;
        let (interface, macvlan_mode) = match (&def.spec.driver, &def.spec.macvlan) {
            (NetworkDriver::Bridge, _) => (self.cfg.bridge_name(&def.name), String::new()),
            (NetworkDriver::Macvlan, Some(m)) => {
                if host.index(&m.parent)?.is_none() {
                    return Err(invalid(&def.name, format!("macvlan parent {} does not exist (hint: name an interface of this host, see `ip link`)", m.parent)));
                }
                let mode = match m.mode {
                    MacvlanMode::Bridge => "bridge",
                    MacvlanMode::Private => "private",
                    MacvlanMode::Vepa => "vepa",
                    MacvlanMode::Passthru => "passthru",
                };
                (m.parent.clone(), mode.to_string())
            }
            (NetworkDriver::Macvlan, None) => {
                return Err(invalid(&def.name, "driver macvlan needs a macvlan section"))
            }
        };
        let (subnet, gateway) = self.address_plan(def, &host)?;
        let rec = NetworkRecord {
            name: def.name.clone(),
            spec_hash: def.hash.clone(),
            driver: if def.spec.driver == NetworkDriver::Bridge {
                "bridge"
            } else {
                "macvlan"
            }
            .into(),
            interface,
            subnet: subnet.to_string(),
            gateway: gateway.to_string(),
            internal: def.spec.internal,
            macvlan_mode,
            source_file: def.source_file.clone(),
            created_at: now(),
        };
        // Recorded before the bridge exists: a crash in between leaves a record to clean up.
        self.db.put_network(&rec)?;
        if rec.driver == "bridge" {
            self.build_bridge(&rec, &host)?;
        }
        tracing::info!(network = %rec.name, driver = %rec.driver, interface = %rec.interface, subnet = %rec.subnet, gateway = %rec.gateway, "network created");
        Ok(rec)
    }

    /// Bridge, gateway address, sysctls, and the veths of its leases enslaved. Idempotent.
    fn build_bridge(&self, rec: &NetworkRecord, host: &Netlink) -> Result<()> {
        let (subnet, gateway) = parse_net(rec)?;
        let br = &rec.interface;
        let index = host.create_bridge(br, mac_for(gateway))?;
        host.ensure_address(
            br,
            Ipv4Net::new(gateway, subnet.prefix_len())
                .map_err(|e| invalid(&rec.name, e.to_string()))?,
        )?;
        host.set_up(br)?;
        let sysctl_err = |source| NetworkError::Io {
            op: "set sysctl for bridge",
            path: PathBuf::from(br),
            source,
        };
        // Strict reverse-path filtering drops replies to DNATed traffic that come back on the
        // bridge: where it is strict (the larger of `all` and the bridge's value counts) it
        // becomes loose. Where it is off it stays off: the check costs a route lookup per
        // packet (about 15% of a published port's throughput here).
        let rp_filter = format!("net.ipv4.conf.{br}.rp_filter");
        let all = self
            .sysctl
            .get("net.ipv4.conf.all.rp_filter")
            .unwrap_or_default();
        if all == "1" || self.sysctl.get(&rp_filter).map_err(sysctl_err)? == "1" {
            self.sysctl.ensure(&rp_filter, "2").map_err(sysctl_err)?;
        }
        // Lets the output DNAT send 127.0.0.1-sourced packets to a container (see nft.rs).
        self.sysctl
            .ensure(&format!("net.ipv4.conf.{br}.route_localnet"), "1")
            .map_err(sysctl_err)?;
        if !rec.internal
            && self
                .sysctl
                .ensure("net.ipv4.ip_forward", "1")
                .map_err(sysctl_err)?
        {
            tracing::info!("enabled net.ipv4.ip_forward for container networks");
        }
        for lease in self.db.leases_of_network(&rec.name)? {
            let veth = &lease.host_interface;
            if veth.is_empty() || host.index(veth)?.is_none() {
                continue;
            }
            if host.master_of(veth)? != Some(index) {
                tracing::info!(network = %rec.name, veth = %veth, "re-attaching container to its rebuilt bridge");
                host.set_master_up(veth, index)?;
            }
        }
        Ok(())
    }

    fn repair(&self, rec: &NetworkRecord) -> Result<()> {
        if rec.driver != "bridge" {
            return Ok(());
        }
        let host = Netlink::open()?;
        if host.index(&rec.interface)?.is_none() {
            tracing::warn!(network = %rec.name, bridge = %rec.interface, "bridge is gone from the host: recreating it");
        }
        self.build_bridge(rec, &host)
    }

    /// Deletes the bridge berth created for `rec` (never a macvlan parent).
    fn take_down(&self, rec: &NetworkRecord) -> Result<()> {
        if rec.driver == "bridge" && Netlink::open()?.delete(&rec.interface)? {
            tracing::info!(network = %rec.name, bridge = %rec.interface, "bridge deleted");
        }
        Ok(())
    }

    fn remove(&self, name: &str) -> std::result::Result<(), Vec<NetworkError>> {
        let _g = locked(&self.lock);
        let rec = match self.db.get_network(name) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => return Err(vec![e.into()]),
        };
        match self.db.leases_of_network(name) {
            Ok(l) if !l.is_empty() => {
                let holders: BTreeSet<String> = l.into_iter().map(|l| l.container_name).collect();
                return Err(vec![NetworkError::InUse {
                    network: name.into(),
                    holders: holders.into_iter().collect::<Vec<_>>().join(", "),
                }]);
            }
            Ok(_) => {}
            Err(e) => return Err(vec![e.into()]),
        }
        let mut errors = Vec::new();
        if let Err(e) = self.take_down(&rec) {
            errors.push(e);
        }
        if let Err(e) = self.db.delete_network(name) {
            errors.push(e.into());
        }
        if let Err(e) = self.sync_firewall() {
            errors.push(e);
        }
        if errors.is_empty() {
            tracing::info!(network = %name, "network removed");
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The table's content, from the records.
    fn ruleset(&self) -> Result<Ruleset> {
        let mut rs = Ruleset::default();
        for n in self
            .db
            .list_networks()?
            .iter()
            .filter(|n| n.driver == "bridge")
        {
            let (subnet, _) = parse_net(n)?;
            rs.bridges.push(BridgeRules {
                bridge: n.interface.clone(),
                subnet,
                internal: n.internal,
            });
        }
        for l in self.db.list_leases()? {
            let published: Vec<Port> = serde_json::from_str(&l.ports_json).unwrap_or_default();
            let Ok(container_ip) = l.address.parse::<Ipv4Addr>() else {
                continue;
            };
            for p in published {
                let (Some(host_port), Ok(host_ip)) = (p.host_port, ports::host_ip(&p)) else {
                    continue;
                };
                rs.ports.push(PortRule {
                    host_ip,
                    host_port,
                    protocol: p.protocol,
                    container_ip,
                    container_port: p.container_port,
                });
            }
        }
        Ok(rs)
    }

    /// Call with the lock held.
    fn sync_firewall(&self) -> Result<bool> {
        let table = self.cfg.table_name();
        let rs = self.ruleset()?;
        let mut applied = locked(&self.applied);
        if rs.bridges.is_empty() && rs.ports.is_empty() {
            *applied = None;
            if nft::delete(table)? {
                tracing::info!(table, "nftables table deleted: no bridge network left");
            }
            return Ok(false);
        }
        let script = rs.render(table);
        let now = nft::count_rules(table)?;
        if applied.as_deref() == Some(script.as_str()) && now == Some(rs.rule_count()) {
            return Ok(false);
        }
        match now {
            None if applied.is_some() => {
                tracing::warn!(table, "nftables table is gone from the host: recreating it")
            }
            Some(n) if applied.as_deref() == Some(script.as_str()) => {
                tracing::warn!(
                    table,
                    rules = n,
                    want = rs.rule_count(),
                    "nftables table was changed by hand: rewriting it"
                )
            }
            _ => {}
        }
        nft::apply(table, &rs)?;
        *applied = Some(script);
        Ok(true)
    }

    fn attach(&self, req: &AttachRequest) -> Result<Attachment> {
        let _g = locked(&self.lock);
        let host_resolv = std::fs::read_to_string(&self.cfg.host_resolv_conf).unwrap_or_default();
        let write = |resolv: &str, hosts: &str| {
            etc_files::write(&req.dir, resolv, hosts, &req.hostname).map_err(|source| {
                NetworkError::Io {
                    op: "write etc files in",
                    path: req.dir.clone(),
                    source,
                }
            })
        };
        match req.mode {
            NetworkMode::Host => {
                let hosts = std::fs::read_to_string(&self.cfg.host_hosts)
                    .unwrap_or_else(|_| etc_files::hosts(&req.hostname, &req.name, &[]));
                let etc_files = write(&host_resolv, &hosts)?;
                Ok(Attachment {
                    namespace: NetworkNamespace::Host,
                    etc_files,
                    addresses: Vec::new(),
                })
            }
            NetworkMode::None => {
                let etc_files = write(
                    &etc_files::resolv_conf(&host_resolv, None),
                    &etc_files::hosts(&req.hostname, &req.name, &[]),
                )?;
                Ok(Attachment {
                    namespace: NetworkNamespace::New,
                    etc_files,
                    addresses: Vec::new(),
                })
            }
            NetworkMode::Bridge => self.attach_networks(req, &host_resolv, write),
        }
    }

    fn attach_networks(
        &self,
        req: &AttachRequest,
        host_resolv: &str,
        write: impl Fn(&str, &str) -> Result<Vec<(PathBuf, String)>>,
    ) -> Result<Attachment> {
        if req.networks.is_empty() {
            return Err(invalid(
                "-",
                format!(
                    "container {} is in bridge mode but names no network",
                    req.name
                ),
            ));
        }
        let mut nets = Vec::new();
        for n in &req.networks {
            nets.push(
                self.db
                    .get_network(n)?
                    .ok_or_else(|| NetworkError::NotReady { network: n.clone() })?,
            );
        }
        let published: Vec<Port> = req
            .ports
            .iter()
            .filter(|p| p.host_port.is_some())
            .copied()
            .collect();
        let via = nets.iter().position(|n| n.driver == "bridge");
        if !published.is_empty() {
            let Some(v) = via else {
                return Err(invalid(&nets[0].name, "ports can only be published through a bridge network (hint: add a bridge network to the container's networks)"));
            };
            if nets[v].internal {
                return Err(invalid(&nets[v].name, "ports cannot be published from an internal network (hint: set internal: false, or list another network first)"));
            }
            let mut others = Vec::new();
            for l in self
                .db
                .list_leases()?
                .into_iter()
                .filter(|l| l.container_id != req.id)
            {
                let theirs: Vec<Port> = serde_json::from_str(&l.ports_json).unwrap_or_default();
                others.extend(theirs.into_iter().map(|p| (l.container_name.clone(), p)));
            }
            for p in &published {
                ports::check(p, &others)?;
            }
        }

        // A restart rewires from scratch, keeping the leases.
        for e in self.unwire(&req.id) {
            tracing::warn!(container = %req.name, error = %e, "clear previous network wiring");
        }
        let mut held = self.db.leases_of_container(&req.id)?;
        for stale in held.iter().filter(|l| !req.networks.contains(&l.network)) {
            self.db.delete_lease(&stale.network, &req.id)?;
        }
        held.retain(|l| req.networks.contains(&l.network));
        let mut leases = Vec::new();
        let mut fresh = Vec::new();
        for (i, net) in nets.iter().enumerate() {
            let (subnet, gateway) = parse_net(net)?;
            let wanted = LeaseRecord {
                network: net.name.clone(),
                address: String::new(),
                container_id: req.id.clone(),
                container_name: req.name.clone(),
                host_interface: if net.driver == "bridge" {
                    self.cfg.veth_name(&req.id, &net.name)
                } else {
                    String::new()
                },
                interface: format!("eth{i}"),
                ports_json: if Some(i) == via {
                    serde_json::to_string(&published).unwrap_or_else(|_| "[]".into())
                } else {
                    "[]".into()
                },
                created_at: now(),
            };
            let kept = held.iter().find(|l| {
                l.network == net.name
                    && l.address
                        .parse::<Ipv4Addr>()
                        .is_ok_and(|a| subnet.contains(&a) && a != gateway)
            });
            let lease = match kept {
                Some(old) => {
                    let l = LeaseRecord {
                        address: old.address.clone(),
                        created_at: old.created_at,
                        ..wanted
                    };
                    self.db.update_lease(&l)?;
                    l
                }
                None => {
                    if held.iter().any(|l| l.network == net.name) {
                        self.db.delete_lease(&net.name, &req.id)?;
                    }
                    let taken: BTreeSet<Ipv4Addr> = self
                        .db
                        .leases_of_network(&net.name)?
                        .iter()
                        .filter_map(|l| l.address.parse().ok())
                        .collect();
                    let addr = ipam::pick_address(&subnet, gateway, &taken).ok_or_else(|| {
                        invalid(
                            &net.name,
                            format!("no free address left in {subnet} (hint: use a larger subnet)"),
                        )
                    })?;
                    let l = LeaseRecord {
                        address: addr.to_string(),
                        ..wanted
                    };
                    self.db.insert_lease(&l)?;
                    fresh.push(l.clone());
                    l
                }
            };
            leases.push(lease);
        }
        let undo = |why: &NetworkError| {
            tracing::warn!(container = %req.name, error = %why, "network setup failed: undoing it");
            for e in self.unwire(&req.id) {
                tracing::warn!(container = %req.name, error = %e, "undo network wiring");
            }
            for l in &fresh {
                if let Err(e) = self.db.delete_lease(&l.network, &l.container_id) {
                    tracing::warn!(container = %req.name, error = %e, "release lease");
                }
            }
            let _ = self.refresh_records();
        };
        if let Err(e) = self.wire(req, &nets, &leases) {
            undo(&e);
            let _ = self.sync_firewall();
            return Err(e);
        }
        self.refresh_records()?;
        if let Err(e) = self.sync_firewall() {
            undo(&e);
            let _ = self.sync_firewall();
            return Err(e);
        }

        let addresses: Vec<(String, Ipv4Addr)> = leases
            .iter()
            .filter_map(|l| Some((l.network.clone(), l.address.parse().ok()?)))
            .collect();
        let dns_server =
            via.and_then(|v| locked(&self.servers).get(&nets[v].name).map(|(gw, _)| *gw));
        let ips: Vec<Ipv4Addr> = addresses.iter().map(|(_, a)| *a).collect();
        let etc_files = write(
            &etc_files::resolv_conf(host_resolv, dns_server),
            &etc_files::hosts(&req.hostname, &req.name, &ips),
        )?;
        tracing::info!(container = %req.name, addresses = ?addresses, "container attached to its networks");
        Ok(Attachment {
            namespace: NetworkNamespace::Join(self.cfg.netns_path(&req.id)),
            etc_files,
            addresses,
        })
    }

    /// Creates the namespace, its links, addresses and default route.
    fn wire(
        &self,
        req: &AttachRequest,
        nets: &[NetworkRecord],
        leases: &[LeaseRecord],
    ) -> Result<()> {
        let path = self.cfg.netns_path(&req.id);
        sys::netns::create(&path).map_err(|source| NetworkError::Io {
            op: "create network namespace",
            path: path.clone(),
            source,
        })?;
        let ns = File::open(&path).map_err(|source| NetworkError::Io {
            op: "open network namespace",
            path: path.clone(),
            source,
        })?;
        let host = Netlink::open()?;
        let mut inside: Vec<(String, Ipv4Net)> = Vec::new();
        let mut default_route = None;
        for (net, lease) in nets.iter().zip(leases) {
            let (subnet, gateway) = parse_net(net)?;
            let ip: Ipv4Addr = lease
                .address
                .parse()
                .map_err(|_| invalid(&net.name, format!("leased address {:?}", lease.address)))?;
            if net.driver == "bridge" {
                host.create_veth(
                    &lease.host_interface,
                    &lease.interface,
                    &ns,
                    Some(mac_for(ip)),
                )?;
                let bridge = host
                    .index(&net.interface)?
                    .ok_or_else(|| NetworkError::NotReady {
                        network: net.name.clone(),
                    })?;
                host.set_master_up(&lease.host_interface, bridge)?;
            } else {
                host.create_macvlan(
                    &lease.interface,
                    &net.interface,
                    macvlan_mode(&net.macvlan_mode),
                    &ns,
                )?;
            }
            inside.push((
                lease.interface.clone(),
                Ipv4Net::new(ip, subnet.prefix_len())
                    .map_err(|e| invalid(&net.name, e.to_string()))?,
            ));
            if default_route.is_none() && !net.internal {
                default_route = Some(gateway);
            }
        }
        drop(ns);
        sys::netns::run_in(&path, move || -> Result<()> {
            let nl = Netlink::open()?;
            nl.set_up("lo")?;
            for (iface, addr) in &inside {
                nl.ensure_address(iface, *addr)?;
                nl.set_up(iface)?;
            }
            if let Some(gw) = default_route {
                nl.add_default_route(gw)?;
            }
            Ok(())
        })
        .map_err(|source| NetworkError::Io {
            op: "enter network namespace",
            path,
            source,
        })?
    }

    /// Removes the namespace and host veths of container `id`; keeps its leases.
    fn unwire(&self, id: &str) -> Vec<NetworkError> {
        let mut errors = Vec::new();
        let leases = match self.db.leases_of_container(id) {
            Ok(l) => l,
            Err(e) => {
                errors.push(e.into());
                Vec::new()
            }
        };
        let veths: Vec<&str> = leases
            .iter()
            .map(|l| l.host_interface.as_str())
            .filter(|v| !v.is_empty())
            .collect();
        if !veths.is_empty() {
            match Netlink::open() {
                Ok(host) => {
                    for v in veths {
                        if let Err(e) = host.delete(v) {
                            errors.push(e.into());
                        }
                    }
                }
                Err(e) => errors.push(e.into()),
            }
        }
        let path = self.cfg.netns_path(id);
        if let Err(source) = sys::netns::remove(&path) {
            errors.push(NetworkError::Io {
                op: "remove network namespace",
                path,
                source,
            });
        }
        errors
    }

    fn detach(&self, id: &str) -> std::result::Result<(), Vec<NetworkError>> {
        let _g = locked(&self.lock);
        let mut errors = self.unwire(id);
        match self.db.leases_of_container(id) {
            Ok(leases) => {
                for l in leases {
                    if let Err(e) = self.db.delete_lease(&l.network, id) {
                        errors.push(e.into());
                    }
                }
            }
            Err(e) => errors.push(e.into()),
        }
        if let Err(e) = self.refresh_records() {
            errors.push(e);
        }
        if let Err(e) = self.sync_firewall() {
            errors.push(e);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}
